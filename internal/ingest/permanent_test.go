package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
)

const raw = "From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

// fixture is a handler on a file store whose dead-letter queue records
// what it is sent.
type fixture struct {
	st   *filestore.Store
	h    *ingest.Handler
	mu   sync.Mutex
	dead []string // message ids dead-lettered
	dlq  error    // what DeadLetter returns
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, err := routing.Parse("routes.yaml", []byte("domains: [example.test]\nroutes:\n  - name: all\n    match: {recipient: b@example.test}\n    actions:\n      - webhook: {url: \"https://hooks.example.test/in\", secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st}
	f.h = &ingest.Handler{Store: st, Routes: routing.Static(cfg), Queue: downFor{"01JDQ7ZK3M8X9V2N4B6C8D0TMP", localqueue.Deliveries{Queue: localqueue.Memory("d")}},
		Journal: delivery.Journal{Store: st}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f.h.DeadLetter = func(ctx context.Context, rec events.SQSMessage) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.dlq != nil {
			return f.dlq
		}
		f.dead = append(f.dead, rec.MessageId)
		return nil
	}
	return f
}

// put stores a raw message; badEnvelope gives it envelope metadata that
// cannot be decoded, a permanent failure.
func (f *fixture) put(t *testing.T, id string, badEnvelope bool) events.SQSMessage {
	t.Helper()
	meta := map[string]string{}
	if badEnvelope {
		meta[store.MetaEnvelope] = "!not base64!"
	}
	obj, err := f.st.Put(context.Background(), store.RawKey(id), strings.NewReader(raw), meta)
	if err != nil {
		t.Fatal(err)
	}
	return sqsRecord(t, id, obj)
}

func sqsRecord(t *testing.T, id string, obj store.Object) events.SQSMessage {
	b, err := json.Marshal(events.S3Event{Records: []events.S3EventRecord{store.EventRecord("bucket", obj)}})
	if err != nil {
		t.Fatal(err)
	}
	return events.SQSMessage{MessageId: "sqs-" + id, Body: string(b), EventSource: "aws:sqs"}
}

// downFor is a delivery queue that cannot take one message's jobs: a
// temporary failure (an unclassified error).
type downFor struct {
	messageID string
	delivery.Queue
}

func (q downFor) Send(ctx context.Context, jobs []delivery.Job) error {
	if jobs[0].MessageID == q.messageID {
		return errors.New("delivery queue unavailable")
	}
	return q.Queue.Send(ctx, jobs)
}

func failures(resp events.SQSEventResponse) []string {
	var out []string
	for _, f := range resp.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

// TestPermanentFailureDeadLettered: a message whose envelope cannot be read
// fails permanently: it is recorded, with the reason, and dead-lettered at
// once instead of coming back as a batch item failure SQS retries; so is a
// notification of a missing object and a queue message that is not an S3
// event. A temporary failure (the delivery queue is down) is still a batch
// item failure, and a good message goes through.
func TestPermanentFailureDeadLettered(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	bad := f.put(t, "01JDQ7ZK3M8X9V2N4B6C8D0BAD", true)
	good := f.put(t, "01JDQ7ZK3M8X9V2N4B6C8D0GOD", false)
	missing := sqsRecord(t, "01JDQ7ZK3M8X9V2N4B6C8D0MIS", store.Object{Key: store.RawKey("01JDQ7ZK3M8X9V2N4B6C8D0MIS")})
	notS3 := events.SQSMessage{MessageId: "sqs-garbage", Body: "{not json", EventSource: "aws:sqs"}
	tmp := f.put(t, "01JDQ7ZK3M8X9V2N4B6C8D0TMP", false)

	resp, err := f.h.HandleSQS(ctx, events.SQSEvent{Records: []events.SQSMessage{bad, good, missing, notS3, tmp}})
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(resp); len(got) != 1 || got[0] != tmp.MessageId {
		t.Fatalf("batch item failures = %v, want only the temporary one %s", got, tmp.MessageId)
	}
	f.mu.Lock()
	dead := strings.Join(f.dead, " ")
	f.mu.Unlock()
	for _, want := range []string{bad.MessageId, missing.MessageId, notS3.MessageId} {
		if !strings.Contains(dead, want) {
			t.Errorf("%s not dead-lettered", want)
		}
	}
	if len(f.dead) != 3 {
		t.Fatalf("dead-lettered %q, want 3", dead)
	}
	r, err := delivery.Journal{Store: f.st}.Get(ctx, "01JDQ7ZK3M8X9V2N4B6C8D0BAD", ingest.IngestJobID("01JDQ7ZK3M8X9V2N4B6C8D0BAD"))
	if err != nil || r == nil {
		t.Fatalf("no failure record: %v", err)
	}
	if r.Status != delivery.StatusFailed || len(r.Attempts) != 1 || !strings.Contains(r.Attempts[0].Error, "envelope of raw/01JDQ7ZK3M8X9V2N4B6C8D0BAD.eml") {
		t.Fatalf("failure record = %+v, want status failed and the envelope error", r)
	}
	for _, id := range []string{"01JDQ7ZK3M8X9V2N4B6C8D0GOD", "01JDQ7ZK3M8X9V2N4B6C8D0TMP"} {
		if r, _ := (delivery.Journal{Store: f.st}).Get(ctx, id, ingest.IngestJobID(id)); r != nil {
			t.Errorf("%s: a failure record for a message that did not fail for good: %+v", id, r)
		}
	}
}

// TestDeadLetterFailureKeepsMessage: when the dead-letter queue cannot take
// the message, it stays in the source queue (a batch item failure).
func TestDeadLetterFailureKeepsMessage(t *testing.T) {
	f := newFixture(t)
	f.dlq = errors.New("dead-letter queue unavailable")
	bad := f.put(t, "01JDQ7ZK3M8X9V2N4B6C8D0BAD", true)
	resp, err := f.h.HandleSQS(context.Background(), events.SQSEvent{Records: []events.SQSMessage{bad}})
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(resp); len(got) != 1 || got[0] != bad.MessageId {
		t.Fatalf("batch item failures = %v, want %s", got, bad.MessageId)
	}
}

// TestNoDeadLetterQueue: without one, a permanent failure is left to the
// queue's redrive policy, as before.
func TestNoDeadLetterQueue(t *testing.T) {
	f := newFixture(t)
	f.h.DeadLetter = nil
	bad := f.put(t, "01JDQ7ZK3M8X9V2N4B6C8D0BAD", true)
	resp, _ := f.h.HandleSQS(context.Background(), events.SQSEvent{Records: []events.SQSMessage{bad}})
	if got := failures(resp); len(got) != 1 {
		t.Fatalf("batch item failures = %v, want the permanent failure", got)
	}
}

// TestMixedEventIsTemporary: an S3 event with one permanent and one
// temporary record is retried, not dead-lettered: the temporary one may
// still succeed.
func TestMixedEventIsTemporary(t *testing.T) {
	f := newFixture(t)
	obj, _ := f.st.Put(context.Background(), store.RawKey("01JDQ7ZK3M8X9V2N4B6C8D0BAD"), strings.NewReader(raw), map[string]string{store.MetaEnvelope: "!"})
	tmp, _ := f.st.Put(context.Background(), store.RawKey("01JDQ7ZK3M8X9V2N4B6C8D0TMP"), strings.NewReader(raw), nil)
	ev := events.S3Event{Records: []events.S3EventRecord{store.EventRecord("b", obj), store.EventRecord("b", tmp)}}
	err := f.h.HandleS3(context.Background(), ev)
	if err == nil || !fault.IsTemporary(err) {
		t.Fatalf("HandleS3 = %v (temporary %v), want a temporary error", err, fault.IsTemporary(err))
	}
}
