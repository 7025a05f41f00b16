// Package filestore is the embedded store: a directory on the local file
// system, used by `letterbox dev` and by gateways without S3.
//
// Writes are durable before Put returns, and all-or-nothing. Two paths get
// there:
//
//   - Small objects (up to 256 KiB: most mail) are appended to a
//     write-ahead log and made durable with one fdatasync(2) per batch of
//     concurrent writes (group commit). A materializer then writes them out
//     as ordinary files, syncs the tree once per batch and drops the log
//     segment; reads in between are served from memory. No file is created
//     while the writer waits, which matters on file systems where creating
//     a file is slow, and the materializer lets a burst of writes pass
//     first (at most 2 s, 4096 records or 16 MiB), so file creation does
//     not compete with the writers for the CPU. A new object's file is
//     written in place; an existing one is replaced by rename, so a reader
//     that has it open keeps reading one whole version.
//   - Larger objects stream to a temporary file; the file system is synced,
//     the file renamed into place and the rename synced, again shared by a
//     batch (the write–fsync–rename–fsync sequence of POSIX crash
//     consistency).
//
// A crash leaves temporary files, which are invisible and removed at start,
// and log segments, which are replayed into the tree at start; a record
// torn at a segment's end was never acknowledged.
//
// Object metadata is kept in an extended attribute of the object's file
// (a sidecar under .meta/ where the file system has none).
//
// One process owns the log (an flock on .log/lock); others that open the
// same directory meanwhile, such as `letterbox parse` beside a running
// `letterbox dev`, write files directly and read the owner's log without
// replaying it (owner.go).
package filestore

import (
	"bytes"
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

	reqs    chan *commitReq
	closeMu sync.RWMutex // held for reading while a write is handed over
	closed  bool
	done    chan struct{}
	stopped sync.WaitGroup

	// mu guards index and the current segment's bookkeeping.
	mu    sync.Mutex
	index map[string]*record // logged writes not yet in the tree
	// dirs counts, for each prefix ending before a "/", the logged puts
	// under it: the namespace check without scanning the index.
	dirs         map[string]int
	pendingBytes int64        // logged data not yet in the tree
	seg          *segment     // the segment being appended to (committer only)
	lastSeq      uint64       // the last segment number used (committer only)
	mat          chan *record // to the materializer
	idle         *sync.Cond   // signalled when the materializer releases records

	// lock is held while this process owns the log (see owner.go); nil
	// for a follower, which reads the owner's log through owner.
	lock  *os.File
	owner *ownerLog
	// recovering is set while New replays the log: a file a crash may
	// have left half-written does not count as newer than a record.
	recovering bool
	// placeMu orders the materializer's write of a record with a rename
	// of the same key's file (a large Put) in between its checks.
	placeMu sync.Mutex
	// last is the latest time stamped on a write (see stamp).
	stampMu sync.Mutex
	last    time.Time
	// hold, when set by a test, stops the materializer until closed.
	hold chan struct{}
	// matErr is why the materializer, once closing, left unwritten
	// records in the log (s.mu held).
	matErr    error
	unwritten int
	// closeTimeout bounds how long Close waits for the materializer.
	closeTimeout time.Duration
}

// maxPending bounds the logged data held in memory until it is in the
// tree: past it, the committer waits for the materializer, and writers
// wait for the committer.
const maxPending = 64 << 20

// Option configures a Store.
type Option func(*Store)

type syncMode int

const (
	syncFS   syncMode = iota // syncfs(2) once per batch (Linux)
	syncFile                 // fsync every file and directory
	syncNone                 // tests of non-durable paths only
)

// DefaultCloseTimeout bounds how long Close waits for logged writes to be
// written into the tree.
const DefaultCloseTimeout = 30 * time.Second

// WithCloseTimeout sets how long Close waits for logged writes to be
// written into the tree (DefaultCloseTimeout).
func WithCloseTimeout(d time.Duration) Option { return func(s *Store) { s.closeTimeout = d } }

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
	if err := os.MkdirAll(filepath.Join(abs, logDir), 0o750); err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	lock, owner, err := lockDir(abs)
	if err != nil {
		return nil, fmt.Errorf("filestore: lock the log of %s: %w", abs, err)
	}
	s := &Store{dir: abs, sync: defaultSync, closeTimeout: DefaultCloseTimeout, reqs: make(chan *commitReq, 1024), done: make(chan struct{}),
		index: map[string]*record{}, dirs: map[string]int{}, mat: make(chan *record, 8192), lock: lock}
	s.idle = sync.NewCond(&s.mu)
	for _, o := range opts {
		o(s)
	}
	if owner {
		leftovers, _ := os.ReadDir(filepath.Join(abs, tmpDir))
		for _, e := range leftovers {
			os.Remove(filepath.Join(abs, tmpDir, e.Name()))
		}
		if err := s.recover(); err != nil {
			lock.Close()
			return nil, fmt.Errorf("filestore: replay the log of %s: %w", abs, err)
		}
	} else {
		s.owner = &ownerLog{}
	}
	s.stopped.Add(2)
	go s.committer()
	go s.materializer()
	return s, nil
}

// Close stops accepting writes, lets the materializer put every logged
// write into the tree, and returns. Puts after Close fail. Writes that
// cannot be put into the tree (a full or read-only disk, a file where a
// directory must go) stay in the log, which the next New replays; Close
// then returns an error saying so, within the close timeout, instead of
// retrying for ever.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.closeMu.Unlock()
	stopped := make(chan struct{})
	go func() { s.stopped.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.closeTimeout):
		// A write into the tree is stuck in the kernel. The log still
		// holds everything acknowledged; keep the lock, so no other
		// process replays it while this one may still write.
		return fault.Temporaryf("filestore: close %s: logged writes not in the tree after %s; they stay in the log for the next start", s.dir, s.closeTimeout)
	}
	var err error
	s.mu.Lock()
	if s.matErr != nil {
		err = fault.Temporary(fmt.Errorf("filestore: close %s: %d logged writes could not be written into the tree; they stay in the log for the next start: %w", s.dir, s.unwritten, s.matErr))
	}
	if s.seg != nil {
		s.seg.f.Close()
		if s.seg.pending == 0 {
			os.Remove(s.seg.path)
		}
	}
	s.mu.Unlock()
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
	return err
}

// stamp returns the modification time of a write: the wall clock, but
// always after the previous write's, so that a later write never looks
// older than an earlier one (the clock may step back), which the
// materializer and followers rely on to tell which of a logged write and
// a file is later. The committer stamps writes as it applies them, so
// stamp order is the order of their effects.
func (s *Store) stamp() time.Time {
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	now := time.Now().Round(0).Truncate(time.Microsecond) // what setTimes can store
	if !now.After(s.last) {
		now = s.last.Add(time.Microsecond)
	}
	s.last = now
	return now
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

// Put writes an object durably and atomically.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	final, err := s.path(key)
	if err != nil {
		return store.Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Object{}, fault.Temporary(err)
	}
	src := &bodyReader{ctx: ctx, r: body}
	bodyErr := func(err error) error {
		if ctx.Err() != nil {
			return fault.Temporary(ctx.Err())
		}
		if src.err != nil {
			// The body failed (the client went away…): keep its class.
			return fmt.Errorf("filestore: write %s: %w", key, src.err)
		}
		return fault.Temporary(fmt.Errorf("filestore: write %s: %w", key, err))
	}
	// Small bodies go through the log: read up to smallMax+1 bytes.
	var head bytes.Buffer
	if _, err := head.ReadFrom(io.LimitReader(src, smallMax+1)); err != nil {
		return store.Object{}, bodyErr(err)
	}
	if head.Len() <= smallMax && s.owner == nil {
		buf := head.Bytes()
		req := &commitReq{key: key, final: final, rec: &record{op: opPut, key: key, meta: meta, data: buf}, done: make(chan error, 1)}
		if err := s.submit(ctx, req); err != nil {
			return store.Object{}, err
		}
		return store.Object{Key: key, Size: int64(len(buf)), ModTime: req.rec.mod, Meta: meta}, nil
	}
	// Larger: a temporary file with its metadata, renamed into place.
	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "put-*")
	if err != nil {
		return store.Object{}, fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	req := &commitReq{key: key, final: final, tmp: tmp.Name(), done: make(chan error, 1)}
	n, err := tmp.Write(head.Bytes())
	size := int64(n)
	if err == nil {
		var m int64
		m, err = io.Copy(tmp, src)
		size += m
	}
	if err == nil {
		var sidecar bool
		if sidecar, err = writeMeta(tmp, meta); err == nil && sidecar && len(meta) > 0 {
			err = s.writeSidecar(req, meta)
		}
	}
	if err == nil && s.sync == syncFile {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		req.cleanup()
		return store.Object{}, bodyErr(err)
	}
	if err := s.submit(ctx, req); err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: size, ModTime: req.mod, Meta: meta}, nil
}

// writeSidecar writes metadata beside the tree, for file systems without
// extended attributes.
func (s *Store) writeSidecar(req *commitReq, meta map[string]string) error {
	mf, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "meta-*")
	if err != nil {
		return err
	}
	req.metaTmp, req.metaFinal = mf.Name(), s.metaPath(req.key)
	err = json.NewEncoder(mf).Encode(meta)
	if err == nil && s.sync == syncFile {
		err = mf.Sync()
	}
	if cerr := mf.Close(); err == nil {
		err = cerr
	}
	return err
}

// submit hands a write to the committer and waits for it to be durable.
func (s *Store) submit(ctx context.Context, req *commitReq) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		req.cleanup()
		return fault.Temporaryf("filestore: closed")
	}
	select {
	case s.reqs <- req:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		req.cleanup()
		return fault.Temporary(ctx.Err())
	}
	// Once queued, the commit happens whatever ctx says: waiting for it
	// keeps "error means not visible" true.
	return <-req.done
}

// pending returns the logged write of key not yet in the tree, if any.
func (s *Store) pending(key string) *record {
	if s.owner != nil {
		return s.followerPending(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index[key]
}

func notFound(key string) error {
	return fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
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
	if r := s.pending(key); r != nil {
		if r.op == opDelete {
			return nil, store.Object{}, notFound(key)
		}
		return io.NopCloser(bytes.NewReader(r.data)), r.object(), nil
	}
	f, err := os.Open(p)
	if err != nil {
		if r := s.pending(key); r != nil && r.op == opPut {
			// Logged between the look at the log and the open.
			return io.NopCloser(bytes.NewReader(r.data)), r.object(), nil
		}
		return nil, store.Object{}, s.mapErr(key, err)
	}
	// The file may be a new object the materializer is still writing in
	// place; then its record is still in the log, and memory answers.
	if r := s.pending(key); r != nil {
		f.Close()
		if r.op == opDelete {
			return nil, store.Object{}, notFound(key)
		}
		return io.NopCloser(bytes.NewReader(r.data)), r.object(), nil
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, store.Object{}, notFound(key)
	}
	obj, err := s.object(key, p, f, fi)
	if err != nil {
		f.Close()
		return nil, store.Object{}, err
	}
	return f, obj, nil
}

func (r *record) object() store.Object {
	return store.Object{Key: r.key, Size: int64(len(r.data)), ModTime: r.mod, Meta: r.meta}
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
	if r := s.pending(key); r != nil {
		if r.op == opDelete {
			return store.Object{}, notFound(key)
		}
		return r.object(), nil
	}
	// As in Get: open, then look at the log again (a write logged
	// meanwhile answers from memory), then describe the open file, so
	// size and metadata are of one version.
	f, err := os.Open(p)
	if r := s.pending(key); r != nil {
		if f != nil {
			f.Close()
		}
		if r.op == opDelete {
			return store.Object{}, notFound(key)
		}
		return r.object(), nil
	}
	if err != nil {
		return store.Object{}, s.mapErr(key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		return store.Object{}, notFound(key)
	}
	return s.object(key, p, f, fi)
}

func (s *Store) object(key, path string, f *os.File, fi fs.FileInfo) (store.Object, error) {
	meta, err := s.readMeta(key, path, f)
	if err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), Meta: meta}, nil
}

func (s *Store) mapErr(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscallENOTDIR) {
		return notFound(key)
	}
	return fault.Temporary(fmt.Errorf("filestore: %w", err))
}

// List visits objects under prefix in lexical key order.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
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
	// Logged writes not yet in the tree, looked at before the walk and
	// again after it: one materialized and released while the walk was
	// past its directory is in the first look, one logged during the walk
	// in the second. Stat below answers for each key's latest state.
	seen := map[string]bool{}
	var keys []string
	logged := func() {
		if s.owner != nil {
			// A follower: the owner's log, as Stat below judges it.
			for k, r := range s.owner.records(s.dir) {
				if r.op == opPut && !seen[k] && strings.HasPrefix(k, prefix) && k > startAfter {
					keys = append(keys, k)
					seen[k] = true
				}
			}
			return
		}
		s.mu.Lock()
		for k, r := range s.index {
			if r.op == opPut && !seen[k] && strings.HasPrefix(k, prefix) && k > startAfter {
				keys = append(keys, k)
				seen[k] = true
			}
		}
		s.mu.Unlock()
	}
	logged()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscallENOTDIR) {
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
		if strings.HasPrefix(key, prefix) && key > startAfter && !seen[key] {
			keys = append(keys, key)
			seen[key] = true
		}
		return nil
	})
	if err != nil {
		return fault.Temporary(fmt.Errorf("filestore: list %s: %w", prefix, err))
	}
	logged()
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

// Delete removes an object; deleting a missing object is not an error. The
// deletion is logged, so a replay of older writes cannot bring it back.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	p, err := s.readPath(key)
	if err != nil {
		return err
	}
	if s.owner != nil {
		return s.deleteFile(ctx, key, p)
	}
	req := &commitReq{key: key, final: p, rec: &record{op: opDelete, key: key}, done: make(chan error, 1)}
	return s.submit(ctx, req)
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
