package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// Tracing sets up the process's OpenTelemetry tracing (package telemetry)
// from the OTEL_* variables getenv reads: off, at no cost, when none is
// set. spanFile, when set, also writes every span there (letterbox dev's
// file, which `letterbox trace` reads). perInvocation buffers a Lambda
// invocation's spans until telemetry.Flushing exports them. service is the
// default service.name (OTEL_SERVICE_NAME wins).
func Tracing(ctx context.Context, service string, getenv func(string) string, spanFile string, perInvocation bool) (*telemetry.Provider, error) {
	return telemetry.Setup(ctx, telemetry.Config{Service: service, Getenv: getenv, SpanFile: spanFile, PerInvocation: perInvocation})
}

// DevSpanFile is the span file of `letterbox dev` on a store:
// traces.jsonl in a file store's directory, .letterbox-traces.jsonl in
// the working directory for an S3 store.
func DevSpanFile(storeURL string) string {
	if dir, ok := strings.CutPrefix(storeURL, "file://"); ok {
		return filepath.Join(dir, telemetry.SpanFileName)
	}
	return ".letterbox-" + telemetry.SpanFileName
}

// metricsWriter is the functions' EMF writer: stdout, in the namespace
// LETTERBOX_METRICS_NAMESPACE names (default "letterbox"; the stack sets
// letterbox/<stack name>).
func (f *Function) metricsWriter() *emf.Writer {
	ns := f.getenv("LETTERBOX_METRICS_NAMESPACE")
	if ns == "" {
		ns = "letterbox"
	}
	return emf.New(os.Stdout, ns)
}

// GatewayMetrics writes the gateway's Prometheus counters and histograms
// as EMF lines to stdout every minute until ctx ends (emf.Prometheus),
// when LETTERBOX_METRICS_NAMESPACE is set (the stack sets it): the
// gateway's metrics reach CloudWatch through its log stream, with no
// agent. It returns at once otherwise.
func GatewayMetrics(ctx context.Context, getenv func(string) string, g prometheus.Gatherer) {
	ns := getenv("LETTERBOX_METRICS_NAMESPACE")
	if ns == "" {
		return
	}
	p := &emf.Prometheus{W: emf.New(os.Stdout, ns), Gatherer: g, Dims: []emf.Dim{{Name: "Service", Value: "smtpgw"}}, Prefix: "letterbox_smtp_"}
	p.Run(ctx, time.Minute)
}
