package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/letterboxmail/letterbox/webhook"
)

// otlpReceiver is an OTLP/HTTP endpoint (POST /v1/traces, binary
// protobuf) that keeps every span it is sent, with its service name.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

type otlpSpan struct {
	service string
	*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		var ex coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &ex)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range ex.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, otlpSpan{service, s})
				}
			}
		}
		r.mu.Unlock()
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) snapshot() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]otlpSpan(nil), r.spans...)
}

func findAttr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, a := range s.GetAttributes() {
		if a.Key == key {
			return a.Value
		}
	}
	return nil
}

func strAttr(s *tracepb.Span, key string) string { return findAttr(s, key).GetStringValue() }
func intAttr(s *tracepb.Span, key string) int64  { return findAttr(s, key).GetIntValue() }
func boolAttr(s *tracepb.Span, key string) bool  { return findAttr(s, key).GetBoolValue() }

// syncBuffer is a bytes.Buffer a child process writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the port, with a deadline
	}
}

// TestTraceOfOneMessage runs `letterbox dev` exporting to an OTLP/HTTP
// receiver started here, sends one message whose webhook fails once, and
// checks its trace: the gateway's, ingest's and delivery's spans are in
// one trace with the right parents, each attempt is linked to its batch,
// the retry is marked, every webhook request carried a traceparent of the
// trace naming its attempt's webhook span, log lines carry the trace id,
// and `letterbox trace` prints the tree from the dev span file.
func TestTraceOfOneMessage(t *testing.T) {
	otlp := newOTLPReceiver(t)
	type hook struct{ traceparent, id string }
	var mu sync.Mutex
	var hooks []hook
	delivered := make(chan struct{})
	v, _ := webhook.NewVerifier(secret)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wid, _, err := v.ReadEvent(r)
		if err != nil {
			w.WriteHeader(401)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		hooks = append(hooks, hook{r.Header.Get("traceparent"), wid})
		if len(hooks) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		if len(hooks) == 2 {
			close(delivered)
		}
	}))
	defer recv.Close()

	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(`
domains: [example.test]
routes:
  - name: support
    match: {recipient: "support@example.test"}
    actions:
      - webhook: {url: "`+recv.URL+`/support", secret: "`+secret+`"}
        retry: {attempts: 3, initial: 200ms, max: 1s}
`), 0o644)
	storeDir := filepath.Join(dir, "store")
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	dev := exec.Command(bin, "dev", "--store", "file://"+storeDir, "--routes", routes, "--smtp", smtpAddr, "--http", httpAddr, "--no-auth")
	dev.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	var devErr syncBuffer
	dev.Stderr = &devErr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { dev.Process.Signal(os.Interrupt); dev.Wait() }()
	waitListening(t, smtpAddr)

	out, stderr, code := run(t, "send", "--smtp", smtpAddr, "--to", "support@example.test", "--subject", "trace me")
	m := regexp.MustCompile(`queued as ([0-9A-Z]{26})`).FindStringSubmatch(out + stderr)
	if code != 0 || m == nil {
		t.Fatalf("send: %d\n%s%s", code, out, stderr)
	}
	id := m[1]
	select {
	case <-delivered:
	case <-time.After(30 * time.Second):
		t.Fatalf("webhook not delivered on its retry; dev said:\n%s", devErr.String())
	}

	// The spans arrive in batches; wait for the last one (the second
	// attempt's webhook span ends before its attempt span).
	want := []string{"smtp.session", "smtp.transaction", "smtp.mail", "smtp.rcpt", "smtp.data", "store.put_raw", "storage.event",
		"ingest", "ingest.parse", "ingest.route", "delivery.job", "delivery.batch", "delivery.attempt", "delivery.webhook"}
	var spans []otlpSpan
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans = otlp.snapshot()
		n := map[string]int{}
		for _, s := range spans {
			n[s.Name]++
		}
		missing := []string{}
		for _, w := range want {
			if n[w] == 0 {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 && n["delivery.attempt"] >= 2 && n["delivery.webhook"] >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans missing from the OTLP receiver: %v (have %v)", missing, n)
		}
		time.Sleep(50 * time.Millisecond) // polling the receiver, with a deadline
	}

	byName := map[string][]otlpSpan{}
	byID := map[string]otlpSpan{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		byID[hex.EncodeToString(s.SpanId)] = s
	}
	tx := byName["smtp.transaction"][0]
	traceID := hex.EncodeToString(tx.TraceId)
	if tx.service != "letterbox-dev" || strAttr(tx.Span, "letterbox.message_id") != id {
		t.Fatalf("smtp.transaction: service %q, message id %q; want letterbox-dev, %s", tx.service, strAttr(tx.Span, "letterbox.message_id"), id)
	}
	parentName := func(s otlpSpan) string {
		p, ok := byID[hex.EncodeToString(s.ParentSpanId)]
		if !ok {
			return ""
		}
		return p.Name
	}
	for child, parent := range map[string]string{
		"smtp.mail": "smtp.transaction", "smtp.rcpt": "smtp.transaction", "smtp.data": "smtp.transaction",
		"store.put_raw": "smtp.data", "storage.event": "store.put_raw", "ingest": "storage.event",
		"ingest.parse": "ingest", "ingest.route": "ingest", "delivery.job": "ingest.route",
		"delivery.attempt": "delivery.job", "delivery.webhook": "delivery.attempt",
	} {
		for _, s := range byName[child] {
			if hex.EncodeToString(s.TraceId) != traceID {
				t.Errorf("%s is in trace %x, not the message's %s", child, s.TraceId, traceID)
			}
			if got := parentName(s); got != parent {
				t.Errorf("%s's parent is %q, want %s", child, got, parent)
			}
			if strAttr(s.Span, "letterbox.message_id") != id {
				t.Errorf("%s has no letterbox.message_id %s", child, id)
			}
		}
	}
	// The session is a trace of its own, linked from the transaction.
	if len(tx.Links) != 1 {
		t.Fatalf("smtp.transaction has %d links, want its session's", len(tx.Links))
	}
	if sess, ok := byID[hex.EncodeToString(tx.Links[0].SpanId)]; !ok || sess.Name != "smtp.session" || bytes.Equal(sess.TraceId, tx.TraceId) ||
		intAttr(sess.Span, "letterbox.smtp.stored") != 1 {
		t.Errorf("smtp.transaction's link goes to %q (stored %d), want its smtp.session in a trace of its own", sess.Name, intAttr(sess.Span, "letterbox.smtp.stored"))
	}
	// Each attempt links to its batch, and the batch back to it.
	for _, a := range byName["delivery.attempt"] {
		if len(a.Links) != 1 {
			t.Fatalf("attempt has %d links, want its batch", len(a.Links))
		}
		b, ok := byID[hex.EncodeToString(a.Links[0].SpanId)]
		if !ok || b.Name != "delivery.batch" || bytes.Equal(b.TraceId, a.TraceId) {
			t.Fatalf("attempt's link goes to %q", b.Name)
		}
		back := false
		for _, l := range b.Links {
			back = back || bytes.Equal(l.SpanId, a.SpanId)
		}
		if !back {
			t.Errorf("batch %x has no link back to its attempt", b.SpanId)
		}
	}
	// The first attempt failed and is an error; the second is a retry.
	attempts := map[int64]otlpSpan{}
	for _, a := range byName["delivery.attempt"] {
		attempts[intAttr(a.Span, "letterbox.attempt")] = a
	}
	if a := attempts[1]; a.Span == nil || a.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || strAttr(a.Span, "letterbox.outcome") != "retry" {
		t.Errorf("first attempt: %v", a.Span)
	}
	if a := attempts[2]; a.Span == nil || !boolAttr(a.Span, "letterbox.retry") || strAttr(a.Span, "letterbox.outcome") != "delivered" {
		t.Errorf("second attempt: %v", a.Span)
	}
	// Every webhook request carried the trace, naming its webhook span.
	mu.Lock()
	got := append([]hook(nil), hooks...)
	mu.Unlock()
	for i, h := range got {
		p := strings.Split(h.traceparent, "-")
		if len(p) != 4 || p[0] != "00" || p[1] != traceID || p[3] != "01" {
			t.Fatalf("request %d: traceparent %q, want one of trace %s, sampled", i+1, h.traceparent, traceID)
		}
		if s, ok := byID[p[2]]; !ok || s.Name != "delivery.webhook" {
			t.Errorf("request %d: traceparent names span %s, not a delivery.webhook span", i+1, p[2])
		}
	}
	// Log lines carry the trace id.
	if !strings.Contains(devErr.String(), "trace_id="+traceID) {
		t.Errorf("no log line with trace_id=%s:\n%s", traceID, devErr.String())
	}
	// letterbox trace prints the tree from the dev span file.
	var tree string
	for deadline := time.Now().Add(10 * time.Second); ; {
		tree, stderr, code = run(t, "trace", "--store", "file://"+storeDir, id)
		if code == 0 && strings.Contains(tree, "attempt=2 outcome=delivered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("letterbox trace: %d %s\n%s", code, stderr, tree)
		}
		time.Sleep(50 * time.Millisecond) // the span file is written in batches
	}
	for _, w := range []string{"trace " + traceID, "smtp.transaction", "└─ store.put_raw", "delivery.webhook  host=127.0.0.1 http=503 ERROR", "status delivered, 2 attempt(s)"} {
		if !strings.Contains(tree, w) {
			t.Errorf("letterbox trace lacks %q:\n%s", w, tree)
		}
	}
}
