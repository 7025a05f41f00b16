// Package localqueue is the delivery queue of `letterbox dev`: SQS's
// semantics (at-least-once, visibility timeout, receive count, batch item
// failures, per-message delay, dead letters) on a local directory, so the
// deliver function runs the same code as on AWS and pending retries survive
// a restart.
//
// A queue is a table in a SQLite database, DIR/queue.db (WAL mode, every
// commit durable; see filestore.OpenSQLite). Receiving a batch is one
// UPDATE that makes its messages invisible and counts the receive, so
// several processes may use one queue: `letterbox replay` sends into the
// queue of a running `letterbox dev`, whose consumers look at the table
// every PollInterval when idle. A consumer loop hands batches to the
// handler as events.SQSEvent and deletes the records the handler did not
// report as failed.
package localqueue

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
)

// Handler consumes batches, as a Lambda function with an SQS event source
// and ReportBatchItemFailures does.
type Handler func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// PollInterval is how often an idle consumer looks for messages sent by
// another process, or made visible by one.
const PollInterval = 100 * time.Millisecond

const schema = `CREATE TABLE IF NOT EXISTS messages (
	id            TEXT PRIMARY KEY,
	body          BLOB NOT NULL,
	sent_at       INTEGER NOT NULL, -- Unix milliseconds
	receive_count INTEGER NOT NULL DEFAULT 0,
	visible_at    INTEGER NOT NULL  -- Unix milliseconds
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages(visible_at);
CREATE TABLE IF NOT EXISTS dead (
	id   TEXT PRIMARY KEY,
	body BLOB NOT NULL
);`

// Queue is a durable local queue.
type Queue struct {
	db   *sql.DB
	name string
	// Visibility is how long a received message stays hidden when the
	// handler neither deletes it nor sets a delay (SQS's visibility timeout).
	Visibility time.Duration
	// BatchSize is the most records per handler call (SQS: up to 10).
	BatchSize int
	Log       *slog.Logger

	wake chan struct{}
}

// Open opens (creating) a queue in dir. Messages left by an earlier run
// are in it: their retries resume.
func Open(ctx context.Context, dir, name string) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fault.Temporary(fmt.Errorf("localqueue: %w", err))
	}
	db, err := filestore.OpenSQLite(filepath.Join(dir, "queue.db"), true)
	if err != nil {
		return nil, fault.Temporary(fmt.Errorf("localqueue: open %s: %w", dir, err))
	}
	// One connection: the queue's statements are short, and within the
	// process they then never wait for each other's locks.
	db.SetMaxOpenConns(1)
	return open(ctx, db, name)
}

// Memory returns a queue kept only in memory, for tests and for events
// that are recovered another way after a restart.
func Memory(name string) *Queue {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		panic(err) // the driver is linked in; opening memory cannot fail
	}
	// One connection: each would have a database of its own.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	q, err := open(context.Background(), db, name)
	if err != nil {
		panic(err)
	}
	return q
}

func open(ctx context.Context, db *sql.DB, name string) (*Queue, error) {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fault.Temporary(fmt.Errorf("localqueue: %s: %w", name, err))
	}
	return &Queue{db: db, name: name, Visibility: 30 * time.Second, BatchSize: 10, Log: slog.Default(),
		wake: make(chan struct{}, 1)}, nil
}

// Close closes the queue's database.
func (q *Queue) Close() error { return q.db.Close() }

// Len returns the number of messages queued or in flight.
func (q *Queue) Len() int {
	var n int
	if err := q.db.QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		q.Log.Warn("localqueue: cannot count messages", "queue", q.name, "err", err)
	}
	return n
}

func (q *Queue) dbErr(op string, err error) error {
	return fault.Temporary(fmt.Errorf("localqueue: %s %s: %w", q.name, op, err))
}

// Send enqueues a message durably, visible after delay. A message whose id
// is already queued is not enqueued twice.
func (q *Queue) Send(ctx context.Context, id string, body []byte, delay time.Duration) error {
	if strings.ContainsAny(id, "/\x00") || id == "" {
		return fault.Permanentf("localqueue: bad message id %q", id)
	}
	now := time.Now()
	_, err := q.db.ExecContext(ctx, `INSERT INTO messages (id, body, sent_at, visible_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		id, body, now.UnixMilli(), now.Add(delay).UnixMilli())
	if err != nil {
		return q.dbErr("send "+id, err)
	}
	q.poke()
	return nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// ChangeVisibility hides a message for d from now, as SQS's
// ChangeMessageVisibility. The receipt handle is the record's.
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, d time.Duration) error {
	id, _, _ := strings.Cut(receipt, "#")
	res, err := q.db.ExecContext(ctx, `UPDATE messages SET visible_at = ? WHERE id = ?`, time.Now().Add(d).UnixMilli(), id)
	if err != nil {
		return q.dbErr("change visibility of "+id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fault.Permanentf("localqueue: receipt handle %q is not in flight", receipt)
	}
	if d <= 0 {
		q.poke()
	}
	return nil
}

// Run consumes the queue with the given number of concurrent batches
// until ctx ends, then waits for the batches in flight.
func (q *Queue) Run(ctx context.Context, workers int, h Handler) {
	var wg sync.WaitGroup
	var failing atomic.Bool
	for range max(workers, 1) {
		wg.Go(func() { q.worker(ctx, h, &failing) })
	}
	wg.Wait()
}

func (q *Queue) worker(ctx context.Context, h Handler, failing *atomic.Bool) {
	for ctx.Err() == nil {
		batch, err := q.receive(ctx)
		if err != nil && ctx.Err() == nil && !failing.Swap(true) {
			q.Log.WarnContext(ctx, "localqueue: receive failed", "queue", q.name, "err", err)
		}
		if len(batch) > 0 {
			failing.Store(false)
			q.process(context.WithoutCancel(ctx), h, batch)
			continue
		}
		t := time.NewTimer(PollInterval)
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// receive takes up to BatchSize visible messages, oldest first, hiding
// them for Visibility and counting the receive, in one statement: two
// consumers (in two processes) never receive one message at once.
func (q *Queue) receive(ctx context.Context) ([]events.SQSMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Not canceled half-way: messages hidden by the UPDATE but never
	// handed to the handler would wait out their visibility timeout.
	ctx = context.WithoutCancel(ctx)
	now := time.Now()
	rows, err := q.db.QueryContext(ctx, `UPDATE messages SET receive_count = receive_count + 1, visible_at = ?
		WHERE id IN (SELECT id FROM messages WHERE visible_at <= ? ORDER BY sent_at, id LIMIT ?)
		RETURNING id, body, sent_at, receive_count`, now.Add(q.Visibility).UnixMilli(), now.UnixMilli(), q.BatchSize)
	if err != nil {
		return nil, q.dbErr("receive", err)
	}
	defer rows.Close()
	type rec struct {
		sent int64
		msg  events.SQSMessage
	}
	var recs []rec
	for rows.Next() {
		var id string
		var body []byte
		var sent int64
		var count int
		if err := rows.Scan(&id, &body, &sent, &count); err != nil {
			return nil, q.dbErr("receive", err)
		}
		recs = append(recs, rec{sent, q.record(id, body, sent, count)})
	}
	if err := rows.Err(); err != nil {
		return nil, q.dbErr("receive", err)
	}
	slices.SortFunc(recs, func(a, b rec) int {
		if a.sent != b.sent {
			return int(a.sent - b.sent)
		}
		return strings.Compare(a.msg.MessageId, b.msg.MessageId)
	})
	batch := make([]events.SQSMessage, len(recs))
	for i, r := range recs {
		batch[i] = r.msg
	}
	return batch, nil
}

func (q *Queue) record(id string, body []byte, sent int64, count int) events.SQSMessage {
	return events.SQSMessage{
		MessageId:     id,
		ReceiptHandle: id + "#" + strconv.Itoa(count),
		Body:          string(body),
		Attributes: map[string]string{
			"ApproximateReceiveCount": strconv.Itoa(count),
			"SentTimestamp":           strconv.FormatInt(sent, 10),
		},
		EventSource:    "aws:sqs",
		EventSourceARN: "arn:aws:sqs:local:000000000000:" + q.name,
		AWSRegion:      "local",
	}
}

func (q *Queue) process(ctx context.Context, h Handler, batch []events.SQSMessage) {
	resp, err := h(ctx, events.SQSEvent{Records: batch})
	if err != nil {
		// A failed invocation retries the whole batch, as Lambda does:
		// each message is visible again once its visibility ends.
		q.Log.ErrorContext(ctx, "localqueue: handler failed; batch will be retried", "queue", q.name, "err", err)
		return
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	var done []any
	for _, r := range batch {
		if !failed[r.MessageId] {
			done = append(done, r.MessageId)
		}
	}
	if len(done) == 0 {
		return
	}
	marks := strings.Repeat(", ?", len(done))[2:]
	if _, err := q.db.ExecContext(ctx, `DELETE FROM messages WHERE id IN (`+marks+`)`, done...); err != nil {
		q.Log.WarnContext(ctx, "localqueue: cannot delete messages; they will be redelivered", "queue", q.name, "ids", done, "err", err)
	}
}

// DeadLetters lists the dead-lettered bodies, in id order.
func (q *Queue) DeadLetters(ctx context.Context) ([][]byte, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT body FROM dead ORDER BY id`)
	if err != nil {
		return nil, q.dbErr("dead letters", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, q.dbErr("dead letters", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, q.dbErr("dead letters", err)
	}
	return out, nil
}

// DeadLetterBody keeps a body as a dead letter under id, for inspection
// and redrive; the handler then reports its message done.
func (q *Queue) DeadLetterBody(ctx context.Context, id string, body []byte) error {
	if _, err := q.db.ExecContext(ctx, `INSERT OR REPLACE INTO dead (id, body) VALUES (?, ?)`, id, body); err != nil {
		return q.dbErr("dead-letter "+id, err)
	}
	return nil
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

// DeadLetter keeps a job for inspection and redrive.
func (d Deliveries) DeadLetter(ctx context.Context, j delivery.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fault.Permanent(err)
	}
	return d.DeadLetterBody(ctx, j.ID, b)
}
