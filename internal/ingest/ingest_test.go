package ingest_test

import (
	"bytes"
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
	"github.com/letterboxmail/letterbox/internal/testenv"
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

// lineReader yields line repeated until n bytes.
type lineReader struct {
	line []byte
	n    int
	off  int
}

func (r *lineReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	w := 0
	for w < len(p) && r.n > 0 {
		c := copy(p[w:min(len(p), w+r.n)], r.line[r.off:])
		r.off = (r.off + c) % len(r.line)
		w += c
		r.n -= c
	}
	return w, nil
}

// TestProcessLargeBodyBounded routes a 150 MiB text/plain message to three
// actions, as the ingest function does, and checks that the heap stays far
// below the function's 512 MB: the body streams to the store, the JSON
// keeps 1 MiB of it, and the jobs name parsed/.
func TestProcessLargeBodyBounded(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := routing.Parse("routes.yaml", []byte("domains: [example.test]\nroutes:\n  - name: all\n    catch_all: true\n    actions:\n"+
		strings.Repeat("      - webhook: {url: \"https://hooks.example.org/in\", secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}\n", 3)))
	if err != nil {
		t.Fatal(err)
	}
	q := &sent{}
	h := &ingest.Handler{Store: st, Routes: routing.Static(cfg), Queue: q, Journal: delivery.Journal{Store: st},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	id := "01JKINGESTBIG0000000000000"
	const size = 150 << 20
	head := "From: a@example.org\r\nTo: x@example.test\r\nSubject: huge\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	body := &lineReader{line: []byte("Grüße, a line of a 150 MiB plain text body.\r\n"), n: size}
	env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"x@example.test"}, ReceivedAt: time.Now().UTC()}
	if _, err := store.PutRaw(ctx, st, id, env, io.MultiReader(strings.NewReader(head), body)); err != nil {
		t.Fatal(err)
	}

	heapGrowth := testenv.HeapGrowth()
	err = h.Process(ctx, store.RawKey(id))
	grown := heapGrowth()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("150 MiB text message: peak heap growth %.1f MiB", float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Fatalf("heap grew by %.1f MiB; want under 64 MiB", float64(grown)/(1<<20))
	}
	if len(q.jobs) != 3 || q.jobs[0].MessageKey == "" {
		t.Fatalf("jobs: %d, first names %q", len(q.jobs), q.jobs[0].MessageKey)
	}
	var m message.Message
	if err := store.GetJSON(ctx, st, q.jobs[0].MessageKey, &m); err != nil {
		t.Fatal(err)
	}
	p := m.Parts[0]
	if !p.Truncated || p.Size != size || p.Key != "attachments/"+id+"/part-1/body.txt" {
		t.Fatalf("part: truncated %v size %d key %q", p.Truncated, p.Size, p.Key)
	}
	rc, obj, err := st.Get(ctx, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	first := make([]byte, 64)
	io.ReadFull(rc, first)
	if obj.Size != size || !bytes.HasPrefix(first, []byte("Grüße, a line")) {
		t.Fatalf("stored body: %d bytes, starting %q", obj.Size, first)
	}
}
