package filestore

// syncDir does nothing on Windows, where a directory cannot be opened for
// syncing and NTFS journals its entries itself.
func syncDir(string) error { return nil }
