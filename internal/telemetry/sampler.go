package telemetry

import (
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// SamplerFromEnv returns the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose (the specification's values:
// always_on, always_off, traceidratio, parentbased_always_on,
// parentbased_always_off, parentbased_traceidratio), by default
// parentbased_always_on, wrapped so that a span started with
// letterbox.retry=true is always sampled.
//
// Keeping every trace that had an error or a retry is decided in two
// places, because a head sampler decides when a trace starts and cannot
// know whether it will fail:
//
//   - by default every trace is sampled at its root (the SMTP
//     transaction), so nothing is lost before a tail decision can be made;
//     failed spans carry status Error and retries letterbox.retry=true, so
//     an OpenTelemetry Collector's tail_sampling processor can keep every
//     trace with an error or a retry and a ratio of the rest
//     (docs/observability.md has the policy);
//   - with a ratio sampler at the head, a delivery attempt after the first
//     is known to be a retry when it starts, so it is sampled whatever its
//     parent's decision: a retried delivery always reaches the backend,
//     under its message's trace id.
func SamplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	var base sdktrace.Sampler
	switch name {
	case "", "parentbased_always_on":
		base = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "always_on":
		base = sdktrace.AlwaysSample()
	case "always_off":
		base = sdktrace.NeverSample()
	case "parentbased_always_off":
		base = sdktrace.ParentBased(sdktrace.NeverSample())
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		base = r
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		base = sdktrace.ParentBased(r)
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	}
	return keepRetries{base}, nil
}

// keepRetries samples every span started with letterbox.retry=true.
type keepRetries struct{ base sdktrace.Sampler }

func (k keepRetries) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, a := range p.Attributes {
		if a.Key == AttrRetry && a.Value.Type() == attribute.BOOL && a.Value.AsBool() {
			return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
				Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
		}
	}
	return k.base.ShouldSample(p)
}

func (k keepRetries) Description() string { return "KeepRetries{" + k.base.Description() + "}" }
