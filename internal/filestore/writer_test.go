package filestore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func newWriter(t *testing.T, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKilledWriterLosesNothingAcknowledged$")
	cmd.Env = append(os.Environ(), "FILESTORE_WRITER_DIR="+dir)
	return cmd
}

// writerPad is the padding after the body text of a key: small keys go
// through the log, every fifth one is large and takes the file path.
func writerPad(key string) int {
	if strings.HasSuffix(key, "0.eml") || strings.HasSuffix(key, "5.eml") {
		return smallMax + 1000
	}
	return 3000
}

// writer puts objects from 8 goroutines and prints each key once Put
// returned, until it is killed.
func writer(dir string) {
	s, err := New(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	pid := os.Getpid()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("raw/%d-%d-%d.eml", pid, g, i)
				body := fmt.Sprintf("body-%d-%d", g, i)
				data := body + strings.Repeat("x", writerPad(key))
				if _, err := s.Put(context.Background(), key, strings.NewReader(data), map[string]string{"k": "v"}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("%s %s\n", key, body)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
