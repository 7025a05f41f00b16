// Package localqueue is the delivery queue of `letterbox dev`: SQS's
// semantics (at-least-once, visibility timeout, receive count, batch item
// failures, per-message delay, dead letters) on a local directory, so the
// deliver function runs the same code as on AWS and pending retries survive
// a restart.
//
// Messages are files written through the file store (durable, atomic). A
// consumer loop hands batches to the handler as events.SQSEvent and deletes
// the records the handler did not report as failed.
package localqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Handler consumes batches, as a Lambda function with an SQS event source
// and ReportBatchItemFailures does.
type Handler func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// entry is a queued message's persisted state.
type entry struct {
	ID           string          `json:"id"`
	Body         json.RawMessage `json:"body"`
	SentAt       time.Time       `json:"sent_at"`
	ReceiveCount int             `json:"receive_count"`
	VisibleAt    time.Time       `json:"visible_at"`

	inflight bool
}

// Queue is a durable local queue.
type Queue struct {
	st   *filestore.Store
	name string
	// Visibility is how long a received message stays hidden when the
	// handler neither deletes it nor sets a delay (SQS's visibility timeout).
	Visibility time.Duration
	// BatchSize is the most records per handler call (SQS: up to 10).
	BatchSize int
	Log       *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	wake    chan struct{}
	scanned time.Time
}

// scanDue reports whether a rescan is due, and if so marks it done now,
// so that of several idle workers only one rescans each rescanEvery.
func (q *Queue) scanDue() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.scanned) < rescanEvery {
		return false
	}
	q.scanned = time.Now()
	return true
}

// Open opens (creating) a queue in dir, loading messages left by an
// earlier run: their retries resume.
func Open(ctx context.Context, dir, name string) (*Queue, error) {
	st, err := filestore.New(dir)
	if err != nil {
		return nil, err
	}
	q := Memory(name)
	q.st = st
	if err := q.rescan(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("localqueue: load %s: %w", dir, err)
	}
	return q, nil
}

// rescan loads messages written to the directory by another process (such
// as `letterbox replay` while `letterbox dev` runs).
func (q *Queue) rescan(ctx context.Context) error {
	if q.st == nil {
		return nil
	}
	var keys []string
	err := q.st.List(ctx, "queue/", "", func(o store.Object) bool {
		keys = append(keys, o.Key)
		return true
	})
	if err != nil {
		return err
	}
	added := 0
	for _, k := range keys {
		id := strings.TrimSuffix(strings.TrimPrefix(k, "queue/"), ".json")
		q.mu.Lock()
		_, known := q.entries[id]
		q.mu.Unlock()
		if known {
			continue
		}
		var e entry
		if err := store.GetJSON(ctx, q.st, k, &e); err != nil {
			if store.IsNotFound(err) {
				continue // delivered and deleted meanwhile
			}
			return err
		}
		q.mu.Lock()
		if _, known := q.entries[id]; !known {
			q.entries[id] = &e
			added++
		}
		q.mu.Unlock()
	}
	if added > 0 {
		q.poke()
	}
	return nil
}

// rescanEvery is how often a persistent queue looks for messages written by
// other processes.
const rescanEvery = time.Second

// Memory returns a queue kept only in memory, for events that are
// recovered another way after a restart (`letterbox dev` rescans raw/).
func Memory(name string) *Queue {
	return &Queue{name: name, Visibility: 30 * time.Second, BatchSize: 10, Log: slog.Default(),
		entries: map[string]*entry{}, wake: make(chan struct{}, 1)}
}

// Close releases the queue's store.
func (q *Queue) Close() error {
	if q.st == nil {
		return nil
	}
	return q.st.Close()
}

// Len returns the number of messages queued or in flight.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

func key(id string) string { return "queue/" + id + ".json" }

func (q *Queue) persist(ctx context.Context, e *entry) error {
	if q.st == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fault.Permanent(err)
	}
	_, err = q.st.Put(ctx, key(e.ID), bytes.NewReader(b), nil)
	return err
}

// Send enqueues a message durably, visible after delay. A message whose id
// is already queued is not enqueued twice.
func (q *Queue) Send(ctx context.Context, id string, body []byte, delay time.Duration) error {
	if strings.ContainsAny(id, "/\x00") || id == "" {
		return fault.Permanentf("localqueue: bad message id %q", id)
	}
	q.mu.Lock()
	_, dup := q.entries[id]
	q.mu.Unlock()
	if dup {
		return nil
	}
	e := &entry{ID: id, Body: body, SentAt: time.Now().UTC(), VisibleAt: time.Now().Add(delay).UTC()}
	if err := q.persist(ctx, e); err != nil {
		return err
	}
	q.mu.Lock()
	if _, dup := q.entries[id]; !dup {
		q.entries[id] = e
	}
	q.mu.Unlock()
	q.poke()
	return nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// ChangeVisibility hides a received message for d from now, as SQS's
// ChangeMessageVisibility. The receipt handle is the record's.
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, d time.Duration) error {
	id, _, _ := strings.Cut(receipt, "#")
	q.mu.Lock()
	e, ok := q.entries[id]
	if ok {
		e.VisibleAt = time.Now().Add(d).UTC()
	}
	q.mu.Unlock()
	if !ok {
		return fault.Permanentf("localqueue: receipt handle %q is not in flight", receipt)
	}
	return q.persist(ctx, e)
}

// Run consumes the queue with the given number of concurrent batches
// until ctx ends, then waits for the batches in flight.
func (q *Queue) Run(ctx context.Context, workers int, h Handler) {
	var wg sync.WaitGroup
	for i := 0; i < max(workers, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.worker(ctx, h)
		}()
	}
	wg.Wait()
}

func (q *Queue) worker(ctx context.Context, h Handler) {
	for {
		batch, next := q.receive(ctx)
		if len(batch) > 0 {
			q.process(context.WithoutCancel(ctx), h, batch)
			q.poke() // there may be more
			continue
		}
		wait := rescanEvery
		if !next.IsZero() {
			wait = min(max(time.Until(next), time.Millisecond), rescanEvery)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-q.wake:
		case <-t.C:
			if q.scanDue() {
				if err := q.rescan(ctx); err != nil && ctx.Err() == nil {
					q.Log.WarnContext(ctx, "localqueue: rescan failed", "queue", q.name, "err", err)
				}
			}
		}
		t.Stop()
	}
}

// receive takes up to BatchSize visible messages, oldest first, and returns
// when the next invisible one becomes visible.
func (q *Queue) receive(ctx context.Context) ([]events.SQSMessage, time.Time) {
	if ctx.Err() != nil {
		return nil, time.Time{}
	}
	now := time.Now()
	q.mu.Lock()
	var ready []*entry
	var next time.Time
	for _, e := range q.entries {
		if e.inflight {
			continue
		}
		if e.VisibleAt.After(now) {
			if next.IsZero() || e.VisibleAt.Before(next) {
				next = e.VisibleAt
			}
			continue
		}
		ready = append(ready, e)
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].SentAt.Before(ready[j].SentAt) })
	if len(ready) > q.BatchSize {
		ready = ready[:q.BatchSize]
	}
	batch := make([]events.SQSMessage, 0, len(ready))
	for _, e := range ready {
		e.inflight = true
		e.ReceiveCount++
		e.VisibleAt = now.Add(q.Visibility).UTC()
		batch = append(batch, q.record(e))
	}
	q.mu.Unlock()
	// The receive count must survive a crash, as SQS's does.
	for _, e := range ready {
		if err := q.persist(ctx, e); err != nil {
			q.Log.WarnContext(ctx, "localqueue: cannot persist receive count", "id", e.ID, "err", err)
		}
	}
	return batch, next
}

func (q *Queue) record(e *entry) events.SQSMessage {
	return events.SQSMessage{
		MessageId:     e.ID,
		ReceiptHandle: e.ID + "#" + strconv.Itoa(e.ReceiveCount),
		Body:          string(e.Body),
		Attributes: map[string]string{
			"ApproximateReceiveCount": strconv.Itoa(e.ReceiveCount),
			"SentTimestamp":           strconv.FormatInt(e.SentAt.UnixMilli(), 10),
		},
		EventSource:    "aws:sqs",
		EventSourceARN: "arn:aws:sqs:local:000000000000:" + q.name,
		AWSRegion:      "local",
	}
}

func (q *Queue) process(ctx context.Context, h Handler, batch []events.SQSMessage) {
	resp, err := h(ctx, events.SQSEvent{Records: batch})
	failed := map[string]bool{}
	if err != nil {
		// A failed invocation retries the whole batch, as Lambda does.
		q.Log.ErrorContext(ctx, "localqueue: handler failed; batch will be retried", "queue", q.name, "err", err)
		for _, r := range batch {
			failed[r.MessageId] = true
		}
	}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, r := range batch {
		if !failed[r.MessageId] && q.st != nil {
			// The file goes first, so a rescan cannot bring it back.
			if err := q.st.Delete(ctx, key(r.MessageId)); err != nil {
				q.Log.WarnContext(ctx, "localqueue: cannot delete message; it may be redelivered", "id", r.MessageId, "err", err)
			}
		}
		q.mu.Lock()
		q.entries[r.MessageId].inflight = false
		if !failed[r.MessageId] {
			delete(q.entries, r.MessageId)
		}
		q.mu.Unlock()
	}
}

// DeadLetters lists the dead-lettered bodies.
func (q *Queue) DeadLetters(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	var err error
	if q.st == nil {
		return nil, nil
	}
	lerr := q.st.List(ctx, "dead/", "", func(o store.Object) bool {
		var b []byte
		if b, err = store.ReadAll(ctx, q.st, o.Key); err != nil {
			return false
		}
		out = append(out, b)
		return true
	})
	if lerr != nil {
		return nil, lerr
	}
	return out, err
}

// DeadLetterBody keeps a received message's body under dead/<id>.json, for
// inspection and redrive; the handler then reports it done.
func (q *Queue) DeadLetterBody(ctx context.Context, id string, body []byte) error {
	if q.st == nil {
		return fault.Permanentf("localqueue: %s keeps no dead letters in memory", q.name)
	}
	_, err := q.st.Put(ctx, "dead/"+id+".json", bytes.NewReader(body), map[string]string{"content-type": "application/json"})
	return err
}

// Deliveries adapts a Queue to delivery.Queue.
type Deliveries struct{ *Queue }

var _ delivery.Queue = Deliveries{}

// Send enqueues jobs, keyed by job id.
func (d Deliveries) Send(ctx context.Context, jobs []delivery.Job) error {
	for _, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			return fault.Permanent(err)
		}
		if err := d.Queue.Send(ctx, j.ID, b, 0); err != nil {
			return err
		}
	}
	return nil
}

// Retry delays a received job.
func (d Deliveries) Retry(ctx context.Context, receipt string, delay time.Duration) error {
	return d.ChangeVisibility(ctx, receipt, delay)
}

// DeadLetter keeps a job under dead/ for inspection and redrive.
func (d Deliveries) DeadLetter(ctx context.Context, j delivery.Job) error {
	if d.st == nil {
		return fault.Permanentf("localqueue: %s keeps no dead letters in memory", d.name)
	}
	return store.PutJSON(ctx, d.st, "dead/"+j.ID+".json", j)
}
