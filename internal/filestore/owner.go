package filestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// One process at a time owns a store directory's log: the one holding an
// exclusive flock(2) on .log/lock. Only the owner appends to the log,
// replays it at start and cleans .tmp. Any other process that opens the
// directory meanwhile (`letterbox parse`, `deliveries` or `replay` while
// `letterbox dev` runs) is a follower:
//
//   - it writes every object as a file (temporary file, sync, rename,
//     sync), never through the log, so it never touches the owner's
//     segments;
//   - it reads the owner's segments without replaying them, so it sees
//     writes the owner has acknowledged but not yet put into the tree;
//   - between a logged record and a file, the later one wins: a record
//     counts only while the key's file is missing or older than it. The
//     owner applies the same rule when it materializes, so a follower's
//     later write of a key is not overwritten by the owner's earlier one.
const lockFile = "lock"

// lockDir takes the log's lock. owner is false when another process holds
// it; the returned file then is nil.
func lockDir(dir string) (f *os.File, owner bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, logDir, lockFile), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, false, err
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return f, true, nil
}

// ownerLog is a follower's view of the owner's log: the latest record of
// each key. Segments only grow until the owner deletes them, so each is
// read once and then from where the last read stopped (a record the owner
// is still appending is read next time).
type ownerLog struct {
	mu     sync.Mutex
	segs   map[uint64]*segmentView
	latest map[string]*record
}

type segmentView struct {
	file   os.FileInfo // which file was read, to notice a new one by the same name
	offset int64
	recs   []*record
}

// records returns the latest logged record of every key.
func (o *ownerLog) records(dir string) map[string]*record {
	o.mu.Lock()
	defer o.mu.Unlock()
	seqs, err := segments(dir)
	if err != nil {
		return o.latest
	}
	if o.segs == nil {
		o.segs = map[uint64]*segmentView{}
	}
	changed := len(seqs) != len(o.segs)
	live := map[uint64]bool{}
	for _, seq := range seqs {
		live[seq] = true
		v := o.segs[seq]
		if v == nil {
			v = &segmentView{}
			o.segs[seq] = v
		}
		if v.readMore(segmentPath(dir, seq)) {
			changed = true
		}
	}
	for seq := range o.segs {
		if !live[seq] {
			delete(o.segs, seq) // released by the owner
		}
	}
	if changed || o.latest == nil {
		o.latest = map[string]*record{}
		for _, seq := range seqs {
			if v := o.segs[seq]; v != nil {
				for _, r := range v.recs {
					o.latest[r.key] = r
				}
			}
		}
	}
	return o.latest
}

// readMore decodes the records appended since the last read.
func (v *segmentView) readMore(path string) (added bool) {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if v.file != nil && (!os.SameFile(v.file, fi) || fi.Size() < v.offset) {
		*v = segmentView{} // not the segment read before
		added = true
	}
	v.file = fi
	if fi.Size() <= v.offset {
		return added
	}
	if _, err := f.Seek(v.offset, io.SeekStart); err != nil {
		return false
	}
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		r, err := decode(br)
		if err != nil {
			return added // the end, or a record not yet whole
		}
		v.recs = append(v.recs, r)
		v.offset += int64(r.n)
		added = true
	}
}

// fileIsLater reports whether the key's file was written after a logged
// record of it: by a large Put (renamed into place) or by a follower.
// Every file the store writes carries the stamp of its write (see stamp);
// a materialized record's file carries the record's. A file the owner is
// still writing in place (or that a crash cut short) has no metadata
// attribute yet, which is set last, so it is not later: a follower then
// reads the owner's record, and a replay rewrites the file. On a file
// system without extended attributes that cannot be told; the mtime alone
// decides then, except in a replay, which rewrites.
func (s *Store) fileIsLater(r *record) bool {
	path := filepath.Join(s.dir, filepath.FromSlash(r.key))
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() || !fi.ModTime().After(r.mod) {
		return false
	}
	_, err = unix.Getxattr(path, xattrMeta, nil)
	switch {
	case err == nil:
		return true
	case errors.Is(err, unix.ENOTSUP):
		return !s.recovering
	}
	return false
}

// followerPending is pending for a follower: the owner's logged record of
// key, unless the key's file is later.
func (s *Store) followerPending(key string) *record {
	r := s.owner.records(s.dir)[key]
	if r == nil || s.fileIsLater(r) {
		return nil
	}
	return r
}

// deleteFile removes an object's file directly (a follower's Delete),
// durably.
func (s *Store) deleteFile(ctx context.Context, key, path string) error {
	if err := ctx.Err(); err != nil {
		return fault.Temporary(err)
	}
	err := os.Remove(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscallENOTDIR) {
		return fault.Temporary(fmt.Errorf("filestore: delete %s: %w", key, err))
	}
	os.Remove(s.metaPath(key))
	// Limitation: no file is left to be later than a write of the key the
	// owner logged before, so while that record's segment lives, reads
	// (the follower's and, until it materializes the record, the
	// owner's) still see it, and the owner's materializer may put it back.
	// letterbox's followers only read and add objects; they do not delete
	// the owner's.
	if s.sync != syncNone && err == nil {
		if err := fsyncDir(filepath.Dir(path)); err != nil {
			return fault.Temporary(fmt.Errorf("filestore: delete %s: %w", key, err))
		}
	}
	return nil
}
