package fault_test

import (
	"context"
	"errors"
	"fmt"
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
