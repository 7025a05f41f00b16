package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a real HTTP webhook receiver that verifies signatures and
// answers from a script.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	ids    []string
	script func(n int, w http.ResponseWriter) // n counts requests from 1
	got    chan *webhook.Event
}

func newReceiver(t *testing.T, script func(n int, w http.ResponseWriter)) *receiver {
	r := &receiver{t: t, script: script, got: make(chan *webhook.Event, 100)}
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, ev, err := v.ReadEvent(req)
		if err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		r.ids = append(r.ids, id)
		n := len(r.ids)
		r.mu.Unlock()
		r.script(n, w)
		r.got <- ev
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

type harness struct {
	h       *delivery.Handler
	q       *localqueue.Queue
	journal delivery.Journal
}

func newHarness(t *testing.T, routesYAML string) *harness {
	t.Helper()
	cfg, err := routing.Parse("routes.yaml", []byte(routesYAML))
	if err != nil {
		t.Fatal(err)
	}
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q, err := localqueue.Open(context.Background(), t.TempDir(), "deliveries")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	// As on the stack (the delivery queue's VisibilityTimeout is 721s), a
	// job stays hidden for longer than any attempt may last, so a slow
	// attempt is never received a second time while it runs.
	q.Visibility = 2 * routing.DefaultDeliverTimeout
	j := delivery.Journal{Store: st}
	h := &delivery.Handler{Store: st, Routes: routing.Static(cfg), Queue: localqueue.Deliveries{Queue: q}, Journal: j,
		Webhooks: delivery.NewWebhooks(egress.Policy{AllowLoopback: true}, func(string) string { return "" }),
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, 2, h.Handle); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{h: h, q: q, journal: j}
}

func routes(url, extra string) string {
	return `
domains: [example.test]
routes:
  - name: hook
    catch_all: true
    actions:
      - webhook: {url: "` + url + `", secret: "` + secret + `", timeout: 300ms}
        retry: {attempts: 4, initial: 10ms, max: 40ms}
` + extra
}

func job(id string) delivery.Job {
	return delivery.Job{ID: delivery.JobID(id, "hook", 0), MessageID: id, Route: "hook", Kind: "webhook",
		Recipients: []string{"a@example.test"}, CreatedAt: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC),
		Message: &message.Message{ID: id, Subject: "hello " + id}}
}

func (h *harness) waitStatus(t *testing.T, j delivery.Job, want string) *delivery.Record {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r, err := h.journal.Get(context.Background(), j.MessageID, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil && r.Status == want {
			return r
		}
		time.Sleep(5 * time.Millisecond)
	}
	r, _ := h.journal.Get(context.Background(), j.MessageID, j.ID)
	t.Fatalf("job %s never reached %s; record: %+v", j.ID, want, r)
	return nil
}

// waitDead waits for n dead letters: the record is written just before the
// job is dead-lettered.
func (h *harness) waitDead(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		dead, err := h.q.DeadLetters(context.Background())
		if err == nil && len(dead) == n {
			return dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters = %d, %v; want %d", len(dead), err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func outcomes(r *delivery.Record) string {
	var s []string
	for _, a := range r.Attempts {
		s = append(s, a.Outcome)
	}
	return strings.Join(s, ",")
}

func TestFailTwiceThenSucceedKeepsOneWebhookID(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(503)
		}
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JA")
	if err := h.h.Queue.Send(context.Background(), []delivery.Job{j}); err != nil {
		t.Fatal(err)
	}
	r := h.waitStatus(t, j, delivery.StatusDelivered)
	if got := outcomes(r); got != "retry,retry,delivered" {
		t.Fatalf("outcomes = %s", got)
	}
	if r.Attempts[0].Status != 503 || r.Attempts[2].Status != 200 || r.Attempts[0].RetryAt == nil {
		t.Fatalf("attempts = %+v", r.Attempts)
	}
	ids := rc.requests()
	if len(ids) != 3 || ids[0] != j.ID || ids[1] != j.ID || ids[2] != j.ID {
		t.Fatalf("webhook-ids = %v, want %s three times", ids, j.ID)
	}
	ev := <-rc.got
	if ev.Type != "message.received" || ev.Data.Subject != "hello 01JA" || !ev.Timestamp.Equal(j.CreatedAt) {
		t.Fatalf("event = %+v", ev)
	}
}

func TestGoneIsPermanentAndDeadLettered(t *testing.T) {
	for _, code := range []int{406, 410} {
		rc := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(code) })
		h := newHarness(t, routes(rc.srv.URL, ""))
		j := job("01JB")
		h.h.Queue.Send(context.Background(), []delivery.Job{j})
		r := h.waitStatus(t, j, delivery.StatusFailed)
		if got := outcomes(r); got != "failed" || r.Attempts[0].Status != code {
			t.Fatalf("%d: attempts = %+v", code, r.Attempts)
		}
		if !strings.Contains(r.Attempts[0].Error, "not retried") {
			t.Fatalf("error = %q", r.Attempts[0].Error)
		}
		dead := h.waitDead(t, 1)
		var dj delivery.Job
		json.Unmarshal(dead[0], &dj)
		if dj.ID != j.ID || dj.Message == nil {
			t.Fatalf("dead letter = %+v; want the whole job for redrive", dj)
		}
	}
}

func TestOtherClientErrorsAreRetriedUntilAttemptsRunOut(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(404) })
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JC")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	r := h.waitStatus(t, j, delivery.StatusFailed)
	if got := outcomes(r); got != "retry,retry,retry,failed" {
		t.Fatalf("outcomes = %s", got)
	}
}

func TestHangingReceiverTimesOutAndIsRetried(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			time.Sleep(time.Second) // past the 300ms timeout
		}
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JD")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	r := h.waitStatus(t, j, delivery.StatusDelivered)
	if outcomes(r) != "retry,delivered" || !strings.Contains(r.Attempts[0].Error, "no response within 300ms") {
		t.Fatalf("attempts = %+v", r.Attempts)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		}
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JE")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	r := h.waitStatus(t, j, delivery.StatusDelivered)
	first := r.Attempts[0]
	if first.Status != 429 || first.RetryAt == nil || first.RetryAt.Sub(first.At) < 900*time.Millisecond {
		t.Fatalf("first attempt = %+v; want a retry at least ~1s later (Retry-After: 1)", first)
	}
	if r.Attempts[1].At.Before(first.At.Add(900 * time.Millisecond)) {
		t.Fatalf("second attempt at %v came before Retry-After", r.Attempts[1].At)
	}
}

func TestSSRFGuardRefusesPrivateTargetsPermanently(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {})
	h := newHarness(t, routes(rc.srv.URL, ""))
	h.h.Webhooks = delivery.NewWebhooks(egress.Policy{}, nil)
	j := job("01JF")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	r := h.waitStatus(t, j, delivery.StatusFailed)
	if outcomes(r) != "failed" || !strings.Contains(r.Attempts[0].Error, "not allowed") || len(rc.requests()) != 0 {
		t.Fatalf("attempts = %+v, requests = %d", r.Attempts, len(rc.requests()))
	}
}

func TestFinishedJobIsNotDeliveredAgain(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JG")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	h.waitStatus(t, j, delivery.StatusDelivered)
	// The same job again (a duplicate queue delivery): acknowledged, not sent.
	j2 := j
	j2.ID = j.ID
	if err := h.q.Send(context.Background(), "dup-"+j.ID, mustJSON(t, j2), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

func TestBackoffGrowsAndDefaultsCoverADay(t *testing.T) {
	r := routing.Retry{Attempts: 10, Initial: routing.Duration(time.Second), Max: routing.Duration(8 * time.Second)}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for i := 0; i < 50; i++ {
			if d := delivery.Backoff(r, n); d < want/2 || d > want {
				t.Fatalf("Backoff(attempt %d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if span := delivery.ScheduleSpan(routing.DefaultRetry); span < 24*time.Hour {
		t.Fatalf("default retries span at least %v, want ≥ 24h", span)
	}
	if got := delivery.RetryAfter("120", time.Now()); got != 2*time.Minute {
		t.Fatalf("RetryAfter(120) = %v", got)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if got := delivery.RetryAfter("Sun, 22 Nov 2026 12:00:30 GMT", now); got != 30*time.Second {
		t.Fatalf("RetryAfter(date) = %v", got)
	}
	if got := delivery.RetryAfter("soon", now); got != 0 {
		t.Fatalf("RetryAfter(garbage) = %v", got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFailuresJournalWritesOnlyWhatNeedsARecord(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 2 { // the second job's first attempt fails once
			w.WriteHeader(500)
		}
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	h.h.Journal.Mode = delivery.JournalFailures
	h.journal.Mode = delivery.JournalFailures
	first, second := job("01JH"), job("01JI")
	h.h.Queue.Send(context.Background(), []delivery.Job{first})
	<-rc.got
	h.h.Queue.Send(context.Background(), []delivery.Job{second})
	r := h.waitStatus(t, second, delivery.StatusDelivered)
	if outcomes(r) != "retry,delivered" {
		t.Fatalf("second job: %s", outcomes(r))
	}
	if r, _ := h.journal.Get(context.Background(), first.MessageID, first.ID); r != nil {
		t.Fatalf("a first-attempt success was recorded: %+v", r)
	}
}

func TestRedrivenDeadLetterIsTriedAgain(t *testing.T) {
	gone := true
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if gone {
			w.WriteHeader(410)
		}
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JJ")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	h.waitStatus(t, j, delivery.StatusFailed)
	dead := h.waitDead(t, 1)
	var dj delivery.Job
	json.Unmarshal(dead[0], &dj)
	if dj.DeadLetteredAt == nil {
		t.Fatal("dead letter does not say when it was dead-lettered")
	}
	// The receiver is fixed; the operator redrives the dead-letter queue.
	gone = false
	if err := h.q.Send(context.Background(), "redrive-"+dj.ID, dead[0], 0); err != nil {
		t.Fatal(err)
	}
	r := h.waitStatus(t, j, delivery.StatusDelivered)
	if outcomes(r) != "failed,delivered" || r.Attempts[1].Number != 1 {
		t.Fatalf("attempts after redrive = %+v", r.Attempts)
	}
}

// An attempt's record keeps the start of the receiver's answer, printable,
// so that "why did the receiver refuse it" is answered without its logs.
func TestAttemptKeepsAResponseExcerpt(t *testing.T) {
	body := "account suspended\x00\x1b[31m\xff" + strings.Repeat("x", 4096)
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusGone)
		io.WriteString(w, body)
	})
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JR")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	r := h.waitStatus(t, j, delivery.StatusFailed)
	got := r.Attempts[0].Response
	want := "account suspended\uFFFD\uFFFD[31m\uFFFD" + strings.Repeat("x", delivery.ResponseExcerptBytes-len("account suspended\x00\x1b[31m\xff"))
	if got != want {
		t.Fatalf("response = %q\nwant       %q", got, want)
	}
}

func TestResponseExcerpt(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"ok\n", "ok\n"},
		{"a\tb\r\nc", "a\tb\uFFFD\nc"},
		{"caf\xc3\xa9 \xc3", "café \uFFFD"},
	} {
		if got := delivery.ResponseExcerpt(strings.NewReader(c.in)); got != c.want {
			t.Errorf("ResponseExcerpt(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
