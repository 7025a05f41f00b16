package delivery_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/routing"
)

// sqsRecord is a delivery-queue message as Lambda hands it to the deliver
// function, with the attributes SQS sets.
func sqsRecord(t *testing.T, j delivery.Job, receives int, sent time.Time) events.SQSEvent {
	t.Helper()
	return events.SQSEvent{Records: []events.SQSMessage{{
		MessageId: "m-" + j.ID, ReceiptHandle: "r-" + j.ID, Body: string(mustJSON(t, j)),
		Attributes: map[string]string{
			"ApproximateReceiveCount": strconv.Itoa(receives),
			"SentTimestamp":           strconv.FormatInt(sent.UnixMilli(), 10),
		},
	}}}
}

// A job whose next retry would come after the queue deletes it (its
// retention, counted from when it was sent) is dead-lettered with its
// record now, instead of vanishing (issue 12 item 2).
func TestJobPastRetentionIsDeadLetteredWithItsRecord(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(503) })
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JR")
	sent := time.Now().Add(-routing.QueueRetention + time.Minute) // deleted in a minute
	resp, err := h.h.Handle(context.Background(), sqsRecord(t, j, 2, sent))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v; want the job finished (dead-lettered), not redelivered", resp, err)
	}
	r := h.waitStatus(t, j, delivery.StatusFailed)
	last := r.Attempts[len(r.Attempts)-1]
	if last.Outcome != delivery.StatusFailed || !strings.Contains(last.Error, "not retried: the next attempt would end after the delivery queue's retention (240h0m0s after the job was queued") {
		t.Fatalf("last attempt = %+v", last)
	}
	dead := h.waitDead(t, 1)
	var dj delivery.Job
	if json.Unmarshal(dead[0], &dj); dj.ID != j.ID || dj.DeadLetteredAt == nil {
		t.Fatalf("dead letter = %s", dead[0])
	}

	// A job with time left is retried as before.
	j2 := job("01JS")
	resp, err = h.h.Handle(context.Background(), sqsRecord(t, j2, 2, time.Now().Add(-time.Hour)))
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("Handle = %+v, %v; want the job redelivered", resp, err)
	}
}

// On the last receive SQS allows (its maxReceiveCount), a job that would
// be retried is dead-lettered by the deliver function with its record,
// rather than moved by SQS without one: here a redriven job, whose
// attempts restart while its receives do not (issue 12 item 1).
func TestLastReceiveIsDeadLetteredWithItsRecord(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(503) })
	h := newHarness(t, routes(rc.srv.URL, ""))
	j := job("01JT")
	at := time.Now().Add(-time.Minute).UTC()
	if err := h.journal.Put(context.Background(), &delivery.Record{Job: j, Status: delivery.StatusFailed,
		Attempts: []delivery.Attempt{{At: at.Add(-time.Second), Number: 4, Outcome: delivery.StatusFailed, Error: "earlier"}}}); err != nil {
		t.Fatal(err)
	}
	j.DeadLetteredAt = &at
	resp, err := h.h.Handle(context.Background(), sqsRecord(t, j, routing.MaxReceives-1, time.Now()))
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("receive %d: Handle = %+v, %v; want a retry", routing.MaxReceives-1, resp, err)
	}
	h.waitStatus(t, job("01JT"), delivery.StatusRetrying)
	resp, err = h.h.Handle(context.Background(), sqsRecord(t, j, routing.MaxReceives, time.Now()))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("receive %d: Handle = %+v, %v; want the job dead-lettered", routing.MaxReceives, resp, err)
	}
	r := h.waitStatus(t, j, delivery.StatusFailed)
	if last := r.Attempts[len(r.Attempts)-1]; !strings.Contains(last.Error, "not retried: the delivery queue's receive limit (55) is reached") {
		t.Fatalf("last attempt = %+v", last)
	}
	h.waitDead(t, 1)
}

// A webhook's timeout is the whole attempt's deadline: an action with
// timeout: 45s waits for a receiver that answers after 31 seconds, past
// the 30-second response-header cap the sender used to have (issue 12
// item 3). The receiver answers when the test releases it, once the old
// cap has passed.
func TestWebhookTimeoutIsNotCappedAt30s(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan time.Time, 1)
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		arrived <- time.Now()
		<-release
	})
	h := newHarness(t, strings.Replace(routes(rc.srv.URL, ""), "timeout: 300ms", "timeout: 45s", 1))
	j := job("01JU")
	h.h.Queue.Send(context.Background(), []delivery.Job{j})
	start := <-arrived
	time.Sleep(time.Until(start.Add(delivery.DefaultWebhookTimeout + time.Second)))
	close(release)
	r := h.waitStatus(t, j, delivery.StatusDelivered)
	if outcomes(r) != "delivered" || r.Attempts[0].LatencyMS < 31000 {
		t.Fatalf("attempts = %+v", r.Attempts)
	}
}

// An attempt ends a margin before the deliver function's own deadline,
// whatever the action's timeout, so that it is recorded and retried
// rather than killed with the function.
func TestAttemptEndsBeforeTheFunctionDeadline(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // before the receiver's Close, which waits for the handler
	h := newHarness(t, strings.Replace(routes(rc.srv.URL, ""), "timeout: 300ms", "timeout: 100s", 1))
	j := job("01JV")
	ctx, cancel := context.WithTimeout(context.Background(), routing.AttemptMargin+500*time.Millisecond)
	defer cancel()
	resp, err := h.h.Handle(ctx, sqsRecord(t, j, 1, time.Now()))
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("Handle = %+v, %v; want the job back for a retry", resp, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the handler returned after the function's deadline")
	}
	r := h.waitStatus(t, j, delivery.StatusRetrying)
	if a := r.Attempts[0]; a.Outcome != "retry" || a.LatencyMS > 2000 {
		t.Fatalf("attempt = %+v", a)
	}
}
