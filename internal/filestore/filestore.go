// Package filestore is the embedded store: a directory on the local file
// system, used by `letterbox dev` and by gateways without S3.
//
// Writes are durable before Put returns: the body goes to a temporary file,
// the file system is synced, the file is renamed into place and the
// directory change is synced (the write–fsync–rename–fsync sequence that
// POSIX crash consistency needs). Concurrent Puts share their syncs: a
// single committer goroutine syncs and renames whole batches (group
// commit), so many sessions cost a few syncs, not two each. A crash leaves
// at most temporary files, which are invisible and removed at start.
//
// Object metadata lives beside the tree under .meta/, written before the
// object itself, so the object is the commit point.
package filestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

const (
	tmpDir  = ".tmp"
	metaDir = ".meta"
)

// Store is a store.Store on a local directory.
type Store struct {
	dir  string
	sync syncMode

	reqs      chan *commitReq
	closeOnce sync.Once
	done      chan struct{}
}

// Option configures a Store.
type Option func(*Store)

type syncMode int

const (
	syncFS   syncMode = iota // syncfs(2) once per batch (Linux)
	syncFile                 // fsync every file and directory
	syncNone                 // tests of non-durable paths only
)

// WithoutSync disables syncing. Only for tests that measure something
// other than durability; never use it to serve mail.
func WithoutSync() Option { return func(s *Store) { s.sync = syncNone } }

// New opens (creating if needed) a store in dir, removing temporary files
// a crash may have left.
func New(dir string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(abs, tmpDir), 0o750); err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(abs, metaDir), 0o750); err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	leftovers, _ := os.ReadDir(filepath.Join(abs, tmpDir))
	for _, e := range leftovers {
		os.Remove(filepath.Join(abs, tmpDir, e.Name()))
	}
	s := &Store{dir: abs, sync: defaultSync, reqs: make(chan *commitReq, 1024), done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	go s.committer()
	return s, nil
}

// Close stops the committer. Puts after Close fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// URL returns file://DIR.
func (s *Store) URL() string { return "file://" + s.dir }

// Ping checks that the directory is there and writable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "ping-*")
	if err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	f.Close()
	return os.Remove(f.Name())
}

func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasPrefix(key, ".") || strings.Contains(key, "\x00") || strings.Contains(key, "\\") {
		return "", fault.Permanentf("filestore: invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fault.Permanentf("filestore: invalid key %q", key)
		}
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// readPath is path for reads: a key that cannot name an object here (such
// as a "directory" ending in /) simply does not exist.
func (s *Store) readPath(key string) (string, error) {
	if strings.HasSuffix(key, "/") {
		return "", fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
	}
	return s.path(key)
}

func (s *Store) metaPath(key string) string {
	return filepath.Join(s.dir, metaDir, filepath.FromSlash(key)+".json")
}

// Put writes an object durably and atomically.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	final, err := s.path(key)
	if err != nil {
		return store.Object{}, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "put-*")
	if err != nil {
		return store.Object{}, fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	req := &commitReq{key: key, final: final, tmp: tmp.Name(), done: make(chan error, 1)}
	cleanup := func() {
		os.Remove(req.tmp)
		if req.metaTmp != "" {
			os.Remove(req.metaTmp)
		}
	}
	if err := ctx.Err(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return store.Object{}, fault.Temporary(err)
	}
	src := &bodyReader{ctx: ctx, r: body}
	n, err := io.Copy(tmp, src)
	if err == nil && s.sync == syncFile {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		if ctx.Err() != nil {
			return store.Object{}, fault.Temporary(ctx.Err())
		}
		if src.err != nil {
			// The body failed (the client went away…): keep its class.
			return store.Object{}, fmt.Errorf("filestore: write %s: %w", key, src.err)
		}
		return store.Object{}, fault.Temporary(fmt.Errorf("filestore: write %s: %w", key, err))
	}
	if len(meta) > 0 {
		mf, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "meta-*")
		if err == nil {
			req.metaTmp, req.metaFinal = mf.Name(), s.metaPath(key)
			err = json.NewEncoder(mf).Encode(meta)
			if err == nil && s.sync == syncFile {
				err = mf.Sync()
			}
			if cerr := mf.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			cleanup()
			return store.Object{}, fault.Temporary(fmt.Errorf("filestore: write metadata of %s: %w", key, err))
		}
	} else {
		req.metaFinal = s.metaPath(key) // a stale sidecar from an overwritten object goes
	}
	select {
	case s.reqs <- req:
	case <-s.done:
		cleanup()
		return store.Object{}, fault.Temporaryf("filestore: closed")
	case <-ctx.Done():
		cleanup()
		return store.Object{}, fault.Temporary(ctx.Err())
	}
	// Once queued, the commit happens whatever ctx says: waiting for it
	// keeps "error means not visible" true.
	if err := <-req.done; err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: n, ModTime: time.Now(), Meta: meta}, nil
}

// Get opens an object.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, store.Object{}, fault.Temporary(err)
	}
	p, err := s.readPath(key)
	if err != nil {
		return nil, store.Object{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, store.Object{}, s.mapErr(key, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, store.Object{}, fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
	}
	obj, err := s.object(key, fi)
	if err != nil {
		f.Close()
		return nil, store.Object{}, err
	}
	return f, obj, nil
}

// Stat describes an object.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := ctx.Err(); err != nil {
		return store.Object{}, fault.Temporary(err)
	}
	p, err := s.readPath(key)
	if err != nil {
		return store.Object{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return store.Object{}, s.mapErr(key, err)
	}
	if fi.IsDir() {
		return store.Object{}, fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
	}
	return s.object(key, fi)
}

func (s *Store) object(key string, fi fs.FileInfo) (store.Object, error) {
	obj := store.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	b, err := os.ReadFile(s.metaPath(key))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &obj.Meta); err != nil {
			return obj, fault.Permanentf("filestore: metadata of %s: %w", key, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return obj, fault.Temporary(fmt.Errorf("filestore: metadata of %s: %w", key, err))
	}
	return obj, nil
}

func (s *Store) mapErr(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscallENOTDIR) {
		return fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
	}
	return fault.Temporary(fmt.Errorf("filestore: %w", err))
}

// List visits objects under prefix in lexical key order.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	// Walk the deepest directory that contains every key with the prefix.
	base := prefix
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[:i]
	} else {
		base = ""
	}
	root := s.dir
	if base != "" {
		p, err := s.path(base)
		if err != nil {
			return err
		}
		root = p
	}
	var keys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if p != s.dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(s.dir, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) && key > startAfter {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return fault.Temporary(fmt.Errorf("filestore: list %s: %w", prefix, err))
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fault.Temporary(err)
		}
		obj, err := s.Stat(ctx, k)
		if err != nil {
			if store.IsNotFound(err) {
				continue // deleted meanwhile
			}
			return err
		}
		if !fn(obj) {
			return nil
		}
	}
	return nil
}

// Delete removes an object; deleting a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	p, err := s.readPath(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	os.Remove(s.metaPath(key))
	return nil
}

// bodyReader stops a copy when the context is cancelled and remembers the
// body's own error, to tell it from a write error.
type bodyReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}
