package filestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// commitReq is one written-but-uncommitted object.
type commitReq struct {
	key                string
	tmp, final         string
	metaTmp, metaFinal string
	done               chan error
}

// maxBatch bounds one group commit.
const maxBatch = 256

// committer makes batches of writes durable with a few syncs for the whole
// batch: sync the file system (every temporary file's data and inode), rename
// each file into place (metadata first, then the object: the commit point),
// then sync again so the renames are durable. Only then are writers told.
func (s *Store) committer() {
	batch := make([]*commitReq, 0, maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.done:
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
	fail := func(rs []*commitReq, err error) {
		for _, r := range rs {
			os.Remove(r.tmp)
			if r.metaTmp != "" {
				os.Remove(r.metaTmp)
			}
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
			os.Remove(r.tmp)
			if r.metaTmp != "" {
				os.Remove(r.metaTmp)
			}
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
	if fi, err := os.Stat(r.final); err == nil && fi.IsDir() {
		return errNamespace(r.key)
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
	} else if err := os.Remove(r.metaFinal); err == nil {
		dirs[filepath.Dir(r.metaFinal)] = true
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
	if err := os.Rename(r.tmp, r.final); err != nil {
		return fault.Temporary(fmt.Errorf("filestore: %w", err))
	}
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

// syncDirs makes the renames durable. New parent directories are synced
// up to the store root.
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
