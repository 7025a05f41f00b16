package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// Span attribute names (docs/observability.md lists them with the spans
// that carry them). letterbox.message_id is on every span of a message.
const (
	AttrMessageID = "letterbox.message_id" // the message id (a ULID), as in raw/<id>.eml
	AttrJobID     = "letterbox.job_id"     // <message id>.<route>.<action index>
	AttrRoute     = "letterbox.route"      // the route's name
	AttrAction    = "letterbox.action"     // the action's kind: webhook, forward, lambda, sqs, sns, eventbridge, store, drop
	AttrAttempt   = "letterbox.attempt"    // the delivery attempt's number, from 1
	AttrRetry     = "letterbox.retry"      // true on a span that redoes work (a delivery attempt after the first); always sampled
	AttrOutcome   = "letterbox.outcome"    // delivered, retry or failed
	AttrTemporary = "letterbox.temporary"  // on a failed span: whether the error is temporary (package fault)
	AttrSMTPCode  = "letterbox.smtp.code"  // the SMTP reply code of a command or transaction
	AttrRcpts     = "letterbox.rcpt_count" // recipients accepted
	AttrSize      = "letterbox.size"       // message size in bytes
	AttrJobs      = "letterbox.jobs"       // jobs a message fanned out into
	AttrWarnings  = "letterbox.parse.warnings"
	AttrKey       = "letterbox.store.key" // a store key written or read
	AttrStatus    = "http.response.status_code"
)

// MessageID is the letterbox.message_id attribute.
func MessageID(id string) attribute.KeyValue { return attribute.String(AttrMessageID, id) }

// Fail marks span as failed with err, noting whether err is temporary.
// A nil err leaves the span as it is.
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(attribute.Bool(AttrTemporary, fault.IsTemporary(err)))
}
