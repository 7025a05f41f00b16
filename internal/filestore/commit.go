package filestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// writeReq is one Put or Delete waiting for its commit.
type writeReq struct {
	key    string
	delete bool
	meta   string
	body   []byte // a small body
	file   string // or a large body's blob
	size   int64
	mtime  int64 // set by the commit
	done   chan error
}

// submit hands a write to the committer and waits for its commit.
func (s *Store) submit(ctx context.Context, r *writeReq) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fault.Temporaryf("filestore: closed")
	}
	select {
	case s.reqs <- r:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return fault.Temporary(ctx.Err())
	case <-s.closing:
		s.closeMu.RUnlock()
		return fault.Temporaryf("filestore: closed")
	}
	// Once handed over, the commit happens whatever ctx says: waiting for
	// it keeps "an error means nothing changed" true.
	return <-r.done
}

// committer commits the writes handed over, in batches: whatever has
// queued while the previous batch committed goes in one transaction.
func (s *Store) committer() {
	defer close(s.stopped)
	for r := range s.reqs {
		batch := []*writeReq{r}
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.busy.Store(true)
		err := s.commit(batch)
		s.busy.Store(false)
		if err == nil || len(batch) == 1 {
			s.finish(batch, err)
			continue
		}
		// Commit each alone, so that one write cannot fail the others
		// (which usually fail the same way: a full disk).
		for _, r := range batch {
			s.finish([]*writeReq{r}, s.commit([]*writeReq{r}))
		}
	}
}

// commit applies a batch in one transaction, then removes the blob files
// the batch replaced or deleted.
func (s *Store) commit(batch []*writeReq) error {
	keys := batch[0].key
	if len(batch) > 1 {
		keys += fmt.Sprintf(" and %d more", len(batch)-1)
	}
	tx, err := s.wdb.Begin()
	if err != nil {
		return fault.Temporary(fmt.Errorf("filestore: write %s: %w", keys, err))
	}
	var old []string
	now := time.Now().UnixNano()
	for _, r := range batch {
		var file sql.NullString
		err := tx.QueryRow(`SELECT file FROM objects WHERE key = ?`, r.key).Scan(&file)
		if err != nil && err != sql.ErrNoRows {
			tx.Rollback()
			return fault.Temporary(fmt.Errorf("filestore: %s: %w", r.key, err))
		}
		if file.Valid {
			old = append(old, file.String)
		}
		if r.delete {
			_, err = tx.Exec(`DELETE FROM objects WHERE key = ?`, r.key)
		} else {
			r.mtime = now
			var f any
			if r.file != "" {
				f = r.file
			}
			_, err = tx.Exec(`INSERT OR REPLACE INTO objects (key, size, mtime, meta, body, file) VALUES (?, ?, ?, ?, ?, ?)`,
				r.key, r.size, now, r.meta, r.body, f)
		}
		if err != nil {
			tx.Rollback()
			return fault.Temporary(fmt.Errorf("filestore: write %s: %w", r.key, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fault.Temporary(fmt.Errorf("filestore: write %s: commit: %w", keys, err))
	}
	for _, f := range old {
		s.removeBlob(f)
	}
	return nil
}

// finish tells a batch's writers how their commit went.
func (s *Store) finish(batch []*writeReq, err error) {
	for _, r := range batch {
		r.done <- err
	}
}
