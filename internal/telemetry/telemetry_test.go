package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/fault"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestSetupOffWhenUnset(t *testing.T) {
	p, err := Setup(context.Background(), Config{Service: "x", Getenv: env()})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() {
		t.Fatal("tracing on with no OTEL_* variable set")
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, e := range []func(string) string{
		env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_SDK_DISABLED", "true"),
		env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER", "none"),
	} {
		p, err := Setup(context.Background(), Config{Getenv: e})
		if err != nil || p.Enabled() {
			t.Fatalf("disabled by environment: enabled=%v err=%v", p.Enabled(), err)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	for _, tc := range []struct {
		env  func(string) string
		want string
	}{
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER", "sometimes"), `OTEL_TRACES_SAMPLER="sometimes"`},
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"), `OTEL_TRACES_SAMPLER_ARG="2"`},
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_RESOURCE_ATTRIBUTES", "novalue"), `OTEL_RESOURCE_ATTRIBUTES: "novalue"`},
	} {
		_, err := Setup(context.Background(), Config{Getenv: tc.env})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want it to name %s", err, tc.want)
		}
	}
}

func TestSamplerKeepsRetries(t *testing.T) {
	s, err := SamplerFromEnv(env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0"))
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s), sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer("test")
	ctx, root := tr.Start(context.Background(), "root")
	if root.SpanContext().IsSampled() {
		t.Fatal("ratio 0 sampled the root")
	}
	_, first := tr.Start(ctx, "attempt", trace.WithAttributes(attribute.Bool(AttrRetry, false)))
	_, retry := tr.Start(ctx, "attempt", trace.WithAttributes(attribute.Bool(AttrRetry, true)))
	if first.SpanContext().IsSampled() || !retry.SpanContext().IsSampled() {
		t.Fatalf("first attempt sampled %v (want false), retry sampled %v (want true)", first.SpanContext().IsSampled(), retry.SpanContext().IsSampled())
	}
	if retry.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Fatal("the retry left its message's trace")
	}
	s, _ = SamplerFromEnv(env())
	if !strings.Contains(s.Description(), "ParentBased{root:AlwaysOnSampler") {
		t.Fatalf("default sampler %s, want parent-based always on", s.Description())
	}
}

func TestPropagation(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	m := map[string]string{}
	InjectMap(ctx, m)
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if m[HeaderTraceparent] != want {
		t.Fatalf("traceparent %q, want %q", m[HeaderTraceparent], want)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://example.test/", nil)
	InjectHTTP(req)
	if req.Header.Get("traceparent") != want {
		t.Fatalf("header %q", req.Header.Get("traceparent"))
	}
	back := trace.SpanContextFromContext(WithRemoteParent(context.Background(), want))
	if !back.IsRemote() || back.TraceID() != span.SpanContext().TraceID() || back.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("extracted %v", back)
	}
	// No span, nothing written; garbage, no parent.
	empty := map[string]string{}
	InjectMap(context.Background(), empty)
	if len(empty) != 0 || Remote("00-zz").IsValid() || Remote("").IsValid() {
		t.Fatal("propagated something from nothing")
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("message_id", "M1")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	log.InfoContext(ctx, "with span")
	log.Info("without")
	span.End()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := "message_id=M1 trace_id=" + span.SpanContext().TraceID().String() + " span_id=" + span.SpanContext().SpanID().String()
	if !strings.Contains(lines[0], want) {
		t.Errorf("line %q lacks %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span has a trace id: %q", lines[1])
	}
}

func TestFail(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, s := tp.Tracer("t").Start(context.Background(), "s")
	Fail(s, fault.Temporary(errors.New("receiver answered 503")))
	s.End()
	got := rec.Ended()[0]
	if got.Status().Description != "receiver answered 503" {
		t.Fatalf("status %v", got.Status())
	}
	found := false
	for _, a := range got.Attributes() {
		found = found || (a.Key == AttrTemporary && a.Value.AsBool())
	}
	if !found {
		t.Fatal("no letterbox.temporary=true")
	}
}

func TestSpanFileAndInvocationFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), SpanFileName)
	fe, err := OpenSpanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Setup(context.Background(), Config{Service: "letterbox-test", Exporter: fe, PerInvocation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.Tracer("t")
	ctx, root := tr.Start(context.Background(), "root", trace.WithAttributes(MessageID("M1")))
	_, child := tr.Start(ctx, "child", trace.WithLinks(trace.Link{SpanContext: root.SpanContext()}))
	child.End()
	root.End()
	count := func() int {
		n := 0
		if err := ReadSpans(path, func(Span) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d spans exported before Flush; want them buffered for the invocation", n)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []Span
	ReadSpans(path, func(s Span) { got = append(got, s) })
	if len(got) != 2 {
		t.Fatalf("%d spans, want 2", len(got))
	}
	c, r := got[0], got[1]
	if c.Name != "child" || c.ParentID != r.SpanID || c.TraceID != r.TraceID || len(c.Links) != 1 || c.Links[0].SpanID != r.SpanID {
		t.Fatalf("child %+v root %+v", c, r)
	}
	if r.Service != "letterbox-test" || r.Attrs[AttrMessageID] != "M1" || !r.End.After(r.Start) && !r.End.Equal(r.Start) {
		t.Fatalf("root %+v", r)
	}
}
