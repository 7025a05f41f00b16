package filestore

// inCommitter reports whether the committer is committing a batch.
func inCommitter(s *Store) bool { return s.busy.Load() }

// InCommitter is inCommitter for the external tests.
var InCommitter = inCommitter
