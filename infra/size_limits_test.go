package infra

import (
	"testing"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/parser"
)

// The delivery queue accepts what ingest puts in a job (SQS's 1 MiB since
// 2025, delivery.MaxQueueMessage), and the ingest function gets the
// parser's body limit from MaxBodyBytes, whose default is the parser's.
func TestSizeLimitsMatchTheCode(t *testing.T) {
	if n, ok := intValue(t, props(t, "DeliveryQueue").Get("MaximumMessageSize")); !ok || n != delivery.MaxQueueMessage {
		t.Errorf("DeliveryQueue MaximumMessageSize = %d, want %d (delivery.MaxQueueMessage)", n, delivery.MaxQueueMessage)
	}
	env := props(t, "IngestFunction").Get("Environment").Get("Variables")
	v := env.Get("LETTERBOX_MAX_BODY_BYTES")
	if v == nil || refTarget(v) != "MaxBodyBytes" {
		t.Fatal("IngestFunction: LETTERBOX_MAX_BODY_BYTES is not !Ref MaxBodyBytes")
	}
	if n, ok := intValue(t, v); !ok || n != parser.DefaultMaxBodyBytes {
		t.Errorf("MaxBodyBytes default = %d, want parser.DefaultMaxBodyBytes %d", n, parser.DefaultMaxBodyBytes)
	}
}
