//go:build awsstack

package awsstack

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// TestTraceCrossesTheStack deploys the stack with OtlpEndpoint pointing
// at an OTLP/HTTP receiver started here and sends one message through the
// gateway: its trace crosses the gateway (letterbox-smtpgw), the raw
// object's S3 metadata and the raw queue into ingest under the emulator
// (letterbox-ingest), the delivery queue's traceparent attribute into
// deliver (letterbox-deliver), and the webhook request carries it on.
func TestTraceCrossesTheStack(t *testing.T) {
	otlp := testenv.StartOTLP(t)
	x := startE2E(t, map[string]string{"OtlpEndpoint": otlp.URL}, Options{})
	swaks := testenv.Require(t, "swaks", "apt-get install swaks")
	out, err := exec.Command(swaks, "--server", x.st.Gateway.SMTPAddr, "--from", "alice@sender.test", "--to", "hook@example.test",
		"--header", "Subject: traced", "--body", "Follow me.").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<-  250 ") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, 2*time.Minute, "the webhook", func() bool { return len(x.recv.Requests()) >= 1 })

	// The functions export at the end of each invocation; the gateway in
	// batches (1 s).
	var byName map[string][]testenv.Span
	var byID map[string]testenv.Span
	waitFor(t, time.Minute, "the spans of the three services", func() bool {
		byName, byID = map[string][]testenv.Span{}, map[string]testenv.Span{}
		for _, s := range otlp.Spans() {
			byName[s.Name] = append(byName[s.Name], s)
			byID[s.SpanID] = s
		}
		return len(byName["store.put_raw"]) > 0 && len(byName["delivery.job"]) > 0 && len(byName["delivery.webhook"]) > 0
	})
	put, job, hook := byName["store.put_raw"][0], byName["delivery.job"][0], byName["delivery.webhook"][0]
	if put.Service != "letterbox-smtpgw" || job.Service != "letterbox-ingest" || hook.Service != "letterbox-deliver" {
		t.Fatalf("services: put_raw %q, delivery.job %q, delivery.webhook %q", put.Service, job.Service, hook.Service)
	}
	id := put.Str("letterbox.message_id")
	// The chain of parents across the three processes.
	chain := []string{"delivery.webhook", "delivery.attempt", "delivery.job", "ingest.route", "ingest", "storage.event", "store.put_raw", "smtp.data", "smtp.transaction"}
	s := hook
	for i, name := range chain {
		if s.Name != name || s.TraceID != put.TraceID || s.Str("letterbox.message_id") != id {
			t.Fatalf("step %d of the chain: %s (trace %s, message %q), want %s in trace %s of message %s",
				i, s.Name, s.TraceID, s.Str("letterbox.message_id"), name, put.TraceID, id)
		}
		if i+1 < len(chain) {
			p, ok := byID[s.ParentID]
			if !ok {
				t.Fatalf("%s's parent %s was not received", s.Name, s.ParentID)
			}
			s = p
		}
	}
	// The webhook request carried the trace, naming the webhook span.
	r := x.recv.Requests()[0]
	if want := "00-" + put.TraceID + "-" + hook.SpanID + "-01"; r.Traceparent != want {
		t.Fatalf("webhook traceparent %q, want %q", r.Traceparent, want)
	}
}
