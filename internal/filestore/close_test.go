package filestore

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// closeWithin closes s and fails the test if Close does not return within
// limit; it returns Close's error.
func closeWithin(t *testing.T, s *Store, limit time.Duration) error {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(limit):
		t.Fatalf("Close did not return within %s: the materializer retries for ever", limit)
		return nil
	}
}

// checkCloseReports checks Close's error: temporary, naming the key, and
// saying the write stays in the log.
func checkCloseReports(t *testing.T, err error, key string) {
	t.Helper()
	if err == nil || !fault.IsTemporary(err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "stay in the log for the next start") {
		t.Fatalf("Close = %v, want a temporary error naming %s and the log", err, key)
	}
}

// reopenHas reopens dir after the cause was fixed and checks that the
// acknowledged write is there: the log kept it.
func reopenHas(t *testing.T, dir, key, want string) {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("after reopening, %s: %v; the acknowledged write was lost", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != want {
		t.Fatalf("after reopening, %s = %q, %v; want %q", key, b, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(key))); err != nil {
		t.Fatalf("after reopening, %s is not in the tree: %v", key, err)
	}
}

// TestCloseWithAPlainFileInTheWay: the key raw/x/y is acknowledged (in the
// log), then a plain file raw/x appears where its directory must go (written
// by something other than the store). The materializer cannot write the
// key; Close returns within its timeout with the error instead of waiting
// for ever, and the next start, once the file is gone, has the key.
func TestCloseWithAPlainFileInTheWay(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.hold = make(chan struct{})
	if _, err := s.Put(context.Background(), "raw/x/y", strings.NewReader("acknowledged"), nil); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "raw"), 0o750)
	if err := os.WriteFile(filepath.Join(dir, "raw", "x"), []byte("in the way"), 0o640); err != nil {
		t.Fatal(err)
	}
	close(s.hold)
	checkCloseReports(t, closeWithin(t, s, 10*time.Second), "raw/x/y")

	if err := os.Remove(filepath.Join(dir, "raw", "x")); err != nil {
		t.Fatal(err)
	}
	reopenHas(t, dir, "raw/x/y", "acknowledged")
}

// TestCloseTimeout: when the materializer does not finish at all (here:
// held), Close still returns at its timeout, with an error, and keeps the
// log for the next start.
func TestCloseTimeout(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir, WithCloseTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	s.hold = make(chan struct{})
	if _, err := s.Put(context.Background(), "raw/a", strings.NewReader("acknowledged"), nil); err != nil {
		t.Fatal(err)
	}
	err = closeWithin(t, s, 10*time.Second)
	if err == nil || !fault.IsTemporary(err) || !strings.Contains(err.Error(), "stay in the log for the next start") {
		t.Fatalf("Close = %v, want the timeout error", err)
	}
	// Let the materializer finish, so the goroutines end with the test.
	close(s.hold)
	s.stopped.Wait()
	s.lock.Close()
	reopenHas(t, dir, "raw/a", "acknowledged")
}
