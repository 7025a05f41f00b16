package filestore_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storetest"
)

func open(t *testing.T, opts ...filestore.Option) *filestore.Store {
	t.Helper()
	s, err := filestore.New(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRejectsKeysOutsideTheStore(t *testing.T) {
	s := open(t)
	for _, key := range []string{"", "/etc/passwd", "../x", "raw/../../x", "raw//x", ".meta/x", "a\x00b"} {
		_, err := s.Put(context.Background(), key, strings.NewReader("x"), nil)
		if err == nil || fault.IsTemporary(err) || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q) = %v, want a permanent invalid-key error", key, err)
		}
		if err := s.Delete(context.Background(), key); err == nil || fault.IsTemporary(err) || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Delete(%q) = %v, want a permanent invalid-key error", key, err)
		}
	}
}

// TestFailedWriteLeavesNothingAndOrphansAreRemoved: a large body that
// fails midway leaves no blob file; a blob file no row names (what a crash
// between a blob's write and its commit leaves) is removed by the next New
// once it is old enough that no other process can still be committing it.
func TestFailedWriteLeavesNothingAndOrphansAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	large := strings.Repeat("L", 300<<10)
	_, err = s.Put(ctx, "raw/a.eml", io.MultiReader(strings.NewReader(large), iotest.ErrReader(errors.New("client went away"))), map[string]string{"k": "v"})
	if err == nil || !fault.IsTemporary(err) {
		t.Fatalf("Put = %v, want temporary error", err)
	}
	if _, err := s.Stat(ctx, "raw/a.eml"); !store.IsNotFound(err) {
		t.Fatalf("Stat after failed Put = %v, want not found", err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "blobs")); len(left) != 0 {
		t.Fatalf("failed Put left %v", left)
	}
	if _, err := s.Put(ctx, "raw/kept.eml", strings.NewReader(large), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// raw/kept.eml's blob is as old as a stale orphan: its row keeps it.
	old := time.Now().Add(-2 * time.Hour)
	kept, _ := os.ReadDir(filepath.Join(dir, "blobs"))
	for _, e := range kept {
		os.Chtimes(filepath.Join(dir, "blobs", e.Name()), old, old)
	}
	stale, fresh := filepath.Join(dir, "blobs", "stale"), filepath.Join(dir, "blobs", "fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half a message"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(stale, old, old)
	s2, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale orphan: %v, want removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh orphan (another process may be about to commit it): %v, want kept", err)
	}
	if got, _ := storetest.MustGet(t, s2, "raw/kept.eml"); got != large {
		t.Errorf("raw/kept.eml lost its blob: %d bytes", len(got))
	}
}

func BenchmarkPutConcurrent4KiB(b *testing.B) {
	s, err := filestore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := strings.Repeat("x", 4096)
	var n int64
	var mu sync.Mutex
	b.SetParallelism(10) // 20 writers on 2 cores, like 20 SMTP sessions
	b.SetBytes(4096)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			key := "raw/" + strconv.FormatInt(n, 10) + ".eml"
			mu.Unlock()
			if _, err := s.Put(context.Background(), key, strings.NewReader(body), map[string]string{"letterbox-envelope": "e30"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestKeyAndItsPrefixBothExist: unlike a tree of files, the store holds
// "x" and "x/y" side by side, as S3 does, and Close has nothing to fail on.
func TestKeyAndItsPrefixBothExist(t *testing.T) {
	s, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"raw/x", "raw/x/y", "raw"} {
		if _, err := s.Put(ctx, key, strings.NewReader(key), nil); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	for _, key := range []string{"raw/x", "raw/x/y", "raw"} {
		if got, _ := storetest.MustGet(t, s, key); got != key {
			t.Errorf("%s = %q", key, got)
		}
	}
	storetest.WantKeys(t, s, "raw/x", "", []string{"raw/x", "raw/x/y"})
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestReadersSeeWholeVersions overwrites one key and creates new keys
// while readers Get and Stat them: every read must be one whole version,
// never part of one and part of another, nor one body with another's
// metadata.
func TestReadersSeeWholeVersions(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// A whole version is one digit repeated 100, 1100, … 6100 times, or
	// 300100 times: past smallMax, a blob file.
	body := func(v int) string {
		n := 100 + v%7*1000
		if v%5 == 0 {
			n = 100 + 300*1000
		}
		return strings.Repeat(strconv.Itoa(v%10), n)
	}
	check := func(key, got string) {
		if len(got) < 100 || (len(got)-100)%1000 != 0 || strings.Trim(got, got[:1]) != "" {
			t.Errorf("Get %s: torn read of %d bytes", key, len(got))
		}
	}
	const versions = 400
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for v := range versions {
			if _, err := s.Put(ctx, "deliveries/record.json", strings.NewReader(body(v)), map[string]string{"v": strconv.Itoa(v)}); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Put(ctx, "raw/"+strconv.Itoa(v), strings.NewReader(body(v)), nil); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				for _, key := range []string{"deliveries/record.json", "raw/" + strconv.Itoa(n%versions)} {
					rc, obj, err := s.Get(ctx, key)
					if errors.Is(err, store.ErrNotFound) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					b, err := io.ReadAll(rc)
					rc.Close()
					if err != nil {
						t.Error(err)
						return
					}
					check(key, string(b))
					if int64(len(b)) != obj.Size {
						t.Errorf("Get %s: %d bytes, object says %d", key, len(b), obj.Size)
					}
					if key == "deliveries/record.json" && body(atoi(obj.Meta["v"])) != string(b) {
						t.Errorf("Get %s: metadata of version %s with other data", key, obj.Meta["v"])
					}
					if st, err := s.Stat(ctx, key); err == nil && key != "deliveries/record.json" && st.Size != obj.Size {
						t.Errorf("Stat %s: size %d, Get read %d", key, st.Size, obj.Size)
					}
				}
			}
		})
	}
	wg.Wait()
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
