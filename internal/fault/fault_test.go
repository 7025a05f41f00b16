package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/letterboxmail/letterbox/internal/fault"
)

func TestIsTemporary(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unclassified is temporary", base, true},
		{"temporary", fault.Temporary(base), true},
		{"permanent", fault.Permanent(base), false},
		{"wrapped permanent", fmt.Errorf("ctx: %w", fault.Permanent(base)), false},
		{"outermost wins", fault.Temporary(fault.Permanent(base)), true},
		{"context deadline is temporary", context.DeadlineExceeded, true},
		{"formatted permanent", fault.Permanentf("bad %s", "input"), false},
		// Another type's Temporary() method is not the project's bit.
		{"foreign Temporary() false is unclassified", guess{false, base}, true},
		{"net.Error's deprecated Temporary() is ignored", &net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}, true},
		{"foreign Temporary() true over permanent", guess{true, fault.Permanent(base)}, false},
		{"foreign Temporary() false over temporary", guess{false, fault.Temporary(base)}, true},
		{"permanent over a net.Error", fault.Permanent(&net.OpError{Op: "dial", Err: &net.DNSError{IsTimeout: true}}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fault.IsTemporary(tt.err); got != tt.want {
				t.Fatalf("IsTemporary(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if !errors.Is(fault.Permanent(base), base) {
		t.Fatal("Permanent must wrap its cause")
	}
	if fault.Temporary(nil) != nil || fault.Permanent(nil) != nil {
		t.Fatal("nil stays nil")
	}
}

// guess is a library error that guesses its own retryability.
type guess struct {
	temporary bool
	err       error
}

func (g guess) Error() string   { return "guess: " + g.err.Error() }
func (g guess) Unwrap() error   { return g.err }
func (g guess) Temporary() bool { return g.temporary }
