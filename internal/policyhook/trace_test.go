package policyhook_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/webhook"
)

// A question asked during a traced SMTP command carries its traceparent.
func TestRequestCarriesTraceparent(t *testing.T) {
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "smtp.rcpt")
	defer span.End()
	c := policyhook.New(egress.Policy{AllowLoopback: true}, nil)
	req, err := c.NewRequest(ctx, policyhook.Target{URL: "http://127.0.0.1:1/hook", Secrets: []webhook.Secret{secret}}, "id", time.Now(), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; req.Header.Get("traceparent") != want {
		t.Fatalf("traceparent %q, want %q", req.Header.Get("traceparent"), want)
	}
	req, _ = c.NewRequest(context.Background(), policyhook.Target{URL: "http://127.0.0.1:1/hook", Secrets: []webhook.Secret{secret}}, "id", time.Now(), []byte(`{}`))
	if h := req.Header.Get("traceparent"); h != "" {
		t.Fatalf("untraced question has traceparent %q", h)
	}
}
