// Package filestore is the embedded store: a directory on the local file
// system, used by `letterbox dev` and by gateways without S3.
//
// Objects live in one SQLite database, DIR/store.db, in WAL mode: a table
// of key, size, time, metadata (JSON) and, for bodies up to 256 KiB (most
// mail), the body itself. A larger body is a file under DIR/blobs/ with a
// name of its own (never reused), written and fsynced, with its directory,
// before the row that names it commits; replacing or deleting its object
// removes it after the commit.
//
// A Put returns once its row is committed with synchronous=FULL: durable,
// and all-or-nothing, because the commit is the only step that makes
// anything visible. Concurrent Puts and Deletes are committed together,
// one transaction per batch, by one goroutine holding the store's one
// write connection (group commit: one fsync of the WAL for the batch).
//
// SQLite is what makes this safe for several processes (`letterbox parse`,
// `replay`, `deliveries` beside `letterbox dev`): each opens the same
// database, writers wait for the write lock (busy_timeout), readers never
// block. A crash, at any instant, leaves either the old row or the new one;
// it may leave a blob file no row names, which a later New removes.
package filestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

const (
	dbName   = "store.db"
	blobsDir = "blobs"
	// smallMax is the largest body kept in the database.
	smallMax = 256 << 10
	// maxBatch bounds one group commit.
	maxBatch = 256
	// orphanAge is how old a blob file no row names must be before New
	// removes it: younger, another process may be about to commit it.
	orphanAge = time.Hour
	// listPage is how many rows List reads per query, so that no read
	// transaction stays open while its caller works.
	listPage = 500
)

// DefaultCloseTimeout bounds how long Close waits for the writes handed
// over before it to commit.
const DefaultCloseTimeout = 30 * time.Second

const schema = `CREATE TABLE IF NOT EXISTS objects (
	key   TEXT PRIMARY KEY, -- compared as bytes: S3's list order
	size  INTEGER NOT NULL,
	mtime INTEGER NOT NULL, -- Unix nanoseconds
	meta  TEXT NOT NULL,    -- JSON object
	body  BLOB,             -- the body, when small
	file  TEXT              -- else its file under blobs/
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_file ON objects(file) WHERE file IS NOT NULL;`

// Store is a store.Store on a local directory.
type Store struct {
	dir     string
	durable bool
	timeout time.Duration

	wdb *sql.DB // the one write connection, the committer's
	rdb *sql.DB // readers

	reqs    chan *writeReq
	closeMu sync.RWMutex // held for reading while a write is handed over
	closed  bool
	// closing is closed first thing in Close: writers waiting to hand a
	// write over (the committer being stuck) give up, so Close's lock
	// cannot wait behind them.
	closing   chan struct{}
	closeOnce sync.Once
	stopped   chan struct{} // closed when the committer has returned
	busy      atomic.Bool   // the committer is committing (for tests)
}

// Option configures a Store.
type Option func(*Store)

// WithoutSync makes commits not wait for the disk: a process crash loses
// nothing, a machine crash may. Only for tests that measure something
// other than durability; never use it to serve mail.
func WithoutSync() Option { return func(s *Store) { s.durable = false } }

// WithCloseTimeout sets how long Close waits for writes handed over before
// it (DefaultCloseTimeout).
func WithCloseTimeout(d time.Duration) Option { return func(s *Store) { s.timeout = d } }

// New opens (creating if needed) a store in dir.
func New(dir string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: abs, durable: true, timeout: DefaultCloseTimeout, reqs: make(chan *writeReq, maxBatch), stopped: make(chan struct{}),
		closing: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(filepath.Join(abs, blobsDir), 0o750); err != nil {
		return nil, fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	path := filepath.Join(abs, dbName)
	if s.wdb, err = OpenSQLite(path, s.durable); err != nil {
		return nil, fault.Temporary(fmt.Errorf("filestore: open %s: %w", path, err))
	}
	s.wdb.SetMaxOpenConns(1)
	if _, err := s.wdb.Exec(schema); err != nil {
		s.wdb.Close()
		return nil, fault.Temporary(fmt.Errorf("filestore: open %s: %w", path, err))
	}
	if s.rdb, err = OpenSQLite(path, s.durable); err != nil {
		s.wdb.Close()
		return nil, fault.Temporary(fmt.Errorf("filestore: open %s: %w", path, err))
	}
	s.removeOrphans()
	go s.committer()
	return s, nil
}

// Close stops accepting writes, waits (up to the close timeout) for those
// handed over before it to commit, and closes the database. Puts after
// Close fail. A write still waiting at the timeout was never acknowledged;
// Close says so in its error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.closeMu.Unlock()
	select {
	case <-s.stopped:
	case <-time.After(s.timeout):
		// The committer is stuck in the kernel or on another process's
		// lock. Its writers are still waiting: nothing is lost.
		return fault.Temporaryf("filestore: close %s: writes still not committed after %s; their Puts have not returned", s.dir, s.timeout)
	}
	return errors.Join(s.rdb.Close(), s.wdb.Close())
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// URL returns file://DIR.
func (s *Store) URL() string { return "file://" + s.dir }

// Ping checks that the database answers and the directory is writable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	if err := s.rdb.PingContext(ctx); err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, blobsDir), "ping-*")
	if err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// checkKey refuses keys that are not S3-style relative paths.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasPrefix(key, ".") || strings.Contains(key, "\x00") || strings.Contains(key, "\\") {
		return fault.Permanentf("filestore: invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fault.Permanentf("filestore: invalid key %q", key)
		}
	}
	return nil
}

func notFound(key string) error {
	return fault.Permanent(fmt.Errorf("%w: %s", store.ErrNotFound, key))
}

// Put writes an object durably and atomically.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	if err := checkKey(key); err != nil {
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
	js, err := json.Marshal(meta)
	if err != nil || meta == nil {
		js = []byte("{}")
	}
	r := &writeReq{key: key, meta: string(js), done: make(chan error, 1)}
	var head bytes.Buffer
	if _, err := head.ReadFrom(io.LimitReader(src, smallMax+1)); err != nil {
		return store.Object{}, bodyErr(err)
	}
	if head.Len() <= smallMax {
		r.body, r.size = head.Bytes(), int64(head.Len())
	} else {
		if r.file, r.size, err = s.writeBlob(&head, src); err != nil {
			return store.Object{}, bodyErr(err)
		}
	}
	// Canceled while the body streamed, after its last read: no commit.
	if err := ctx.Err(); err != nil {
		s.removeBlob(r.file)
		return store.Object{}, fault.Temporary(err)
	}
	if err := s.submit(ctx, r); err != nil {
		s.removeBlob(r.file)
		return store.Object{}, err
	}
	if len(meta) == 0 {
		meta = nil
	}
	return store.Object{Key: key, Size: r.size, ModTime: time.Unix(0, r.mtime), Meta: meta}, nil
}

// writeBlob writes a large body to a new file under blobs/, durably, and
// returns its name.
func (s *Store) writeBlob(head io.Reader, rest io.Reader) (name string, size int64, err error) {
	var id [16]byte
	rand.Read(id[:])
	name = hex.EncodeToString(id[:])
	path := filepath.Join(s.dir, blobsDir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return "", 0, err
	}
	size, err = io.Copy(f, io.MultiReader(head, rest))
	if err == nil && s.durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && s.durable {
		err = syncDir(filepath.Join(s.dir, blobsDir))
	}
	if err != nil {
		os.Remove(path)
		return "", 0, err
	}
	return name, size, nil
}

// removeBlob removes a blob file no row names (any more). A failure leaves
// an orphan for a later New.
func (s *Store) removeBlob(name string) {
	if name != "" {
		os.Remove(filepath.Join(s.dir, blobsDir, name))
	}
}

// removeOrphans removes blob files that no row names and that are older
// than orphanAge: what a crash between a blob's write and its commit, or
// a reader holding a replaced blob open (Windows), left behind.
func (s *Store) removeOrphans() {
	entries, err := os.ReadDir(filepath.Join(s.dir, blobsDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < orphanAge {
			continue
		}
		var n int
		if err := s.rdb.QueryRow(`SELECT count(*) FROM objects WHERE file = ?`, e.Name()).Scan(&n); err == nil && n == 0 {
			s.removeBlob(e.Name())
		}
	}
}

// row is an object's row, without its body.
type row struct {
	size  int64
	mtime int64
	meta  string
	file  sql.NullString
}

func (r row) object(key string) (store.Object, error) {
	var meta map[string]string
	if err := json.Unmarshal([]byte(r.meta), &meta); err != nil {
		return store.Object{}, fault.Permanentf("filestore: metadata of %s: %w", key, err)
	}
	if len(meta) == 0 {
		meta = nil
	}
	return store.Object{Key: key, Size: r.size, ModTime: time.Unix(0, r.mtime), Meta: meta}, nil
}

func (s *Store) dbErr(key string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(key)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fault.Temporary(err)
	}
	return fault.Temporary(fmt.Errorf("filestore: %s: %w", key, err))
}

// Get opens an object.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, store.Object{}, fault.Temporary(err)
	}
	if checkKey(key) != nil {
		return nil, store.Object{}, notFound(key)
	}
	// A large body's file may be removed between the look at its row and
	// its open, by a Put replacing it: then the row has changed too.
	for range 10 {
		var r row
		var body []byte
		err := s.rdb.QueryRowContext(ctx, `SELECT size, mtime, meta, body, file FROM objects WHERE key = ?`, key).
			Scan(&r.size, &r.mtime, &r.meta, &body, &r.file)
		if err != nil {
			return nil, store.Object{}, s.dbErr(key, err)
		}
		obj, err := r.object(key)
		if err != nil {
			return nil, store.Object{}, err
		}
		if !r.file.Valid {
			return io.NopCloser(bytes.NewReader(body)), obj, nil
		}
		f, err := os.Open(filepath.Join(s.dir, blobsDir, r.file.String))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, store.Object{}, fault.Temporary(fmt.Errorf("filestore: %s: %w", key, err))
		}
		return f, obj, nil
	}
	return nil, store.Object{}, fault.Temporaryf("filestore: %s: replaced faster than it can be read", key)
}

// Stat describes an object.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := ctx.Err(); err != nil {
		return store.Object{}, fault.Temporary(err)
	}
	if checkKey(key) != nil {
		return store.Object{}, notFound(key)
	}
	var r row
	err := s.rdb.QueryRowContext(ctx, `SELECT size, mtime, meta FROM objects WHERE key = ?`, key).Scan(&r.size, &r.mtime, &r.meta)
	if err != nil {
		return store.Object{}, s.dbErr(key, err)
	}
	return r.object(key)
}

// List visits objects under prefix in lexical key order.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	after := max(startAfter, prefix)
	inclusive := startAfter < prefix // prefix itself may be a key
	for {
		objs, err := s.listPage(ctx, prefix, after, inclusive)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := ctx.Err(); err != nil {
				return fault.Temporary(err)
			}
			if !fn(o) {
				return nil
			}
		}
		if len(objs) < listPage {
			return nil
		}
		after, inclusive = objs[len(objs)-1].Key, false
	}
}

func (s *Store) listPage(ctx context.Context, prefix, after string, inclusive bool) ([]store.Object, error) {
	op := ">"
	if inclusive {
		op = ">="
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, size, mtime, meta FROM objects WHERE key `+op+` ? ORDER BY key LIMIT ?`, after, listPage)
	if err != nil {
		return nil, s.dbErr(prefix, err)
	}
	defer rows.Close()
	var objs []store.Object
	for rows.Next() {
		var key string
		var r row
		if err := rows.Scan(&key, &r.size, &r.mtime, &r.meta); err != nil {
			return nil, s.dbErr(prefix, err)
		}
		if !strings.HasPrefix(key, prefix) {
			// Past the prefix: keys are in order, none further matches.
			return objs, nil
		}
		o, err := r.object(key)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbErr(prefix, err)
	}
	return objs, nil
}

// Delete removes an object; deleting a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	if err := checkKey(key); err != nil {
		return err
	}
	return s.submit(ctx, &writeReq{key: key, delete: true, done: make(chan error, 1)})
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
