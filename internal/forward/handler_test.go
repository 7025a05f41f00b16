package forward

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/routing"
)

// TestDeliveryHandler runs forward jobs through delivery.Handler, wired as
// the deliver function wires it: retries on 4xx, a dead letter and a
// failed record on 5xx.
func TestDeliveryHandler(t *testing.T) {
	fx := newFixture(t, rawMsg)
	srv := startSMTP(t, serverOpts{})
	var calls atomic.Int32
	srv.OnRcpt = func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		case calls.Add(1) <= 2:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted"}
		}
		return nil
	}
	cfg, err := routing.Parse("routes.yaml", []byte(`
domains: [letterbox.test]
routes:
  - name: fwd
    catch_all: true
    actions:
      - forward: {to: ["${user}@b.test"], smarthost: "`+srv.Addr+`", starttls: false}
        retry: {attempts: 5, initial: 10ms, max: 20ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	q, err := localqueue.Open(context.Background(), t.TempDir(), "deliveries")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	jl := delivery.Journal{Store: fx.st}
	h := &delivery.Handler{Store: fx.st, Routes: routing.Static(cfg), Queue: localqueue.Deliveries{Queue: q}, Journal: jl,
		Forwarder: testForwarder(t, fx.st, nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, 2, h.Handle); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	send := func(user string) delivery.Job {
		j := *fx.job
		j.ID += "." + user
		j.Captures = map[string]string{"user": user}
		j.Message = fx.msg
		if err := h.Queue.Send(ctx, []delivery.Job{j}); err != nil {
			t.Fatal(err)
		}
		return j
	}
	wait := func(j delivery.Job, status string) *delivery.Record {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if r, err := jl.Get(ctx, j.MessageID, j.ID); err == nil && r != nil && r.Status == status {
				return r
			}
		}
		r, _ := jl.Get(ctx, j.MessageID, j.ID)
		t.Fatalf("job %s never %s: %+v", j.ID, status, r)
		return nil
	}

	r := wait(send("bob"), delivery.StatusDelivered)
	var got []string
	for _, a := range r.Attempts {
		got = append(got, a.Outcome+":"+itoa(a.Status))
	}
	if strings.Join(got, ",") != "retry:451,retry:451,delivered:250" {
		t.Errorf("attempts %s", strings.Join(got, ","))
	}
	if m := srv.Messages(); len(m) != 1 || m[0].To[0] != "bob@b.test" || string(m[0].Data) != rawMsg {
		t.Errorf("messages %+v", m)
	}

	r = wait(send("gone"), delivery.StatusFailed)
	if len(r.Attempts) != 1 || r.Attempts[0].Status != 550 || !strings.Contains(r.Attempts[0].Error, "550 5.1.1 No such user") {
		t.Errorf("record %+v", r)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		dead, _ := q.DeadLetters(ctx)
		if len(dead) == 1 {
			var j delivery.Job
			json.Unmarshal(dead[0], &j)
			if !strings.HasSuffix(j.ID, ".gone") {
				t.Errorf("dead letter %s", j.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
