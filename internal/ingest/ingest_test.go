package ingest_test

import (
	"context"
	"fmt"
	"io"
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

// sent records the jobs ingest enqueues.
type sent struct{ jobs []delivery.Job }

func (s *sent) Send(_ context.Context, jobs []delivery.Job) error {
	s.jobs = append(s.jobs, jobs...)
	return nil
}
func (s *sent) Retry(context.Context, string, time.Duration) error { return nil }
func (s *sent) DeadLetter(context.Context, delivery.Job) error     { return nil }

// TestParsedMessageInJobOrStore routes a message with a 120 KiB text body
// (in the JSON three times: parts, text and stripped_text, about 360 KiB): with
// one action the job carries it (cheaper than a parsed/ PUT since queues
// take 1 MiB; with the old 256 KiB limit it was stored), with three
// actions it goes to parsed/ (its chunks would be billed three times).
func TestParsedMessageInJobOrStore(t *testing.T) {
	for _, tt := range []struct {
		actions int
		inline  bool
	}{{1, true}, {3, false}} {
		t.Run(fmt.Sprintf("%d actions", tt.actions), func(t *testing.T) {
			ctx := context.Background()
			st, err := filestore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			actions := strings.Repeat("      - webhook: {url: \"https://hooks.example.org/in\", secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}\n", tt.actions)
			cfg, err := routing.Parse("routes.yaml", []byte("domains: [example.test]\nroutes:\n  - name: all\n    catch_all: true\n    actions:\n"+actions))
			if err != nil {
				t.Fatal(err)
			}
			q := &sent{}
			h := &ingest.Handler{Store: st, Routes: routing.Static(cfg), Queue: q, Journal: delivery.Journal{Store: st},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			id := "01JKINGEST0000000000000000"
			raw := "From: a@example.org\r\nTo: x@example.test\r\nSubject: long\r\n\r\n" + strings.Repeat("a line of a long text body, 120 KiB in all\r\n", 120<<10/44)
			env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"x@example.test"}, ReceivedAt: time.Now().UTC()}
			if _, err := store.PutRaw(ctx, st, id, env, strings.NewReader(raw)); err != nil {
				t.Fatal(err)
			}
			if err := h.Process(ctx, store.RawKey(id)); err != nil {
				t.Fatal(err)
			}
			if len(q.jobs) != tt.actions {
				t.Fatalf("%d jobs", len(q.jobs))
			}
			_, _, err = st.Get(ctx, store.ParsedKey(id))
			stored := err == nil
			for _, j := range q.jobs {
				if (j.Message != nil) != tt.inline || (j.MessageKey != "") == tt.inline || stored == tt.inline {
					t.Fatalf("job carries message %v, key %q; parsed/ stored %v", j.Message != nil, j.MessageKey, stored)
				}
			}
		})
	}
}
