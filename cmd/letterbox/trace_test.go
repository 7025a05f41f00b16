package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/letterbox -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

// TestTraceTree renders a message whose webhook failed once and was
// delivered on its retry 30 seconds later, with its forward action
// delivered at once: the tree's shape, offsets, durations and details.
func TestTraceTree(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	const tr = "4bf92f3577b34da6a3ce929d0e0e4736"
	id := "01JDQ7ZK3M8X9V2N4B6C8D0E1F"
	sp := func(span, parent, name string, start, end float64, attrs map[string]any) telemetry.Span {
		if attrs == nil {
			attrs = map[string]any{}
		}
		attrs[telemetry.AttrMessageID] = id
		return telemetry.Span{TraceID: tr, SpanID: span, ParentID: parent, Name: name, Start: at(start), End: at(end), Attrs: attrs}
	}
	spans := []telemetry.Span{
		sp("a1", "", "smtp.transaction", 0, 41.25, map[string]any{telemetry.AttrSMTPCode: 250, "letterbox.smtp.result": "stored"}),
		sp("a2", "a1", "smtp.mail", 0.1, 2.1, map[string]any{telemetry.AttrSMTPCode: 250}),
		sp("a3", "a1", "smtp.rcpt", 2.3, 2.6, map[string]any{telemetry.AttrSMTPCode: 250}),
		sp("a4", "a1", "smtp.data", 3, 41, map[string]any{telemetry.AttrSMTPCode: 250}),
		sp("a5", "a4", "store.put_raw", 5, 40.5, nil),
		sp("b1", "a5", "storage.event", 40.5, 120, nil),
		sp("b2", "b1", "ingest", 120, 180, map[string]any{telemetry.AttrJobs: 2}),
		sp("b3", "b2", "ingest.parse", 121, 160, nil),
		sp("b4", "b3", "mailauth.check", 122, 158, nil),
		sp("b5", "b4", "dns.query", 123, 130, map[string]any{"dns.question.name": "remote.test.", "dns.question.type": "TXT"}),
		sp("b6", "b2", "ingest.route", 160, 179, nil),
		sp("c1", "b6", "delivery.job", 161, 178, map[string]any{telemetry.AttrJobID: id + ".support.0"}),
		sp("c2", "b6", "delivery.job", 161.5, 178, map[string]any{telemetry.AttrJobID: id + ".support.1"}),
		sp("d1", "c1", "delivery.attempt", 200, 5200, map[string]any{telemetry.AttrAttempt: 1, telemetry.AttrOutcome: "retry"}),
		sp("d2", "d1", "delivery.webhook", 201, 5199, map[string]any{"server.address": "hooks.example.test", telemetry.AttrStatus: 503}),
		sp("d3", "c1", "delivery.attempt", 35200, 35260, map[string]any{telemetry.AttrAttempt: 2, telemetry.AttrOutcome: "delivered"}),
		sp("d4", "d3", "delivery.webhook", 35201, 35259, map[string]any{"server.address": "hooks.example.test", telemetry.AttrStatus: 200}),
		sp("e1", "c2", "delivery.attempt", 201, 950, map[string]any{telemetry.AttrAttempt: 1, telemetry.AttrOutcome: "delivered"}),
		sp("e2", "e1", "delivery.forward", 202, 949, nil),
	}
	spans[13].Links = []telemetry.Link{{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "f1"}}
	spans[14].Status, spans[14].Message = "error", "webhook: receiver answered 503 Service Unavailable"
	spans[13].Status, spans[13].Message = "error", "webhook: receiver answered 503 Service Unavailable"
	retry := at(35200)
	recs := []delivery.Record{{
		Job:    delivery.Job{ID: id + ".support.0", MessageID: id, Route: "support", Kind: "webhook"},
		Status: delivery.StatusDelivered,
		Attempts: []delivery.Attempt{
			{At: at(200), Number: 1, Status: 503, Error: "webhook: receiver answered 503 Service Unavailable", LatencyMS: 5000, Outcome: "retry", RetryAt: &retry},
			{At: at(35200), Number: 2, Status: 200, LatencyMS: 60, Outcome: delivery.StatusDelivered},
		},
	}}
	// Shuffled input: the tree orders by parent and start time.
	shuffled := append([]telemetry.Span{}, spans[10:]...)
	shuffled = append(shuffled, spans[:10]...)
	var buf bytes.Buffer
	printTrace(&buf, id, &store.Object{Key: store.RawKey(id), Size: 1234, ModTime: at(40.5)}, shuffled, recs, "x/traces.jsonl")
	golden(t, "trace.golden", buf.Bytes())

	buf.Reset()
	printTrace(&buf, id, &store.Object{Key: store.RawKey(id), Size: 1234, ModTime: at(40.5)}, nil, recs, ".letterbox/traces.jsonl")
	golden(t, "trace-nospans.golden", buf.Bytes())
}
