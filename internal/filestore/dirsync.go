//go:build !windows

package filestore

import "os"

// syncDir makes a directory's entries durable (POSIX: a new file's name
// is durable only once its directory is fsynced).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
