package smtpgw

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// The global tracer provider can be set once per process: the tests that
// look at spans share this recorder.
var (
	recorderOnce sync.Once
	recorder     *tracetest.SpanRecorder
)

func spanRecorder() *tracetest.SpanRecorder {
	recorderOnce.Do(func() {
		recorder = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)))
	})
	return recorder
}

// failing is a store whose raw writes fail temporarily while fail is set.
type failing struct {
	store.Store
	fail atomic.Bool
}

func (f *failing) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	if f.fail.Load() {
		io.Copy(io.Discard, body)
		return store.Object{}, fault.Temporary(errors.New("store down"))
	}
	return f.Store.Put(ctx, key, body, meta)
}

// TestTransactionSpans: a transaction is one trace rooted at
// smtp.transaction (linked to its session), with a span per command and
// the store write under DATA; the stored object's traceparent names the
// write; a refused recipient is an answer, not an error; a failed store
// write marks DATA and the transaction as errors.
func TestTransactionSpans(t *testing.T) {
	rec := spanRecorder()
	fs, err := filestore.New(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	st := &failing{Store: fs}
	h := startGatewayWith(t, Config{}, st, testRoutes)
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 250, "")
	c.cmd("RCPT TO:<nobody@other.example>", 550, "5.1.1")
	c.cmd("RCPT TO:<a@example.test>", 250, "")
	c.cmd("DATA", 354, "")
	c.send(testMessage("traced") + ".\r\n")
	text := c.expect(250, "2.0.0")
	id := text[len(text)-26:]

	st.fail.Store(true)
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("lost") + ".\r\n")
	c.expect(451, "4.3.0")
	c.cmd("QUIT", 221, "")
	h.waitLog("session")

	var spans []sdktrace.ReadOnlySpan
	deadline := time.Now().Add(safety)
	for {
		spans = rec.Ended()
		n := 0
		for _, s := range spans {
			if s.Name() == "smtp.transaction" || s.Name() == "smtp.session" {
				n++
			}
		}
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the session span ends after its log line
	}
	attr := func(s sdktrace.ReadOnlySpan, key string) any {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value.AsInterface()
			}
		}
		return nil
	}
	var txs []sdktrace.ReadOnlySpan
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID().String()] = s
		if s.Name() == "smtp.transaction" {
			txs = append(txs, s)
		}
	}
	var ok, failed sdktrace.ReadOnlySpan
	for _, s := range txs {
		switch attr(s, telemetry.AttrSMTPCode) {
		case int64(250):
			if attr(s, telemetry.AttrMessageID) == id {
				ok = s
			}
		case int64(451):
			failed = s
		}
	}
	if ok == nil || failed == nil {
		t.Fatalf("transactions: %d spans, no 250 of %s or no 451", len(txs), id)
	}
	if len(ok.Links()) != 1 || byID[ok.Links()[0].SpanContext.SpanID().String()].Name() != "smtp.session" {
		t.Errorf("transaction links %v, want its session", ok.Links())
	}
	if ok.Status().Code == codes.Error || failed.Status().Code != codes.Error {
		t.Errorf("status: stored %v, store failure %v", ok.Status(), failed.Status())
	}
	// The children of the stored transaction.
	kids := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.Parent().SpanID() == ok.SpanContext().SpanID() {
			kids[s.Name()] = append(kids[s.Name()], s)
		}
	}
	if len(kids["smtp.mail"]) != 1 || len(kids["smtp.rcpt"]) != 2 || len(kids["smtp.data"]) != 1 {
		t.Fatalf("children of smtp.transaction: %v", kids)
	}
	for _, r := range kids["smtp.rcpt"] {
		if r.Status().Code == codes.Error {
			t.Errorf("a refused recipient (%v) is an error", attr(r, telemetry.AttrSMTPCode))
		}
	}
	var put sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "store.put_raw" && s.Parent().SpanID() == kids["smtp.data"][0].SpanContext().SpanID() {
			put = s
		}
	}
	if put == nil {
		t.Fatal("no store.put_raw under smtp.data")
	}
	_, obj, err := fs.Get(context.Background(), store.RawKey(id))
	if err != nil {
		t.Fatal(err)
	}
	if want := "00-" + put.SpanContext().TraceID().String() + "-" + put.SpanContext().SpanID().String() + "-01"; obj.Meta[store.MetaTraceparent] != want {
		t.Errorf("raw object's traceparent %q, want %q", obj.Meta[store.MetaTraceparent], want)
	}
	// The transaction's log line carries its trace id.
	h.waitLog("transaction", "message_id", id, "trace_id", ok.SpanContext().TraceID().String())
}
