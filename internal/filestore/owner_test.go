package filestore

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	owner, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	owner.hold = make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(owner.hold)
		}
	}
	defer release()
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

	follower, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
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
	next, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if next.owner != nil {
		t.Fatal("a store opened after the owner closed is still a follower")
	}
	if got := get(next, "raw/a"); got != "follower v2" {
		t.Fatalf("reopened store reads %q", got)
	}
}
