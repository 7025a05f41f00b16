package storetest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storetest"
)

// TestMemStore shows the suite can be passed: a minimal correct store.
func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newMemStore("") })
}

// TestSuiteCatchesBrokenStores runs the suite against stores that each
// break one rule, in a child process, and checks that it fails, in the
// subtest that owns the rule.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite once per broken store")
	}
	tests := []struct {
		bug     string
		failing string // a subtest that must fail
	}{
		{"directory-walk-order", "List/prefix_not_at_a_slash"},
		{"keeps-partial-body", "PutFailingBody/new_key,_small_body"},
		{"overwrites-before-body-complete", "PutFailingBody/existing_key,_small_body"},
		{"temporary-not-found", "Missing"},
		{"ignores-context", "ContextCanceled"},
		{"commits-after-cancel", "PutCanceledMidway/small_body"},
		{"merges-metadata", "Overwrite"},
		{"inclusive-start-after", "List/startAfter_existing_key"},
		{"ignores-early-stop", "ListEarlyStop"},
		{"prefix-is-object", "KeyIsNotDirectory"},
		{"reclassifies-body-errors", "PutFailingBody"},
		{"delete-missing-fails", "Delete"},
		{"truncates-large", "LargeBody"},
	}
	for _, tt := range tests {
		t.Run(tt.bug, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStore$", "-test.v")
			cmd.Env = append(os.Environ(), "STORETEST_BUG="+tt.bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store that %s", tt.bug)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBrokenStore/"+tt.failing) {
				t.Fatalf("the suite did not fail %s for a store that %s:\n%s", tt.failing, tt.bug, out)
			}
		})
	}
}

// TestBrokenStore is run by TestSuiteCatchesBrokenStores.
func TestBrokenStore(t *testing.T) {
	bug := os.Getenv("STORETEST_BUG")
	if bug == "" {
		t.Skip("run by TestSuiteCatchesBrokenStores")
	}
	storetest.Run(t, func(t *testing.T) store.Store { return newMemStore(bug) })
}

// memStore is an in-memory store.Store; bug names one rule it breaks.
type memStore struct {
	bug  string
	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	body []byte
	obj  store.Object
}

func newMemStore(bug string) *memStore { return &memStore{bug: bug, objs: map[string]memObject{}} }

func (m *memStore) URL() string { return "file:///mem" }

func (m *memStore) ctxErr(ctx context.Context) error {
	if m.bug == "ignores-context" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	return nil
}

func (m *memStore) notFound(key string) error {
	if m.bug == "temporary-not-found" {
		return fault.Temporary(fmt.Errorf("%s: %w", key, store.ErrNotFound))
	}
	return fault.Permanent(fmt.Errorf("%s: %w", key, store.ErrNotFound))
}

func (m *memStore) Ping(ctx context.Context) error { return m.ctxErr(ctx) }

func (m *memStore) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	if err := m.ctxErr(ctx); err != nil {
		return store.Object{}, err
	}
	obj := store.Object{Key: key, ModTime: time.Now(), Meta: maps.Clone(meta)}
	if m.bug == "overwrites-before-body-complete" {
		m.mu.Lock()
		delete(m.objs, key)
		m.mu.Unlock()
	}
	b, err := io.ReadAll(body)
	if m.bug == "truncates-large" && len(b) > 1<<20 {
		b = b[:1<<20]
	}
	if err != nil {
		if m.bug == "keeps-partial-body" {
			m.store(key, b, obj)
		}
		if m.bug == "reclassifies-body-errors" {
			return store.Object{}, fault.Temporary(fmt.Errorf("put %s: %w", key, err))
		}
		return store.Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	if m.bug != "commits-after-cancel" {
		if err := m.ctxErr(ctx); err != nil {
			return store.Object{}, err
		}
	}
	if m.bug == "merges-metadata" {
		m.mu.Lock()
		if old, ok := m.objs[key]; ok {
			for k, v := range old.obj.Meta {
				if _, ok := obj.Meta[k]; !ok {
					if obj.Meta == nil {
						obj.Meta = map[string]string{}
					}
					obj.Meta[k] = v
				}
			}
		}
		m.mu.Unlock()
	}
	obj.Size = int64(len(b))
	m.store(key, b, obj)
	return obj, nil
}

func (m *memStore) store(key string, b []byte, obj store.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj.Size = int64(len(b))
	m.objs[key] = memObject{body: b, obj: obj}
}

func (m *memStore) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := m.ctxErr(ctx); err != nil {
		return store.Object{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok && m.bug == "prefix-is-object" {
		for k := range m.objs {
			if strings.HasPrefix(k, key+"/") {
				return store.Object{Key: key, ModTime: time.Now()}, nil
			}
		}
	}
	if !ok {
		return store.Object{}, m.notFound(key)
	}
	o.obj.Meta = maps.Clone(o.obj.Meta)
	return o.obj, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	obj, err := m.Stat(ctx, key)
	if err != nil {
		return nil, store.Object{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return io.NopCloser(bytes.NewReader(m.objs[key].body)), obj, nil
}

func (m *memStore) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	if err := m.ctxErr(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	var objs []store.Object
	for k, o := range m.objs {
		after := k > startAfter || (m.bug == "inclusive-start-after" && k == startAfter)
		if strings.HasPrefix(k, prefix) && after {
			objs = append(objs, store.Object{Key: k, Size: o.obj.Size, ModTime: o.obj.ModTime})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(objs, func(a, b store.Object) int {
		if m.bug == "directory-walk-order" {
			return slices.Compare(strings.Split(a.Key, "/"), strings.Split(b.Key, "/"))
		}
		return strings.Compare(a.Key, b.Key)
	})
	for _, o := range objs {
		if !fn(o) && m.bug != "ignores-early-stop" {
			return nil
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	if err := m.ctxErr(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok && m.bug == "delete-missing-fails" {
		return m.notFound(key)
	}
	delete(m.objs, key)
	return nil
}
