package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Ingest continues the trace the raw object's metadata names: every job
// it sends carries a traceparent of that trace; and it writes one EMF
// line per message (messages ingested, parse warnings, jobs enqueued).
func TestIngestContinuesTheGatewaysTrace(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := routing.Parse("routes.yaml", []byte(`domains: [example.test]
routes:
  - name: all
    catch_all: true
    actions:
      - store: true
      - drop: true
`))
	if err != nil {
		t.Fatal(err)
	}
	q := &sent{}
	var lines bytes.Buffer
	h := &ingest.Handler{Store: st, Routes: routing.Static(cfg), Queue: q, Journal: delivery.Journal{Store: st},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: &ingest.Metrics{EMF: emf.New(&lines, "letterbox")}}
	// The gateway's write, traced.
	tp := sdktrace.NewTracerProvider()
	wctx, span := tp.Tracer("test").Start(ctx, "smtp.data")
	id := "01JKTRACE00000000000000000"
	env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"x@example.test"}, ReceivedAt: time.Now().UTC()}
	if _, err := store.PutRaw(wctx, st, id, env, strings.NewReader("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	span.End()
	trace := span.SpanContext().TraceID().String()

	rec := store.EventRecord("bucket", store.Object{Key: store.RawKey(id), ModTime: time.Now().Add(-time.Second)})
	if err := h.HandleS3(ctx, events.S3Event{Records: []events.S3EventRecord{rec}}); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs) != 2 {
		t.Fatalf("%d jobs, want 2", len(q.jobs))
	}
	for _, j := range q.jobs {
		if p := strings.Split(j.Traceparent, "-"); len(p) != 4 || p[1] != trace {
			t.Fatalf("job %s traceparent %q, want one of trace %s", j.ID, j.Traceparent, trace)
		}
	}
	var line map[string]any
	if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
		t.Fatalf("EMF line %q: %v", lines.String(), err)
	}
	if line["MessagesIngested"] != 1.0 || line["JobsEnqueued"] != 2.0 || line["ParseWarnings"] != 0.0 || line["Function"] != "ingest" ||
		line["message_id"] != id || line["trace_id"] != trace {
		t.Fatalf("EMF line %s", lines.String())
	}
}
