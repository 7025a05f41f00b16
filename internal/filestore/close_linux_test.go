package filestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/storetest"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// tmpfs mounts a tmpfs of size bytes on a new directory, unmounted when
// the test ends. Mounting needs root (CAP_SYS_ADMIN), which CI has.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		testenv.Missing(t, "mounting a tmpfs (a small disk) needs root: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// wantFailedPut checks that a Put fails with a temporary error naming its
// key: the sender is told to retry, nothing is acknowledged.
func wantFailedPut(t *testing.T, s *filestore.Store, key, body string) {
	t.Helper()
	_, err := s.Put(context.Background(), key, strings.NewReader(body), nil)
	if err == nil || !fault.IsTemporary(err) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Put(%s) = %v, want a temporary error naming the key", key, err)
	}
}

// TestFullDisk: the disk fills up under a running store. Puts, small and
// large, fail (temporary); Close returns; once there is room again, every
// write acknowledged before is there, and the store takes writes again.
func TestFullDisk(t *testing.T) {
	mnt := tmpfs(t, 2<<20)
	dir := filepath.Join(mnt, "store")
	s, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, s, "raw/before.eml", "acknowledged", map[string]string{"k": "v"})
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	wantFailedPut(t, s, "raw/small.eml", strings.Repeat("s", 100<<10))
	wantFailedPut(t, s, "raw/large.eml", strings.Repeat("l", 400<<10))
	closeWithin(t, s, 10*time.Second) // may fail its checkpoint; must return

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s2, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, obj := storetest.MustGet(t, s2, "raw/before.eml"); got != "acknowledged" || obj.Meta["k"] != "v" {
		t.Fatalf("raw/before.eml = %q, %v", got, obj.Meta)
	}
	storetest.WantKeys(t, s2, "", "", []string{"raw/before.eml"})
	storetest.MustPut(t, s2, "raw/after.eml", "room again", nil)
}

// TestReadOnlyDisk: the store's directory becomes read-only (a read-only
// bind mount over it) under a running store. A large Put, which needs a
// new file, fails (temporary); a small one may still go through the
// database's files, already open for writing, and is then durable; Close
// returns within its timeout; once the disk is writable again every
// acknowledged write is there.
func TestReadOnlyDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	acked := []string{"raw/before.eml", "raw/large-before.eml"}
	storetest.MustPut(t, s, "raw/before.eml", "acknowledged", nil)
	storetest.MustPut(t, s, "raw/large-before.eml", strings.Repeat("L", 300<<10), nil)
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		testenv.Missing(t, "a read-only bind mount needs root: "+err.Error())
	}
	unmount := func() { syscall.Unmount(dir, syscall.MNT_DETACH) }
	t.Cleanup(unmount)
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o640); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing under the read-only mount: %v, want EROFS", err)
	}
	wantFailedPut(t, s, "raw/large.eml", strings.Repeat("l", 300<<10))
	if _, err := s.Put(context.Background(), "raw/small.eml", strings.NewReader("small"), nil); err == nil {
		acked = append(acked, "raw/small.eml")
	} else if !fault.IsTemporary(err) {
		t.Fatalf("small Put on a read-only disk: %v, want success or a temporary error", err)
	}
	closeWithin(t, s, 10*time.Second)

	unmount()
	s2, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	storetest.WantKeys(t, s2, "", "", acked)
	if got, _ := storetest.MustGet(t, s2, "raw/large-before.eml"); len(got) != 300<<10 {
		t.Fatalf("raw/large-before.eml: %d bytes", len(got))
	}
}
