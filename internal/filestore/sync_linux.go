package filestore

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const defaultSync = syncFS

var syscallENOTDIR = syscall.ENOTDIR

// syncfs flushes the whole file system holding path: every file written
// before the call, data and metadata, in one journal commit (syncfs(2)).
func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// fdatasync flushes a file's data and the metadata needed to read it.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
