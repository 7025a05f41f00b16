package filestore

// inCommitter reports whether the committer is committing a batch.
func inCommitter(s *Store) bool { return s.busy.Load() }

// InCommitter is inCommitter for the external tests.
var InCommitter = inCommitter

// QueueFull reports whether the committer's queue is full: more writers
// wait to hand theirs over.
func QueueFull(s *Store) bool { return len(s.reqs) == cap(s.reqs) }
