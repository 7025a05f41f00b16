package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ErrExited is returned by WaitHTTP when the process ends first.
var ErrExited = errors.New("the process exited before it was ready")

// WaitHTTP polls url until it answers 200 OK, the exited channel closes,
// ctx ends or timeout passes: how tests wait for a child process (an S3
// server, the gateway, letterbox dev) to be ready.
func WaitHTTP(ctx context.Context, url string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v", url, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Buffer is a bytes.Buffer safe for concurrent writers, such as a child
// process's stdout and stderr copiers or a logger shared by goroutines.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *Buffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
