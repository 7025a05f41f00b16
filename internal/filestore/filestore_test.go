package filestore_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

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
		if err == nil || fault.IsTemporary(err) {
			t.Errorf("Put(%q) = %v, want a permanent error", key, err)
		}
	}
}

func TestFailedWriteLeavesNothingAndCrashLeftoversAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = s.Put(ctx, "raw/a.eml", io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(errors.New("client went away"))), map[string]string{"k": "v"})
	if err == nil || !fault.IsTemporary(err) {
		t.Fatalf("Put = %v, want temporary error", err)
	}
	if _, err := s.Stat(ctx, "raw/a.eml"); !store.IsNotFound(err) {
		t.Fatalf("Stat after failed Put = %v, want not found", err)
	}
	s.Close()
	// A crash between write and rename leaves a temporary file behind.
	os.WriteFile(filepath.Join(dir, ".tmp", "put-123"), []byte("half a message"), 0o600)
	if _, err := filestore.New(dir); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(left) != 0 {
		t.Fatalf("leftovers not removed: %v", left)
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

func TestKeyThatIsAlsoAPrefixIsRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "list/a", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"list/a/b", "list"} {
		_, err := s.Put(ctx, key, strings.NewReader("y"), nil)
		if err == nil || fault.IsTemporary(err) || !strings.Contains(err.Error(), "conflicts with an existing key") {
			t.Fatalf("Put(%q) = %v, want a permanent namespace error", key, err)
		}
	}
	if got, _ := storetest.MustGet(t, s, "list/a"); got != "x" {
		t.Fatalf("list/a = %q", got)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestReadersSeeWholeVersions overwrites one key and creates new keys
// while readers Get and Stat them: every read must be one whole version,
// never a file the materializer is still writing or truncating.
func TestReadersSeeWholeVersions(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	body := func(v int) string { return strings.Repeat(strconv.Itoa(v%10), 100+v%7*1000) }
	// A whole version is one digit repeated 100, 1100, … 6100 times.
	check := func(key, got string) {
		if len(got) < 100 || (len(got)-100)%1000 != 0 || strings.Trim(got, got[:1]) != "" {
			t.Errorf("Get %s: torn read of %d bytes", key, len(got))
		}
	}
	const versions = 800
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
