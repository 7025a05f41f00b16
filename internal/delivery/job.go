// Package delivery runs the actions routes choose — webhook POSTs signed per
// Standard Webhooks, store, drop — at least once, with retries, backoff and
// a dead letter, and keeps an auditable record of every attempt.
//
// A job is one (message, route, action). Its id is stable for that triple and
// is sent as webhook-id on every attempt, so receivers can de-duplicate.
// Status codes follow RFC 9110: 2xx is delivered, 406 and 410 are permanent
// failures, everything else (other 4xx, 5xx, timeouts, connection errors) is
// retried, honouring Retry-After (RFC 9110 §10.2.3).
package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Job is one action to run for one message. It is the body of a delivery
// queue message.
type Job struct {
	ID         string            `json:"id"`
	MessageID  string            `json:"message_id"`
	Route      string            `json:"route"`
	Action     int               `json:"action"`
	Kind       string            `json:"kind"`
	Recipients []string          `json:"recipients"`
	Captures   map[string]string `json:"captures,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	// Message is the parsed message, carried in the job when it fits in a
	// queue message; otherwise MessageKey names it in the store.
	Message    *message.Message `json:"message,omitempty"`
	MessageKey string           `json:"message_key,omitempty"`
	// Replay is set on jobs created by `letterbox replay`.
	Replay string `json:"replay,omitempty"`
	// DeadLetteredAt is set when the job went to the dead-letter queue; a
	// job carrying it was redriven and gets a fresh retry budget.
	DeadLetteredAt *time.Time `json:"dead_lettered_at,omitempty"`
	// Traceparent is the W3C traceparent of the job's delivery.job span
	// (package telemetry), when ingest traced: every attempt continues
	// the message's trace from it. On SQS it is also a message attribute.
	Traceparent string `json:"traceparent,omitempty"`
}

// JobID returns the stable id of a message's route action.
func JobID(messageID, route string, action int) string {
	return fmt.Sprintf("%s.%s.%d", messageID, route, action)
}

// MaxQueueMessage is SQS's limit on one message body and on the bodies of
// one SendMessageBatch together: 1 MiB, 1,048,576 bytes (SQS API Reference,
// SendMessage and SendMessageBatch; raised from 256 KiB in 2025). The
// delivery queue's MaximumMessageSize in template.yaml is the same.
const MaxQueueMessage = 1 << 20

// MaxQueueBody is the largest job body carried inline: SQS's limit less a
// margin for message attributes.
const MaxQueueBody = MaxQueueMessage - 16<<10

// Prices that decide whether a parsed message travels inside its jobs or
// in parsed/<id>.json, in US dollars per million requests (us-east-1,
// docs/deploy.md's cost table): SQS bills each 64 KiB chunk of a payload
// as one request, S3 bills a PUT and a GET.
const (
	queueChunk       = 64 << 10
	priceSQSRequest  = 0.40
	priceS3PUT       = 5.00
	priceS3GET       = 0.40
	spilledJobChunks = 1 // a job without its message: about 1 KiB
)

// CarryInline reports whether n jobs of size bytes each should carry the
// parsed message themselves (cheaper) rather than name parsed/<id>.json
// (stored says whether that object is written anyway, KeepParsed). Inline,
// each job's chunks are billed twice (sent, received); moved out, the
// message costs one PUT (unless stored anyway), each job one GET, and each
// small job a chunk sent and received. The arithmetic is in docs/deploy.md
// ("Large parsed messages"); size must also be at most MaxQueueBody.
func CarryInline(size, n int, stored bool) bool {
	if size > MaxQueueBody {
		return false
	}
	if n < 1 {
		n = 1
	}
	chunks := (size + queueChunk - 1) / queueChunk
	inline := float64(n*2*chunks) * priceSQSRequest
	out := float64(n) * (priceS3GET + 2*spilledJobChunks*priceSQSRequest)
	if !stored {
		out += priceS3PUT
	}
	return inline <= out
}

// Load returns the job's parsed message, from the job or the store.
func (j *Job) Load(ctx context.Context, st store.Store) (*message.Message, error) {
	if j.Message != nil {
		return j.Message, nil
	}
	var m message.Message
	if err := store.GetJSON(ctx, st, j.MessageKey, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Queue is the delivery queue: SQS on AWS, localqueue in `letterbox dev`.
type Queue interface {
	// Send enqueues jobs durably.
	Send(ctx context.Context, jobs []Job) error
	// Retry makes a received job visible again after delay (SQS:
	// ChangeMessageVisibility); the handler then reports it as failed.
	Retry(ctx context.Context, receiptHandle string, delay time.Duration) error
	// DeadLetter keeps a job that will not be tried again, for redrive.
	DeadLetter(ctx context.Context, job Job) error
}

// Outcome of a job.
const (
	StatusPending   = "pending"
	StatusRetrying  = "retrying"
	StatusDelivered = "delivered"
	StatusFailed    = "failed" // dead-lettered
)

// Attempt is one try at a job.
type Attempt struct {
	At        time.Time `json:"at"`
	Number    int       `json:"number"`
	Status    int       `json:"status,omitempty"` // HTTP status or SMTP code
	Error     string    `json:"error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	// Response is the start of the receiver's answer to a webhook
	// (delivery.ResponseExcerptBytes at most), as the receiver sent it.
	Response string `json:"response,omitempty"`
	// Outcome: delivered, retry or failed.
	Outcome string     `json:"outcome"`
	RetryAt *time.Time `json:"retry_at,omitempty"`
}

// Record is a job's audit trail, kept under deliveries/<message>/<job>.json.
type Record struct {
	Job       Job       `json:"job"`
	Status    string    `json:"status"`
	Attempts  []Attempt `json:"attempts"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Journal modes.
const (
	// JournalAll records every attempt of every job: the full audit trail,
	// one store write per attempt. The default, and what `letterbox dev`
	// uses.
	JournalAll = "all"
	// JournalFailures records only jobs that needed more than one attempt
	// or failed, and skips the record read on first attempts, so the
	// common path costs no store request at all (the cost target of the
	// AWS deployment). Successes on the first attempt are in the logs.
	JournalFailures = "failures"
)

// Journal keeps delivery records in the store.
type Journal struct {
	Store store.Store
	// Mode is JournalAll (default) or JournalFailures.
	Mode string
}

// Full reports whether every attempt is recorded.
func (jl Journal) Full() bool { return jl.Mode != JournalFailures }

// Get returns a job's record, or nil when it has none yet.
func (jl Journal) Get(ctx context.Context, messageID, jobID string) (*Record, error) {
	var r Record
	err := store.GetJSON(ctx, jl.Store, store.DeliveryKey(messageID, jobID), &r)
	if store.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Put writes a job's record. The record never holds the message itself.
func (jl Journal) Put(ctx context.Context, r *Record) error {
	r.Job.Message = nil
	r.UpdatedAt = time.Now().UTC()
	return store.PutJSON(ctx, jl.Store, store.DeliveryKey(r.Job.MessageID, r.Job.ID), r)
}

// List returns every record of a message, in job id order.
func (jl Journal) List(ctx context.Context, messageID string) ([]Record, error) {
	var keys []string
	err := jl.Store.List(ctx, store.DeliveriesPrefix+messageID+"/", "", func(o store.Object) bool {
		keys = append(keys, o.Key)
		return true
	})
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		var r Record
		if err := store.GetJSON(ctx, jl.Store, k, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Done reports whether a job already reached a final status.
func (r *Record) Done() bool {
	return r != nil && (r.Status == StatusDelivered || r.Status == StatusFailed)
}
