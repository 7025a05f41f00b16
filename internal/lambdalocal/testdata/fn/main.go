// Command fn is the test function of package lambdalocal: its event says
// what to do.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	SleepMS int    `json:"sleep_ms"`
	AllocMB int    `json:"alloc_mb"`
	Error   string `json:"error"`
	Log     string `json:"log"`
}

var keep [][]byte

func handle(ctx context.Context, ev event) (map[string]any, error) {
	if ev.Log != "" {
		fmt.Println(ev.Log)
	}
	for range ev.AllocMB {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	if ev.SleepMS > 0 {
		time.Sleep(time.Duration(ev.SleepMS) * time.Millisecond)
	}
	if ev.Error != "" {
		return nil, errors.New(ev.Error)
	}
	return map[string]any{"env": os.Getenv("FN_SETTING"), "memory": os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")}, nil
}

func main() { lambda.Start(handle) }
