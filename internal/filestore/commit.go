package filestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// commitReq is one write waiting to become durable: a logged record, or a
// temporary file to rename into place.
type commitReq struct {
	key   string
	final string
	// rec is set for logged writes (small puts and deletes).
	rec *record
	// tmp (and the metadata sidecar) are set for file writes.
	tmp                string
	metaTmp, metaFinal string
	// mod is the time stamped on a file write as it is placed.
	mod  time.Time
	done chan error
}

func (r *commitReq) cleanup() {
	if r.tmp != "" {
		os.Remove(r.tmp)
	}
	if r.metaTmp != "" {
		os.Remove(r.metaTmp)
	}
}

// maxBatch bounds one group commit.
const maxBatch = 256

// committer makes batches of concurrent writes durable together: logged
// records with one append and one fdatasync; files with one sync of the
// file system, the renames, and one more sync. Only then are writers told.
func (s *Store) committer() {
	defer s.stopped.Done()
	batch := make([]*commitReq, 0, maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.done:
			// Writes handed over before Close still commit.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*commitReq{r})
					continue
				default:
				}
				break
			}
			close(s.mat)
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*commitReq) {
	var logged, files []*commitReq
	planned := map[string]bool{} // keys this batch creates, for namespace checks
	for _, r := range batch {
		if r.rec != nil && r.rec.op == opDelete {
			logged = append(logged, r)
			continue
		}
		if err := s.checkNamespace(r.key, planned); err != nil {
			r.cleanup()
			r.done <- err
			continue
		}
		planned[r.key] = true
		if r.rec != nil {
			logged = append(logged, r)
		} else {
			files = append(files, r)
		}
	}
	if len(logged) > 0 {
		s.commitLogged(logged)
	}
	if len(files) > 0 {
		s.commitFiles(files)
	}
}

// checkNamespace refuses what a directory tree cannot hold: a key that is
// also the prefix of another key followed by / ("a" and "a/b"), counting
// the tree, logged writes and the batch so far.
func (s *Store) checkNamespace(key string, planned map[string]bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var owner map[string]*record // a follower: the owner's logged writes count too
	if s.owner != nil {
		owner = s.owner.records(s.dir)
	}
	exists := func(k string) bool {
		if planned[k] {
			return true
		}
		if r := s.index[k]; r != nil {
			return r.op == opPut
		}
		if r := owner[k]; r != nil && r.op == opPut {
			return true
		}
		fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(k)))
		return err == nil && !fi.IsDir()
	}
	for i := strings.IndexByte(key, '/'); i >= 0; i = nextSlash(key, i) {
		if exists(key[:i]) {
			return errNamespace(key)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(key))); err == nil && fi.IsDir() {
		return errNamespace(key)
	}
	if s.dirs[key] > 0 {
		return errNamespace(key)
	}
	for k := range planned {
		if strings.HasPrefix(k, key+"/") {
			return errNamespace(key)
		}
	}
	return nil
}

// count adds or removes a logged record from the pending totals; s.mu
// held.
func (s *Store) count(r *record, d int) {
	s.pendingBytes += int64(d * len(r.data))
	if r.op != opPut {
		return
	}
	for i := strings.IndexByte(r.key, '/'); i >= 0; i = nextSlash(r.key, i) {
		s.dirs[r.key[:i]] += d
		if s.dirs[r.key[:i]] == 0 {
			delete(s.dirs, r.key[:i])
		}
	}
}

func nextSlash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// commitLogged appends records to the current segment and syncs it once.
func (s *Store) commitLogged(reqs []*commitReq) {
	fail := func(err error) {
		for _, r := range reqs {
			r.done <- fault.Temporary(err)
		}
	}
	if err := s.ensureSegment(); err != nil {
		fail(fmt.Errorf("filestore: log: %w", err))
		return
	}
	buf := make([]byte, 0, 64<<10)
	for _, r := range reqs {
		r.rec.mod = s.stamp()
		var err error
		if buf, err = r.rec.encode(buf); err != nil {
			fail(err)
			return
		}
	}
	seg := s.seg
	if _, err := seg.f.Write(buf); err != nil {
		// A partial append is a torn tail: start a new segment so later
		// records are not hidden behind it.
		s.sealLocked(seg)
		fail(fmt.Errorf("filestore: log append: %w", err))
		return
	}
	if err := s.syncLog(seg.f); err != nil {
		s.sealLocked(seg)
		fail(fmt.Errorf("filestore: log sync: %w", err))
		return
	}
	seg.size += int64(len(buf))
	s.mu.Lock()
	for _, r := range reqs {
		r.rec.seg = seg
		seg.pending++
		s.index[r.key] = r.rec
		s.count(r.rec, +1)
	}
	s.mu.Unlock()
	for _, r := range reqs {
		r.done <- nil
		s.mat <- r.rec
	}
	s.mu.Lock()
	for s.pendingBytes > maxPending && s.matErr == nil {
		s.idle.Wait()
	}
	s.mu.Unlock()
	if seg.size >= segmentMax {
		s.sealLocked(seg)
	}
}

// ensureSegment opens a new segment when there is none.
func (s *Store) ensureSegment() error {
	if s.seg != nil {
		return nil
	}
	seqs, err := segments(s.dir)
	if err != nil {
		return err
	}
	// Never a number used before, even once every segment is gone (a
	// follower reading the log by name would take a new segment for the
	// old one): after the last one, and after the clock.
	seq := max(s.lastSeq+1, uint64(time.Now().UnixNano()))
	if len(seqs) > 0 {
		seq = max(seq, seqs[len(seqs)-1]+1)
	}
	s.lastSeq = seq
	path := segmentPath(s.dir, seq)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	// The new file's directory entry must be durable before any record in
	// it counts as such.
	if s.sync != syncNone {
		if err := fsyncDir(filepath.Join(s.dir, logDir)); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
	}
	s.seg = &segment{seq: seq, path: path, f: f}
	return nil
}

// sealLocked stops appending to seg; it goes once all its records are in
// the tree. Called by the committer only.
func (s *Store) sealLocked(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg.sealed = true
	seg.f.Close()
	if s.seg == seg {
		s.seg = nil
	}
	if seg.pending == 0 {
		os.Remove(seg.path)
	}
}

func (s *Store) syncLog(f *os.File) error {
	switch s.sync {
	case syncNone:
		return nil
	case syncFS:
		return fdatasync(f)
	}
	return f.Sync()
}

// commitFiles syncs the batch's temporary files, renames them into place
// (metadata sidecars first: the object is the commit point), and syncs the
// renames.
func (s *Store) commitFiles(batch []*commitReq) {
	fail := func(rs []*commitReq, err error) {
		for _, r := range rs {
			r.cleanup()
			r.done <- fault.Temporary(err)
		}
	}
	if err := s.syncData(); err != nil {
		fail(batch, fmt.Errorf("filestore: sync: %w", err))
		return
	}
	dirs := map[string]bool{}
	ok := batch[:0:0]
	for _, r := range batch {
		if err := s.place(r, dirs); err != nil {
			r.cleanup()
			r.done <- err
			continue
		}
		ok = append(ok, r)
	}
	if err := s.syncDirs(dirs); err != nil {
		// The renames happened but may not survive a crash: report a
		// temporary failure so the sender retries; a duplicate is better
		// than a loss.
		for _, r := range ok {
			r.done <- fault.Temporary(fmt.Errorf("filestore: sync directories: %w", err))
		}
		return
	}
	for _, r := range ok {
		r.done <- nil
	}
}

func (s *Store) place(r *commitReq, dirs map[string]bool) error {
	if err := os.MkdirAll(filepath.Dir(r.final), 0o750); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EEXIST) {
			return errNamespace(r.key)
		}
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	dirs[filepath.Dir(r.final)] = true
	if r.metaTmp != "" {
		if err := os.MkdirAll(filepath.Dir(r.metaFinal), 0o750); err != nil {
			return errNamespace(r.key)
		}
		if err := os.Rename(r.metaTmp, r.metaFinal); err != nil {
			return fault.Temporary(fmt.Errorf("filestore: %w", err))
		}
		dirs[filepath.Dir(r.metaFinal)] = true
	} else if err := os.Remove(s.metaPath(r.key)); err == nil {
		dirs[filepath.Dir(s.metaPath(r.key))] = true // a stale sidecar of an overwritten object
	}
	// An earlier logged write of the key is superseded: reads must not
	// serve it, nor the materializer write it over this file.
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	// Stamped here, in the order writes take effect: later than any write
	// of the key logged before it.
	r.mod = s.stamp()
	if err := os.Chtimes(r.tmp, r.mod, r.mod); err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	if err := os.Rename(r.tmp, r.final); err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	s.mu.Lock()
	delete(s.index, r.key)
	s.mu.Unlock()
	return nil
}

// errNamespace: unlike S3, a directory tree cannot hold both "a" and "a/b".
// letterbox's own layout never needs it.
func errNamespace(key string) error {
	return fault.Permanentf("filestore: key %q conflicts with an existing key: the file store cannot hold a key that is also the prefix of another key followed by /", key)
}

// syncData makes every temporary file durable.
func (s *Store) syncData() error {
	switch s.sync {
	case syncFS:
		return syncfs(filepath.Join(s.dir, tmpDir))
	default:
		return nil // syncFile synced each file as it was written
	}
}

// syncDirs makes renames durable. New parent directories are synced up to
// the store root.
func (s *Store) syncDirs(dirs map[string]bool) error {
	switch s.sync {
	case syncNone:
		return nil
	case syncFS:
		return syncfs(s.dir)
	}
	all := map[string]bool{}
	for d := range dirs {
		for p := d; len(p) >= len(s.dir); p = filepath.Dir(p) {
			all[p] = true
			if p == s.dir {
				break
			}
		}
	}
	for d := range all {
		if err := fsyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
