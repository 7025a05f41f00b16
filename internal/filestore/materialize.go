package filestore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Materialization yields to a burst of writes: acknowledging a write needs
// only the log, while creating a file per object is the expensive part of
// the work on most file systems (on ext4 without a journal, creating one
// inode costs 30 µs to 0.8 ms of CPU, depending on how many were freed in
// the last minute). So the materializer collects records until writes
// pause for settleDelay, or the oldest collected record has waited
// maxDelay, or a batch holds maxMatBatch records or maxMatBytes of data,
// and then writes them all. The total work is the same; it just does not
// compete with the writers while they are waiting for acknowledgements.
// Until then records are served from memory (bounded by maxPending) and a
// crash replays them from the log.
const (
	settleDelay = 50 * time.Millisecond
	maxDelay    = 2 * time.Second
	maxMatBatch = 4096
	maxMatBytes = maxPending / 4
)

// materializer writes logged records out as files in the tree, in
// batches: write every file (no sync each), sync the file system once,
// then forget the records and delete the segments they emptied. It runs
// until the committer closes s.mat, so Close leaves nothing in the log.
func (s *Store) materializer() {
	defer s.stopped.Done()
	batch := make([]*record, 0, 512)
	quiet := time.NewTimer(settleDelay)
	quiet.Stop()
	for open := true; open; {
		r, ok := <-s.mat
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		size := len(r.data)
		deadline := time.Now().Add(maxDelay)
		quiet.Reset(settleDelay)
	collect:
		for len(batch) < maxMatBatch && size < maxMatBytes {
			select {
			case r, ok := <-s.mat:
				if !ok {
					open = false // Close: write everything now
					break collect
				}
				batch = append(batch, r)
				size += len(r.data)
				if wait := time.Until(deadline); wait > 0 {
					quiet.Reset(min(wait, settleDelay))
				} else {
					break collect
				}
			case <-quiet.C:
				break collect
			}
		}
		quiet.Stop()
		if s.hold != nil {
			<-s.hold // tests: keep records in the log until released
		}
		s.materializeOrGiveUp(batch)
	}
}

// matRetry is how long the materializer waits before trying a failed batch
// again while the store is open.
const matRetry = time.Second

// materializeOrGiveUp writes a batch into the tree and releases it. While
// the store is open a failure (a full or read-only disk, a file where a
// directory must go) is retried, since reads are served from memory
// meanwhile; once Close has begun, a batch gets one more try, and if that
// fails it is left in the log, which the next start replays, and Close
// reports the error.
func (s *Store) materializeOrGiveUp(batch []*record) {
	for {
		err := s.materialize(batch)
		if err == nil {
			s.release(batch)
			return
		}
		select {
		case <-s.done:
			if err = s.materialize(batch); err == nil {
				s.release(batch)
				return
			}
			slog.Error("filestore: cannot write logged objects into the tree; they stay in the log for the next start", "dir", s.dir, "err", err)
			s.mu.Lock()
			s.unwritten += len(batch)
			s.matErr = errors.Join(s.matErr, err)
			s.idle.Broadcast() // a committer waiting for room stops waiting
			s.mu.Unlock()
			return
		default:
		}
		slog.Error("filestore: cannot write logged objects into the tree; retrying", "dir", s.dir, "err", err)
		select {
		case <-time.After(matRetry):
		case <-s.done:
		}
	}
}

// materialize writes the records still current (not superseded by a later
// write of the same key) and syncs them.
func (s *Store) materialize(batch []*record) error {
	for _, r := range batch {
		if err := s.applyCurrent(r); err != nil {
			return err
		}
	}
	switch s.sync {
	case syncFS:
		return syncfs(s.dir)
	case syncFile:
		return syncTree(s.dir, batch)
	}
	return nil
}

// applyCurrent applies a record unless a later write of its key
// superseded it: a later logged record, or a file renamed into place
// (placeMu keeps such a rename from landing between the check and the
// write).
func (s *Store) applyCurrent(r *record) error {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	s.mu.Lock()
	current := s.index[r.key] == r
	s.mu.Unlock()
	if !current || s.fileIsLater(r) {
		return nil
	}
	return s.apply(r)
}

// apply makes the tree hold what a record says.
func (s *Store) apply(r *record) error {
	final := filepath.Join(s.dir, filepath.FromSlash(r.key))
	if r.op == opDelete {
		if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
			return nil // a "directory" of other keys, not an object: nothing to delete
		}
		if err := os.Remove(final); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscallENOTDIR) {
			return err
		}
		os.Remove(s.metaPath(r.key))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return fmt.Errorf("%s: %w", r.key, err)
	}
	// A new object is written in place, not renamed: until the record is
	// released, reads are served from memory (Get and Stat look at the log
	// again after opening the file), and a crash replays the log over
	// whatever half-written file it left. An existing object is replaced
	// by rename instead, since a reader may hold it open and must go on
	// reading the version it opened, whole.
	req := &commitReq{key: r.key}
	f, err := os.OpenFile(final, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.CreateTemp(filepath.Join(s.dir, tmpDir), "mat-*")
		if err == nil {
			req.tmp = f.Name()
			err = f.Chmod(0o640)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		req.cleanup()
		return fmt.Errorf("%s: %w", r.key, err)
	}
	// Data, then the record's time, then the metadata attribute: a file
	// with its attribute is whole and carries its final time, which is
	// what fileIsLater relies on while a file is being written in place.
	_, err = f.Write(r.data)
	if err == nil {
		err = setTimes(f, r.mod)
	}
	sidecar := false
	if err == nil {
		sidecar, err = writeMeta(f, r.meta)
	}
	if err == nil && s.sync == syncFile {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && req.tmp != "" {
		if err = os.Rename(req.tmp, final); err == nil {
			req.tmp = ""
		}
	}
	if err == nil {
		if sidecar && len(r.meta) > 0 {
			if err = s.writeSidecar(req, r.meta); err == nil {
				os.MkdirAll(filepath.Dir(req.metaFinal), 0o750)
				err = os.Rename(req.metaTmp, req.metaFinal)
			}
		}
	}
	if err != nil {
		req.cleanup()
		return fmt.Errorf("%s: %w", r.key, err)
	}
	return nil
}

// release forgets materialized records and deletes emptied sealed
// segments.
func (s *Store) release(batch []*record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range batch {
		if s.index[r.key] == r {
			delete(s.index, r.key)
		}
		s.count(r, -1)
		if seg := r.seg; seg != nil {
			seg.pending--
			if seg.pending == 0 && seg.sealed {
				os.Remove(seg.path)
			}
		}
	}
	s.idle.Broadcast()
}

// syncTree fsyncs the files and directories a batch touched, where
// syncfs(2) is not available.
func syncTree(root string, batch []*record) error {
	dirs := map[string]bool{}
	for _, r := range batch {
		p := filepath.Join(root, filepath.FromSlash(r.key))
		if f, err := os.Open(p); err == nil {
			err = f.Sync()
			f.Close()
			if err != nil {
				return err
			}
		}
		for d := filepath.Dir(p); len(d) >= len(root); d = filepath.Dir(d) {
			dirs[d] = true
			if d == root {
				break
			}
		}
	}
	for d := range dirs {
		if err := fsyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// recover replays segments a previous run left (after a crash) into the
// tree, syncs it and deletes them.
func (s *Store) recover() error {
	seqs, err := segments(s.dir)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		return nil
	}
	var all []*record
	for _, seq := range seqs {
		recs, err := readSegment(segmentPath(s.dir, seq))
		if err != nil {
			return err
		}
		all = append(all, recs...)
	}
	// The last write of each key wins, as it did before the crash.
	for _, r := range all {
		s.index[r.key] = r
	}
	s.recovering = true
	err = s.materialize(all)
	s.recovering = false
	if err != nil {
		return err
	}
	clear(s.index)
	for _, seq := range seqs {
		if err := os.Remove(segmentPath(s.dir, seq)); err != nil {
			return err
		}
	}
	if s.sync != syncNone {
		return fsyncDir(filepath.Join(s.dir, logDir))
	}
	return nil
}
