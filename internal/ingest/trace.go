package ingest

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

var tracer = otel.Tracer("github.com/letterboxmail/letterbox/internal/ingest")

// Spans (docs/observability.md), in the message's trace, continued from
// the traceparent the gateway wrote into the raw object's metadata:
//
//	storage.event       from the S3 event's time to ingest receiving it: the raw queue's wait
//	  ingest            one message: read, parse, route, enqueue
//	    ingest.parse    parsing, with mailauth.check and its dns.query spans
//	    ingest.route    evaluating the routes and sending the jobs
//	      delivery.job  one per job sent, ended when the queue accepted it; its
//	                    traceparent travels with the job, and every attempt is its child

type eventTimeKey struct{}

func withEventTime(ctx context.Context, t time.Time) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, eventTimeKey{}, t)
}

// startIngest starts the ingest span of raw object obj, read at start,
// as the child of a storage.event span that continues the writer's trace.
// A raw object without traceparent (tracing off at the gateway, SES)
// starts a trace of its own here.
func startIngest(ctx context.Context, id, key string, obj store.Object, start time.Time) (context.Context, trace.Span) {
	attrs := trace.WithAttributes(telemetry.MessageID(id), attribute.String(telemetry.AttrKey, key))
	ctx = telemetry.WithRemoteParent(ctx, obj.Meta[store.MetaTraceparent])
	if at, ok := ctx.Value(eventTimeKey{}).(time.Time); ok && at.Before(start) {
		var ev trace.Span
		ctx, ev = tracer.Start(ctx, "storage.event", attrs, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(at))
		ev.End(trace.WithTimestamp(start))
	}
	return tracer.Start(ctx, "ingest", attrs, trace.WithTimestamp(start))
}

// traceJobs starts a delivery.job span per job and puts its traceparent
// in the job; the returned function ends them once the queue answered.
// The spans are siblings under ingest.route: one message fanning out.
func traceJobs(ctx context.Context, jobs []delivery.Job) func(error) {
	spans := make([]trace.Span, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		var jctx context.Context
		jctx, spans[i] = tracer.Start(ctx, "delivery.job", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			telemetry.MessageID(j.MessageID), attribute.String(telemetry.AttrJobID, j.ID),
			attribute.String(telemetry.AttrRoute, j.Route), attribute.String(telemetry.AttrAction, j.Kind)))
		j.Traceparent = telemetry.Traceparent(jctx)
	}
	return func(err error) {
		for _, s := range spans {
			telemetry.Fail(s, err)
			s.End()
		}
	}
}

// Metrics writes the ingest function's EMF metrics; a nil *Metrics
// writes nothing.
type Metrics struct{ EMF *emf.Writer }

// ingested counts one message: MessagesIngested, ParseWarnings and
// JobsEnqueued, dimension Function=ingest.
func (mt *Metrics) ingested(ctx context.Context, m *message.Message, jobs []delivery.Job) {
	if mt == nil {
		return
	}
	props := map[string]string{"message_id": m.ID}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		props["trace_id"] = sc.TraceID().String()
	}
	_ = mt.EMF.Emit([]emf.Dim{{Name: "Function", Value: "ingest"}}, props,
		emf.Metric{Name: "MessagesIngested", Unit: emf.Count, Value: 1},
		emf.Metric{Name: "ParseWarnings", Unit: emf.Count, Value: float64(len(m.Warnings))},
		emf.Metric{Name: "JobsEnqueued", Unit: emf.Count, Value: float64(len(jobs))},
		emf.Metric{Name: "MessageBytes", Unit: emf.Bytes, Value: float64(m.Size)})
}
