package filestore

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

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// tmpfs mounts a tmpfs of size bytes on a new directory, unmounted when
// the test ends. Mounting needs root (CAP_SYS_ADMIN), which CI has.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		testenv.Missing(t, "mounting a tmpfs (a small or read-only disk) needs root: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestCloseOnAReadOnlyDisk: the tree becomes read-only (a read-only bind
// mount over raw/) after a write was acknowledged (in the log) and before
// it is in the tree. Close returns with the error; once the tree is
// writable again, the next start has it.
func TestCloseOnAReadOnlyDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.hold = make(chan struct{})
	if _, err := s.Put(context.Background(), "raw/ro.eml", strings.NewReader("acknowledged"), nil); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "raw")
	if err := os.Mkdir(raw, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(raw, raw, "", syscall.MS_BIND, ""); err != nil {
		testenv.Missing(t, "a read-only bind mount needs root: "+err.Error())
	}
	unmount := func() { syscall.Unmount(raw, syscall.MNT_DETACH) }
	t.Cleanup(unmount)
	if err := syscall.Mount("", raw, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(raw, "probe"), nil, 0o640); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing under the read-only mount: %v, want EROFS", err)
	}
	close(s.hold)
	checkCloseReports(t, closeWithin(t, s, 10*time.Second), "raw/ro.eml")

	unmount()
	reopenHas(t, dir, "raw/ro.eml", "acknowledged")
}

// TestCloseOnAFullDisk: the disk fills up after a write was acknowledged
// and before it is in the tree. Close returns with the error; once there
// is room again, the next start has it.
func TestCloseOnAFullDisk(t *testing.T) {
	mnt := tmpfs(t, 1<<20)
	dir := filepath.Join(mnt, "store")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.hold = make(chan struct{})
	body := strings.Repeat("acknowledged ", 4096)
	if _, err := s.Put(context.Background(), "raw/full.eml", strings.NewReader(body), nil); err != nil {
		t.Fatal(err)
	}
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
	close(s.hold)
	checkCloseReports(t, closeWithin(t, s, 10*time.Second), "raw/full.eml")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	reopenHas(t, dir, "raw/full.eml", body)
}
