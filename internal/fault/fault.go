// Package fault classifies errors as temporary or permanent.
//
// Every error that crosses a stage boundary carries one bit: can the same
// operation succeed if it is tried again later? The edges map that bit and
// nothing else: 4xx versus 5xx in SMTP (RFC 5321 §4.2.1), retry versus
// dead-letter in delivery. Internal details stay in logs; peers see a precise
// code and a generic text.
package fault

import (
	"errors"
	"fmt"
)

type classified struct {
	err       error
	temporary bool
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() error   { return c.err }
func (c *classified) Temporary() bool { return c.temporary }

// Temporary marks err as temporary: retrying later may succeed.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, temporary: true}
}

// Permanent marks err as permanent: retrying the same input fails again.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, temporary: false}
}

// Temporaryf formats an error and marks it temporary.
func Temporaryf(format string, args ...any) error {
	return Temporary(fmt.Errorf(format, args...))
}

// Permanentf formats an error and marks it permanent.
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsTemporary reports whether err, or an error it wraps, was marked
// temporary by Temporary or Permanent. The outermost classification wins.
// Only this package's bit counts: a Temporary() method of another type
// (net.Error's deprecated one, a library's guess) is ignored. Unclassified
// errors are temporary: when in doubt, keep the message and try again.
func IsTemporary(err error) bool {
	var c *classified
	if errors.As(err, &c) {
		return c.temporary
	}
	return true
}
