package filestore

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/letterboxmail/letterbox/internal/store"
)

// TestFollower opens a store directory a second time while its owner has
// a write in its log and not yet in the tree, as `letterbox parse` does
// beside a running `letterbox dev`: the second store must leave the
// owner's log alone, see the logged write, write files directly, and win
// over the owner's earlier write of the same key.
func TestFollower(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	owner, release := held(t, dir)
	put := func(s *Store, key, body string) {
		t.Helper()
		if _, err := s.Put(ctx, key, strings.NewReader(body), map[string]string{"by": body}); err != nil {
			t.Fatalf("Put %s: %v", key, err)
		}
	}
	get := func(s *Store, key string) string {
		t.Helper()
		rc, obj, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get %s: %v", key, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Meta["by"] != string(b) || obj.Size != int64(len(b)) {
			t.Errorf("Get %s: %q with metadata %v, size %d", key, b, obj.Meta, obj.Size)
		}
		return string(b)
	}
	put(owner, "raw/a", "owner v1")
	segs, _ := filepath.Glob(filepath.Join(dir, logDir, "*.seg"))
	if len(segs) == 0 {
		t.Fatal("the owner's write is not in a log segment")
	}

	follower := opened(t, dir)
	if follower.owner == nil || owner.owner != nil {
		t.Fatal("the second store of a directory is not a follower")
	}
	for _, seg := range segs {
		if _, err := os.Stat(seg); err != nil {
			t.Fatalf("the follower's start removed the owner's segment: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "raw", "a")); err == nil {
		t.Fatal("the follower's start replayed the owner's log into the tree")
	}
	if got := get(follower, "raw/a"); got != "owner v1" {
		t.Fatalf("follower reads %q, want the owner's logged write", got)
	}
	var listed []string
	if err := follower.List(ctx, "raw/", "", func(o store.Object) bool { listed = append(listed, o.Key); return true }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(listed, ",") != "raw/a" {
		t.Fatalf("follower lists %v, want [raw/a]", listed)
	}

	// The follower's writes are files, at once visible to the owner.
	put(follower, "raw/b", "follower b")
	if _, err := os.Stat(filepath.Join(dir, "raw", "b")); err != nil {
		t.Fatalf("the follower's write is not a file: %v", err)
	}
	if got := get(owner, "raw/b"); got != "follower b" {
		t.Fatalf("owner reads %q", got)
	}
	// A later write by the follower wins over the owner's logged one, for
	// the follower now and for the tree once the owner materializes.
	put(follower, "raw/a", "follower v2")
	if got := get(follower, "raw/a"); got != "follower v2" {
		t.Fatalf("follower reads %q after its own write", got)
	}
	release()
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "raw", "a"))
	if err != nil || string(b) != "follower v2" {
		t.Fatalf("tree holds %q, %v after the owner materialized; want the follower's later write", b, err)
	}

	// The lock went with the owner: the next store to open is an owner.
	next := opened(t, dir)
	if next.owner != nil {
		t.Fatal("a store opened after the owner closed is still a follower")
	}
	if got := get(next, "raw/a"); got != "follower v2" {
		t.Fatalf("reopened store reads %q", got)
	}
}

// TestReplayKeepsLaterFiles replays a log after a "crash" (a copy of the
// directory taken while records were still only in the log): a record
// must not overwrite a file written after it (a large Put of the same
// key), and must overwrite a file the materializer left half-written.
func TestReplayKeepsLaterFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := held(t, dir)
	large := strings.Repeat("L", smallMax+1)
	for _, w := range []struct{ key, body string }{
		{"raw/k", "small, logged first"},
		{"raw/k", large},
		{"raw/other", "logged"},
		{"raw/torn", "logged, its file torn by the crash"},
	} {
		if _, err := s.Put(ctx, w.key, strings.NewReader(w.body), nil); err != nil {
			t.Fatal(err)
		}
	}
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	// What an in-place write cut short leaves: part of the data, no
	// metadata attribute, the crash's time.
	if err := os.WriteFile(filepath.Join(crashed, "raw", "torn"), []byte("logg"), 0o640); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(crashed, "raw", "torn"), later, later)

	opened(t, crashed) // replays the log
	for key, want := range map[string]string{"raw/k": large, "raw/other": "logged", "raw/torn": "logged, its file torn by the crash"} {
		b, err := os.ReadFile(filepath.Join(crashed, filepath.FromSlash(key)))
		if err != nil || string(b) != want {
			t.Errorf("after replay %s holds %d bytes %.20q, %v; want %d bytes %.20q", key, len(b), b, err, len(want), want)
		}
	}
}

// copyTree copies a store directory as a crash would leave it on disk:
// files with their times and metadata attributes.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o640); err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		if n, err := unix.Getxattr(p, xattrMeta, buf); err == nil {
			if err := unix.Setxattr(dst, xattrMeta, buf[:n], 0); err != nil {
				return err
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLastEffectWins writes one key from many goroutines, small (logged)
// and large (renamed) in turn: the write with the latest returned time
// must be what the tree holds after materializing, and what a replay of a
// crash copy holds, whatever order the writes were stamped and committed.
func TestLastEffectWins(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, release := held(t, dir)
	var mu sync.Mutex
	var lastMod time.Time
	var lastBody string
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 12 {
				body := fmt.Sprintf("%d-%d", g, i)
				if (g+i)%2 == 0 {
					body += strings.Repeat(".", smallMax) // large
				}
				obj, err := s.Put(ctx, "raw/k", strings.NewReader(body), nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if obj.ModTime.After(lastMod) {
					lastMod, lastBody = obj.ModTime, body
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(what, dir string) {
		b, err := os.ReadFile(filepath.Join(dir, "raw", "k"))
		if err != nil || string(b) != lastBody {
			t.Errorf("%s: raw/k holds %.12q (%d bytes), %v; the last write was %.12q (%d bytes)", what, b, len(b), err, lastBody, len(lastBody))
		}
	}
	check("after materializing", dir)
	opened(t, crashed) // replays the log
	check("after replaying a crash copy", crashed)
}

// TestFollowerIgnoresFileBeingWritten: a file the owner is writing in
// place (no metadata attribute yet, a time later than its record) is not
// what a follower reads; the owner's logged record is.
func TestFollowerIgnoresFileBeingWritten(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	owner, _ := held(t, dir)
	if _, err := owner.Put(ctx, "raw/m", strings.NewReader("whole message"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "raw"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raw", "m"), []byte("who"), 0o640); err != nil {
		t.Fatal(err)
	}
	follower := opened(t, dir)
	rc, obj, err := follower.Get(ctx, "raw/m")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "whole message" || obj.Size != 13 {
		t.Fatalf("follower read %q (size %d), want the owner's record", b, obj.Size)
	}
}

// TestFollowerAcrossOwners: a follower that read one owner's log must see
// the next owner's, although its segments start afresh.
func TestFollowerAcrossOwners(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, releaseA := held(t, dir)
	if _, err := a.Put(ctx, "raw/k", strings.NewReader("version one, deleted later"), nil); err != nil {
		t.Fatal(err)
	}
	follower := opened(t, dir)
	if _, _, err := follower.Get(ctx, "raw/k"); err != nil {
		t.Fatal(err)
	}
	releaseA()
	a.Close()
	b, _ := held(t, dir)
	if b.owner != nil {
		t.Fatal("second owner is a follower")
	}
	if err := b.Delete(ctx, "raw/k"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "raw/new", strings.NewReader("new"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := follower.Get(ctx, "raw/k"); !store.IsNotFound(err) {
		t.Errorf("follower Get of a key the new owner deleted: %v, want not found", err)
	}
	if _, _, err := follower.Get(ctx, "raw/new"); err != nil {
		t.Errorf("follower Get of the new owner's logged write: %v", err)
	}
}

// TestDeleteOfADirectoryKey: deleting a key that names a "directory" of
// other keys deletes nothing and does not wedge the store.
func TestDeleteOfADirectoryKey(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "raw/a/b", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "raw/a"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the materializer is stuck on the delete")
	}
	if _, err := os.Stat(filepath.Join(s.dir, "raw", "a", "b")); err != nil {
		t.Fatalf("raw/a/b: %v", err)
	}
}

// held opens a store that owns dir, whose materializer waits (so writes
// stay in the log) until release is called; the test's cleanup releases
// and closes it.
func held(t *testing.T, dir string) (s *Store, release func()) {
	t.Helper()
	s = opened(t, dir)
	s.hold = make(chan struct{})
	release = sync.OnceFunc(func() { close(s.hold) })
	t.Cleanup(release) // runs before opened's Close
	return s, release
}

// opened opens a store on dir, closed when the test ends.
func opened(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
