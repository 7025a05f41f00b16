package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/webhook"
)

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
	otlp := testenv.StartOTLP(t)
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
	dev.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
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
	var spans []testenv.Span
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans = otlp.Spans()
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

	byName := map[string][]testenv.Span{}
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		byID[s.SpanID] = s
	}
	tx := byName["smtp.transaction"][0]
	traceID := tx.TraceID
	if tx.Service != "letterbox-dev" || tx.Str("letterbox.message_id") != id {
		t.Fatalf("smtp.transaction: service %q, message id %q; want letterbox-dev, %s", tx.Service, tx.Str("letterbox.message_id"), id)
	}
	parentName := func(s testenv.Span) string {
		p, ok := byID[s.ParentID]
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
			if s.TraceID != traceID {
				t.Errorf("%s is in trace %s, not the message's %s", child, s.TraceID, traceID)
			}
			if got := parentName(s); got != parent {
				t.Errorf("%s's parent is %q, want %s", child, got, parent)
			}
			if s.Str("letterbox.message_id") != id {
				t.Errorf("%s has no letterbox.message_id %s", child, id)
			}
		}
	}
	// The session is a trace of its own, linked from the transaction.
	if len(tx.Links) != 1 {
		t.Fatalf("smtp.transaction has %d links, want its session's", len(tx.Links))
	}
	if sess, ok := byID[tx.Links[0]]; !ok || sess.Name != "smtp.session" || sess.TraceID == tx.TraceID || sess.Int("letterbox.smtp.stored") != 1 {
		t.Errorf("smtp.transaction's link goes to %q (stored %d), want its smtp.session in a trace of its own", sess.Name, sess.Int("letterbox.smtp.stored"))
	}
	// Each attempt links to its batch, and the batch back to it.
	for _, a := range byName["delivery.attempt"] {
		if len(a.Links) != 1 {
			t.Fatalf("attempt has %d links, want its batch", len(a.Links))
		}
		b, ok := byID[a.Links[0]]
		if !ok || b.Name != "delivery.batch" || b.TraceID == a.TraceID {
			t.Fatalf("attempt's link goes to %q", b.Name)
		}
		if !slices.Contains(b.Links, a.SpanID) {
			t.Errorf("batch %s has no link back to its attempt", b.SpanID)
		}
	}
	// The first attempt failed and is an error; the second is a retry.
	attempts := map[int64]testenv.Span{}
	for _, a := range byName["delivery.attempt"] {
		attempts[a.Int("letterbox.attempt")] = a
	}
	if a := attempts[1]; a.Span == nil || a.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || a.Str("letterbox.outcome") != "retry" {
		t.Errorf("first attempt: %v", a.Span)
	}
	if a := attempts[2]; a.Span == nil || !a.Bool("letterbox.retry") || a.Str("letterbox.outcome") != "delivered" {
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
