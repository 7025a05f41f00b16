package smtpgw

import (
	"context"
	"errors"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// tracer is OpenTelemetry's global tracer: a no-op until an entry point
// calls telemetry.Setup.
var tracer = otel.Tracer("github.com/letterboxmail/letterbox/internal/smtpgw")

// Spans (docs/observability.md):
//
//	smtp.session              one per connection, its own trace
//	smtp.transaction          MAIL FROM to the reply to DATA: the root of the message's trace, linked to its session
//	  smtp.mail               MAIL FROM and its policy (DNSBL, SPF)
//	  smtp.rcpt               each RCPT TO
//	  smtp.data               receiving the data and storing it
//	    (scanners)            content scanners' spans go here, children of smtp.data
//	    store.put_raw         the durable write; its traceparent goes into the raw object's metadata

// startSpan starts the connection's smtp.session span.
func (c *conn) startSpan() {
	if !telemetry.On() {
		return
	}
	c.ctx, c.span = tracer.Start(context.Background(), "smtp.session", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("client.address", c.remote.Addr().String()), attribute.String("letterbox.smtp.listener", c.listener),
			attribute.String("letterbox.session_id", c.id)))
}

func (c *conn) endSpan() {
	if c.span == nil {
		return
	}
	c.mu.Lock()
	c.span.SetAttributes(attribute.Int("letterbox.smtp.transactions", c.txs), attribute.Int("letterbox.smtp.stored", c.stored),
		attribute.Int(telemetry.AttrSMTPCode, c.lastCode))
	c.mu.Unlock()
	c.span.End()
}

// startTxSpan starts the transaction's span, the root of the message's
// trace: a new trace linked to the session's, so that one connection's
// messages are one trace each.
func (s *session) startTxSpan(tx *transaction) {
	if !telemetry.On() {
		return
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(telemetry.MessageID(tx.id))}
	if s.c.span != nil {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: s.c.span.SpanContext()}))
	}
	tx.ctx, tx.span = tracer.Start(context.Background(), "smtp.transaction", opts...)
	tx.log = tx.log.With(telemetry.LogAttrs(tx.ctx)...)
}

// step starts the span of one command of tx.
// Tracing off, it returns ctx and a no-op span, at no cost.
func (tx *transaction) step(ctx context.Context, name string) (context.Context, trace.Span) {
	if tx.span == nil {
		return ctx, noSpan
	}
	ctx = trace.ContextWithSpan(ctx, tx.span)
	return tracer.Start(ctx, name, trace.WithAttributes(telemetry.MessageID(tx.id)))
}

// noSpan is a non-recording span.
var noSpan = trace.SpanFromContext(context.Background())

// endStep ends a command's span with its reply code; a temporary failure
// of ours (4xx other than policy) marks it as an error.
func endStep(span trace.Span, reply error) {
	if span.IsRecording() {
		code := 250
		var se *smtp.SMTPError
		if errors.As(reply, &se) {
			code = se.Code
		} else if reply != nil {
			code = 0
		}
		span.SetAttributes(attribute.Int(telemetry.AttrSMTPCode, code))
		if code == 451 || code == 421 {
			span.SetStatus(codes.Error, reply.Error())
		}
	}
	span.End()
}

// replyErr returns e as an error, nil when e is nil (not a nil
// *smtp.SMTPError inside a non-nil error).
func replyErr(e *smtp.SMTPError) error {
	if e == nil {
		return nil
	}
	return e
}

// endTxSpan ends the transaction's span.
func (tx *transaction) endTxSpan(code int, result string) {
	if tx.span == nil {
		return
	}
	tx.span.SetAttributes(attribute.Int(telemetry.AttrSMTPCode, code), attribute.String("letterbox.smtp.result", result),
		attribute.Int(telemetry.AttrRcpts, len(tx.rcpts)))
	if result == "store_failed" || code == 421 {
		tx.span.SetStatus(codes.Error, result)
	}
	tx.span.End()
}

// observe records v in h with the trace id of ctx's span as an exemplar
// (OpenMetrics), when the span is sampled.
func observe(ctx context.Context, h prometheus.Observer, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	h.Observe(v)
}
