// Package telemetry sets up OpenTelemetry tracing for letterbox and holds
// what every stage shares about it: the span attribute names, W3C Trace
// Context propagation (https://www.w3.org/TR/trace-context/) across the
// pipeline's boundaries, a slog handler that puts trace_id and span_id on
// log lines, and the sampler.
//
// Tracing is configured with the standard OTEL_* environment variables of
// the OpenTelemetry specification ("SDK environment variables" and the
// OTLP exporter's): OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns it on, OTEL_EXPORTER_OTLP_PROTOCOL
// chooses http/protobuf (the default) or grpc, OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose the sampler, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES name the process, OTEL_SDK_DISABLED and
// OTEL_TRACES_EXPORTER=none turn it off. With none of them set, nothing is
// installed: the stages' tracer is OpenTelemetry's global no-op one, and a
// span costs a context value (docs/benchmarks.md, "Tracing").
//
// Stages get their tracer from the global provider (otel.Tracer), which
// Setup sets; only entry points (and the composition of the pipeline)
// call Setup. The exporters read their own OTEL_EXPORTER_OTLP_* variables
// (headers, timeout, TLS) from the process environment.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config says how to trace one process.
type Config struct {
	// Service is the default service.name (OTEL_SERVICE_NAME wins):
	// letterbox-dev, letterbox-smtpgw, letterbox-ingest, letterbox-deliver.
	Service string
	// Getenv reads the OTEL_* variables; nil reads nothing (tracing off
	// unless SpanFile is set).
	Getenv func(string) string
	// SpanFile, when set, also writes every span as a JSON line to this
	// file (the dev file exporter that `letterbox trace` reads), whether or
	// not an OTLP endpoint is set.
	SpanFile string
	// PerInvocation buffers a Lambda invocation's spans and exports them
	// only when Flush is called, at the end of the invocation: no
	// background goroutine runs while the function is frozen.
	PerInvocation bool
	// Exporter, when set, is used instead of OTLP (tests).
	Exporter sdktrace.SpanExporter
}

// Provider is the process's tracing. The zero Provider (tracing off) is
// valid: its methods do nothing.
type Provider struct {
	tp    *sdktrace.TracerProvider
	flush func(context.Context) error
}

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p != nil && p.tp != nil }

// Flush exports the spans ended so far; Lambda handlers call it before
// they return.
func (p *Provider) Flush(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	return p.flush(ctx)
}

// Shutdown flushes and stops the exporters.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Tracer returns the provider's tracer, or the global one when tracing
// is off.
func (p *Provider) Tracer(name string) trace.Tracer {
	if !p.Enabled() {
		return otel.Tracer(name)
	}
	return p.tp.Tracer(name)
}

// Setup installs the process's tracer provider as OpenTelemetry's global
// one, with W3C Trace Context as the propagator, when cfg turns tracing
// on; otherwise it installs nothing and returns a zero Provider. A bad
// OTEL_* value is an error naming the variable.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return &Provider{}, nil
	}
	var exporters []sdktrace.SpanExporter
	if cfg.Exporter != nil {
		exporters = append(exporters, cfg.Exporter)
	} else if otlpWanted(getenv) {
		exp, err := newOTLP(ctx, getenv)
		if err != nil {
			return nil, err
		}
		exporters = append(exporters, exp)
	}
	if cfg.SpanFile != "" {
		fe, err := OpenSpanFile(cfg.SpanFile)
		if err != nil {
			return nil, err
		}
		exporters = append(exporters, fe)
	}
	if len(exporters) == 0 {
		return &Provider{}, nil
	}
	sampler, err := SamplerFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	service := cfg.Service
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		service = v
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	if ra := getenv("OTEL_RESOURCE_ATTRIBUTES"); ra != "" {
		extra, err := parseResourceAttributes(ra)
		if err != nil {
			return nil, err
		}
		if res, err = resource.Merge(res, resource.NewSchemaless(extra...)); err != nil {
			return nil, fmt.Errorf("telemetry: resource: %w", err)
		}
		if v := getenv("OTEL_SERVICE_NAME"); v != "" {
			res, _ = resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", v)))
		}
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sampler), sdktrace.WithResource(res)}
	for _, e := range exporters {
		if cfg.PerInvocation {
			opts = append(opts, sdktrace.WithSpanProcessor(&invocationProcessor{exp: e}))
			continue
		}
		opts = append(opts, sdktrace.WithBatcher(e, sdktrace.WithBatchTimeout(batchTimeout(getenv))))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	p := &Provider{tp: tp, flush: tp.ForceFlush}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return p, nil
}

// otlpWanted reports whether the environment asks for the OTLP exporter.
func otlpWanted(getenv func(string) string) bool {
	switch strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func newOTLP(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if proto == "" {
		proto, name = getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	}
	return nil, fmt.Errorf("telemetry: %s=%q: want http/protobuf or grpc", name, proto)
}

// batchTimeout is OTEL_BSP_SCHEDULE_DELAY (milliseconds), default 1 s:
// shorter than the SDK's 5 s so a developer sees a trace soon after the
// message.
func batchTimeout(getenv func(string) string) time.Duration {
	var ms int
	if _, err := fmt.Sscanf(getenv("OTEL_BSP_SCHEDULE_DELAY"), "%d", &ms); err == nil && ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return time.Second
}

func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", kv)
		}
		out = append(out, attribute.String(k, v))
	}
	return out, nil
}

// invocationProcessor keeps the spans of one Lambda invocation and
// exports them on ForceFlush; it starts no goroutine. At most maxBuffered
// spans wait; more are dropped (and counted in the next export's log).
type invocationProcessor struct {
	exp     sdktrace.SpanExporter
	mu      sync.Mutex
	spans   []sdktrace.ReadOnlySpan
	dropped int
}

const maxBuffered = 4096

func (p *invocationProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *invocationProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.spans) >= maxBuffered {
		p.dropped++
		return
	}
	p.spans = append(p.spans, s)
}

func (p *invocationProcessor) ForceFlush(ctx context.Context) error {
	p.mu.Lock()
	spans := p.spans
	p.spans = nil
	dropped := p.dropped
	p.dropped = 0
	p.mu.Unlock()
	var err error
	if len(spans) > 0 {
		err = p.exp.ExportSpans(ctx, spans)
	}
	if dropped > 0 {
		err = errors.Join(err, fmt.Errorf("telemetry: %d spans dropped (more than %d in one invocation)", dropped, maxBuffered))
	}
	return err
}

func (p *invocationProcessor) Shutdown(ctx context.Context) error {
	return errors.Join(p.ForceFlush(ctx), p.exp.Shutdown(ctx))
}

// Flushing wraps a Lambda handler so that the invocation's spans are
// exported before it returns (Config.PerInvocation); a failed export is
// logged, never the invocation's failure.
func Flushing[E, R any](p *Provider, log *slog.Logger, fn func(context.Context, E) (R, error)) func(context.Context, E) (R, error) {
	if !p.Enabled() {
		return fn
	}
	return func(ctx context.Context, ev E) (R, error) {
		defer func() {
			if err := p.Flush(context.WithoutCancel(ctx)); err != nil {
				log.WarnContext(ctx, "cannot export spans", "err", err)
			}
		}()
		return fn(ctx, ev)
	}
}
