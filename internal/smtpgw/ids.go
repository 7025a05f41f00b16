package smtpgw

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// idSource makes message and session ids: ULIDs, which sort by time, with
// monotonic entropy from crypto/rand so that ids made in the same
// millisecond still sort in order. It is safe for concurrent use.
type idSource struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

func newIDSource() *idSource {
	return &idSource{entropy: ulid.Monotonic(rand.Reader, 0)}
}

// New returns a new id.
func (s *idSource) New() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := ulid.New(ulid.Timestamp(time.Now()), s.entropy)
	if err != nil {
		// The monotonic increment overflowed within one millisecond:
		// start from fresh entropy.
		s.entropy = ulid.Monotonic(rand.Reader, 0)
		id = ulid.MustNew(ulid.Timestamp(time.Now()), s.entropy)
	}
	return id.String()
}
