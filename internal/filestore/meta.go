package filestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// Object metadata is stored in an extended attribute of the object's file,
// set before the file is renamed into place, so the two become visible
// together and a message costs one inode, not two. On file systems without
// user extended attributes it goes to a sidecar under .meta/ instead,
// written before the object.
const xattrMeta = "user.letterbox.meta"

// writeMeta attaches meta to the open file f, even when empty, so that a
// stale sidecar of an overwritten object is never consulted. It returns
// sidecar=true when the file system has no extended attributes, and the
// caller must write the sidecar.
func writeMeta(f *os.File, meta map[string]string) (sidecar bool, err error) {
	if meta == nil {
		meta = map[string]string{}
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return false, err
	}
	err = unix.Fsetxattr(int(f.Fd()), xattrMeta, b, 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
		return true, nil
	}
	return false, err
}

// readMeta reads an object's metadata from its file's attribute, or from
// a sidecar. With f set (an open Get), the attribute is read from that
// file, so data and metadata come from the same version even if the
// object is replaced meanwhile.
func (s *Store) readMeta(key, path string, f *os.File) (map[string]string, error) {
	get := func(buf []byte) (int, error) {
		if f != nil {
			return unix.Fgetxattr(int(f.Fd()), xattrMeta, buf)
		}
		return unix.Getxattr(path, xattrMeta, buf)
	}
	buf := make([]byte, 4096)
	n, err := get(buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = get(nil); err == nil {
			buf = make([]byte, n)
			n, err = get(buf)
		}
	}
	var meta map[string]string
	switch {
	case err == nil:
		if err := json.Unmarshal(buf[:n], &meta); err != nil {
			return nil, fault.Permanentf("filestore: metadata of %s: %w", key, err)
		}
		if len(meta) == 0 {
			meta = nil
		}
		return meta, nil
	case errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP):
	case errors.Is(err, fs.ErrNotExist):
		return nil, s.mapErr(key, err)
	default:
		return nil, fault.Temporary(fmt.Errorf("filestore: metadata of %s: %w", key, err))
	}
	b, err := os.ReadFile(s.metaPath(key))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fault.Permanentf("filestore: metadata of %s: %w", key, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fault.Temporary(fmt.Errorf("filestore: metadata of %s: %w", key, err))
	}
	return meta, nil
}

func (s *Store) metaPath(key string) string {
	return filepath.Join(s.dir, metaDir, filepath.FromSlash(key)+".json")
}

// setTimes sets an open file's access and modification times (on the
// descriptor, so it is this file whatever its name now points to), to
// the microsecond: stamps are whole microseconds.
func setTimes(f *os.File, t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Futimes(int(f.Fd()), []unix.Timeval{tv, tv})
}
