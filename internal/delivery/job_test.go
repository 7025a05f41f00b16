package delivery_test

import (
	"testing"

	"github.com/letterboxmail/letterbox/internal/delivery"
)

// TestCarryInlineBoundary checks the thresholds docs/deploy.md derives
// from prices: one job carries its message up to 7 chunks of 64 KiB
// (448 KiB, beyond the old 256 KiB limit), two jobs up to 4, five up to 2,
// and a message stored anyway (KeepParsed) only in a single chunk.
func TestCarryInlineBoundary(t *testing.T) {
	const chunk = 64 << 10
	tests := []struct {
		jobs   int
		stored bool
		chunks int // the most chunks still carried inline
	}{
		{1, false, 7},
		{2, false, 4},
		{3, false, 3},
		{5, false, 2},
		{20, false, 1},
		{1, true, 1},
	}
	for _, tt := range tests {
		if !delivery.CarryInline(tt.chunks*chunk, tt.jobs, tt.stored) {
			t.Errorf("%d jobs (stored %v) of %d chunks: not carried inline", tt.jobs, tt.stored, tt.chunks)
		}
		if delivery.CarryInline(tt.chunks*chunk+1, tt.jobs, tt.stored) {
			t.Errorf("%d jobs (stored %v) of %d chunks and a byte: carried inline", tt.jobs, tt.stored, tt.chunks)
		}
	}
	if delivery.CarryInline(delivery.MaxQueueBody+1, 1, false) {
		t.Error("a job over MaxQueueBody carried inline")
	}
}
