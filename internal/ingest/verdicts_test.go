package ingest_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

func verdictHandler(t *testing.T) (*ingest.Handler, store.Store, *sent, *bytes.Buffer) {
	t.Helper()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, err := routing.Parse("routes.yaml", []byte("domains: [example.test]\nroutes:\n  - name: all\n    catch_all: true\n    actions:\n      - store: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	q := &sent{}
	logs := &bytes.Buffer{}
	h := &ingest.Handler{Store: st, Routes: routing.Static(cfg), Queue: q, Journal: delivery.Journal{Store: st},
		Log: slog.New(slog.NewJSONHandler(logs, nil))}
	return h, st, q, logs
}

const plain = "From: a@example.org\r\nTo: x@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

// TestSESVerdicts: a message SES receiving wrote (no envelope) gets SES's
// verdict header fields as spam and virus; the first field is SES's own.
func TestSESVerdicts(t *testing.T) {
	for _, tt := range []struct {
		name, head        string
		spamAction, virus string
		spamNil, virusNil bool
	}{
		{"pass", "X-SES-Spam-Verdict: PASS\r\nX-SES-Virus-Verdict: PASS\r\n", "no action", "clean", false, false},
		{"fail", "X-SES-Spam-Verdict: FAIL\r\nX-SES-Virus-Verdict: FAIL\r\n", "reject", "infected", false, false},
		{"gray and processing failed", "X-SES-Spam-Verdict: GRAY\r\nX-SES-Virus-Verdict: PROCESSING_FAILED\r\n", "add header", "error", false, false},
		{"SES's field comes first", "X-SES-Spam-Verdict: FAIL\r\nX-SES-Virus-Verdict: PASS\r\nX-SES-Spam-Verdict: PASS\r\n", "reject", "clean", false, false},
		{"not scanned", "", "", "", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, st, _, _ := verdictHandler(t)
			ctx := context.Background()
			key := store.RawPrefix + "ses-message-id-1"
			if _, err := st.Put(ctx, key, strings.NewReader(tt.head+plain), nil); err != nil {
				t.Fatal(err)
			}
			m, err := h.Parse(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if (m.Spam == nil) != tt.spamNil || (m.Virus == nil) != tt.virusNil {
				t.Fatalf("spam %+v virus %+v", m.Spam, m.Virus)
			}
			if m.Spam != nil && (m.Spam.Action != tt.spamAction || m.Spam.Scanner != "ses") {
				t.Errorf("spam %+v, want action %q", m.Spam, tt.spamAction)
			}
			if m.Virus != nil && (m.Virus.Result != tt.virus || m.Virus.Scanner != "ses") {
				t.Errorf("virus %+v, want %q", m.Virus, tt.virus)
			}
		})
	}
	t.Run("ignored on gateway mail", func(t *testing.T) {
		h, st, _, _ := verdictHandler(t)
		ctx := context.Background()
		id := "01JKSES0000000000000000000"
		env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"x@example.test"}, Source: "gateway", ReceivedAt: time.Now().UTC()}
		if _, err := store.PutRaw(ctx, st, id, env, strings.NewReader("X-SES-Spam-Verdict: PASS\r\n"+plain)); err != nil {
			t.Fatal(err)
		}
		m, err := h.Parse(ctx, store.RawKey(id))
		if err != nil {
			t.Fatal(err)
		}
		if m.Spam != nil {
			t.Fatalf("a sender's X-SES-Spam-Verdict became %+v", m.Spam)
		}
	})
}

// TestGatewayVerdicts: the gateway's verdicts reach the JSON, and a
// message it quarantined or refused is not routed.
func TestGatewayVerdicts(t *testing.T) {
	ctx := context.Background()
	put := func(t *testing.T, st store.Store, id string, v store.Verdicts) {
		t.Helper()
		if err := store.PutJSON(ctx, st, store.VerdictsKey(id), v); err != nil {
			t.Fatal(err)
		}
		env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"x@example.test"}, Source: "gateway", ReceivedAt: time.Now().UTC()}
		if _, err := store.PutRawScanned(ctx, st, id, env, strings.NewReader(plain)); err != nil {
			t.Fatal(err)
		}
	}
	spam := &message.Spam{Score: 16, RequiredScore: 15, Action: "reject", Scanner: "rspamd", Symbols: []message.SpamSymbol{{Name: "GTUBE", Score: 0}}}
	t.Run("accepted: verdicts in the JSON and routed", func(t *testing.T) {
		h, st, q, _ := verdictHandler(t)
		id := "01JKVERD000000000000000001"
		put(t, st, id, store.Verdicts{Spam: spam, Virus: &message.Virus{Result: "clean", Scanner: "clamd"}, Disposition: store.DispositionAccept})
		if err := h.Process(ctx, store.RawKey(id)); err != nil {
			t.Fatal(err)
		}
		if len(q.jobs) != 1 {
			t.Fatalf("%d jobs", len(q.jobs))
		}
		m := q.jobs[0].Message
		if m.Spam == nil || m.Spam.Action != "reject" || m.Spam.Symbols[0].Name != "GTUBE" || m.Virus == nil || m.Virus.Result != "clean" {
			t.Fatalf("spam %+v virus %+v", m.Spam, m.Virus)
		}
	})
	t.Run("quarantined", func(t *testing.T) {
		h, st, q, logs := verdictHandler(t)
		id := "01JKVERD000000000000000002"
		put(t, st, id, store.Verdicts{Spam: spam, Disposition: store.DispositionQuarantine, Rule: "policy.spam.quarantine_at"})
		if err := h.Process(ctx, store.RawKey(id)); err != nil {
			t.Fatal(err)
		}
		if len(q.jobs) != 0 || !strings.Contains(logs.String(), `"rule":"policy.spam.quarantine_at"`) {
			t.Fatalf("%d jobs; log %s", len(q.jobs), logs)
		}
	})
	t.Run("refused", func(t *testing.T) {
		h, st, q, logs := verdictHandler(t)
		id := "01JKVERD000000000000000003"
		put(t, st, id, store.Verdicts{Spam: spam, Disposition: store.DispositionReject, Rule: "policy.spam.reject_at"})
		if err := h.Process(ctx, store.RawKey(id)); err != nil {
			t.Fatal(err)
		}
		if len(q.jobs) != 0 || !strings.Contains(logs.String(), `"disposition":"reject"`) {
			t.Fatalf("%d jobs; log %s", len(q.jobs), logs)
		}
	})
	t.Run("verdicts object missing is a permanent error", func(t *testing.T) {
		h, st, _, _ := verdictHandler(t)
		id := "01JKVERD000000000000000004"
		env := message.Envelope{RcptTo: []string{"x@example.test"}, Source: "gateway"}
		if _, err := store.PutRawScanned(ctx, st, id, env, strings.NewReader(plain)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Parse(ctx, store.RawKey(id)); err == nil || !strings.Contains(err.Error(), "verdicts/"+id+".json is missing") {
			t.Fatalf("err %v", err)
		}
	})
}
