package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceparent is the W3C Trace Context header and the name under
// which letterbox carries it everywhere: raw object metadata, delivery
// jobs, SQS and SNS message attributes, webhook requests.
const HeaderTraceparent = "traceparent"

// The propagator is fixed, not the global one: the pipeline's own hops
// keep working whatever a user installs. Only traceparent is carried
// (no tracestate, no baggage), which bounds what a hop adds to 55 bytes.
var w3c = propagation.TraceContext{}

// Traceparent returns the traceparent of the span in ctx, or "" when
// there is none (tracing off).
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c[HeaderTraceparent]
}

// InjectMap writes the traceparent of ctx's span into m (store metadata,
// message attributes) and leaves m alone when there is none.
func InjectMap(ctx context.Context, m map[string]string) {
	if tp := Traceparent(ctx); tp != "" {
		m[HeaderTraceparent] = tp
	}
}

// InjectHTTP sets the traceparent header of an outgoing request (webhooks,
// policy hooks) from the request's context.
func InjectHTTP(req *http.Request) {
	if tp := Traceparent(req.Context()); tp != "" {
		req.Header.Set(HeaderTraceparent, tp)
	}
}

// Remote returns the span context a traceparent names, for a link or a
// parent; it is invalid when tp is empty or malformed.
func Remote(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := w3c.Extract(context.Background(), propagation.MapCarrier{HeaderTraceparent: tp})
	return trace.SpanContextFromContext(ctx)
}

// WithRemoteParent returns ctx with the span tp names as its remote
// parent; ctx unchanged when tp is empty or malformed.
func WithRemoteParent(ctx context.Context, tp string) context.Context {
	sc := Remote(tp)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// defaultProvider is OpenTelemetry's global provider before anything
// installs one: its tracers make non-recording spans.
var defaultProvider = otel.GetTracerProvider()

// On reports whether a tracer provider has been installed (Setup, or a
// test's otel.SetTracerProvider). Hot paths (the gateway's commands, the
// raw store write) skip building spans and their attributes when it is
// off, so that tracing off costs an atomic load.
func On() bool { return otel.GetTracerProvider() != defaultProvider }
