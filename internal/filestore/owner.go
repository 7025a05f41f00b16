package filestore

import (
	"context"
	"errors"
	"fmt"
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
// each key, re-read when the segments change.
type ownerLog struct {
	mu      sync.Mutex
	version string // names and sizes of the segments read
	latest  map[string]*record
}

// records returns the latest logged record of every key.
func (o *ownerLog) records(dir string) map[string]*record {
	o.mu.Lock()
	defer o.mu.Unlock()
	seqs, err := segments(dir)
	if err != nil {
		return o.latest
	}
	version := ""
	for _, seq := range seqs {
		fi, err := os.Stat(segmentPath(dir, seq))
		if err != nil {
			continue // released by the owner meanwhile
		}
		version += fmt.Sprintf("%d:%d,", seq, fi.Size())
	}
	if version == o.version && o.latest != nil {
		return o.latest
	}
	latest := map[string]*record{}
	for _, seq := range seqs {
		recs, err := readSegment(segmentPath(dir, seq))
		if err != nil {
			continue
		}
		for _, r := range recs {
			latest[r.key] = r
		}
	}
	o.version, o.latest = version, latest
	return latest
}

// newerThanFile reports whether a logged record is later than the key's
// file, if there is one: what a follower reads, and what the owner
// writes into the tree.
func (s *Store) newerThanFile(r *record) bool {
	fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(r.key)))
	if err != nil {
		return true
	}
	return r.mod.After(fi.ModTime())
}

// followerPending is pending for a follower: the owner's logged record of
// key, if it is later than the key's file.
func (s *Store) followerPending(key string) *record {
	r := s.owner.records(s.dir)[key]
	if r == nil || !s.newerThanFile(r) {
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
	// Limitation: a write of the same key that the owner logged before
	// this delete and has not yet put into the tree still reaches the tree
	// afterwards, since no file is left to be newer than it. letterbox's
	// followers only read and add objects; they do not delete the owner's.
	if s.sync != syncNone && err == nil {
		if err := fsyncDir(filepath.Dir(path)); err != nil {
			return fault.Temporary(fmt.Errorf("filestore: delete %s: %w", key, err))
		}
	}
	return nil
}
