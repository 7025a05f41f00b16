package delivery

import (
	"context"
	"net/url"

	"github.com/aws/aws-lambda-go/events"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

var tracer = otel.Tracer("github.com/letterboxmail/letterbox/internal/delivery")

// Spans (docs/observability.md):
//
//	delivery.batch        one per queue batch (a deliver invocation): its own trace, linked to each job's
//	delivery.attempt      one per attempt, the child of the job's delivery.job span (ingest), linked to its batch
//	  delivery.<kind>     the action: delivery.webhook, delivery.forward, delivery.sqs, delivery.sns,
//	                      delivery.lambda, delivery.eventbridge, delivery.store, delivery.drop
//
// A job's traceparent comes from the queue message's traceparent
// attribute (SQS) or from the job itself (Job.Traceparent).

// recordTraceparent returns the traceparent of a queue record: its
// message attribute, else the job's own.
func recordTraceparent(rec events.SQSMessage, j *Job) string {
	if a, ok := rec.MessageAttributes[telemetry.HeaderTraceparent]; ok && a.StringValue != nil && *a.StringValue != "" {
		return *a.StringValue
	}
	return j.Traceparent
}

// startBatch starts a batch's span; each attempt adds a link to itself.
func startBatch(ctx context.Context, ev events.SQSEvent) (context.Context, trace.Span) {
	return tracer.Start(ctx, "delivery.batch", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(ev.Records))))
}

// startAttempt starts an attempt's span in the job's trace, linked to the
// batch span in ctx. An attempt after the first is marked
// letterbox.retry, which the sampler always keeps.
func startAttempt(ctx context.Context, rec events.SQSMessage, j *Job, receives int) (context.Context, trace.Span) {
	batchSpan := trace.SpanFromContext(ctx)
	batch := batchSpan.SpanContext()
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		telemetry.MessageID(j.MessageID), attribute.String(telemetry.AttrJobID, j.ID), attribute.String(telemetry.AttrRoute, j.Route),
		attribute.String(telemetry.AttrAction, j.Kind), attribute.Bool(telemetry.AttrRetry, receives > 1 || j.DeadLetteredAt != nil))}
	if batch.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: batch}))
	}
	if sc := telemetry.Remote(recordTraceparent(rec, j)); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	actx, span := tracer.Start(ctx, "delivery.attempt", opts...)
	if batch.IsValid() {
		batchSpan.AddLink(trace.Link{SpanContext: span.SpanContext()})
	}
	return actx, span
}

// endAttempt notes an attempt's outcome on its span.
func endAttempt(span trace.Span, a Attempt, err error) {
	span.SetAttributes(attribute.Int(telemetry.AttrAttempt, a.Number), attribute.String(telemetry.AttrOutcome, a.Outcome))
	if a.Status != 0 {
		span.SetAttributes(attribute.Int("letterbox.peer.status", a.Status))
	}
	telemetry.Fail(span, err)
}

// startAction starts the span of the action itself.
func startAction(ctx context.Context, kind string, j *Job) (context.Context, trace.Span) {
	return tracer.Start(ctx, "delivery."+kind, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.MessageID(j.MessageID), attribute.String(telemetry.AttrJobID, j.ID)))
}

// webhookSpan notes the receiver's host (never the whole URL: it may hold
// a token) and later its status.
func webhookSpan(ctx context.Context, u string) trace.Span {
	span := trace.SpanFromContext(ctx)
	if pu, err := url.Parse(u); err == nil {
		span.SetAttributes(attribute.String("server.address", pu.Hostname()), attribute.String("http.request.method", "POST"))
	}
	return span
}

// NewEMFMetrics returns Metrics that write CloudWatch Embedded Metric
// Format lines (the deliver function's: DeliveryAttempts and
// DeliveryLatency by Kind and Outcome, DeadLetters by Kind).
func NewEMFMetrics(w *emf.Writer) *Metrics { return &Metrics{emf: w} }

func (m *Metrics) emitEMF(ctx context.Context, j *Job, outcome string, seconds float64) {
	if m.emf == nil {
		return
	}
	props := map[string]string{}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		props["trace_id"] = sc.TraceID().String()
	}
	props["message_id"], props["job_id"] = j.MessageID, j.ID
	dims := []emf.Dim{{Name: "Function", Value: "deliver"}, {Name: "Kind", Value: j.Kind}, {Name: "Outcome", Value: outcome}}
	// Per kind, and for all kinds (the alarms' and dashboard's).
	_ = m.emf.EmitSets(dims, [][]string{{"Function", "Outcome"}}, props,
		emf.Metric{Name: "DeliveryAttempts", Unit: emf.Count, Value: 1},
		emf.Metric{Name: "DeliveryLatency", Unit: emf.Milliseconds, Value: seconds * 1000})
	if outcome == StatusFailed {
		_ = m.emf.EmitSets(dims[:2], [][]string{{"Function"}}, props, emf.Metric{Name: "DeadLetters", Unit: emf.Count, Value: 1})
	}
}
