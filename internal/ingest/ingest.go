// Package ingest is the parse-and-route stage: for each stored raw message
// it parses the message, evaluates the routes and enqueues one delivery job
// per matching action.
//
// It consumes standard S3 event notifications (events.S3Event), directly or
// wrapped in SQS (events.SQSEvent, the S3 → SQS → function path), so the
// same handler runs in Lambda and in `letterbox dev`, where the file store
// emits the same records. Processing is idempotent: job ids are stable, and
// jobs already finished are not enqueued again when a storage event is
// delivered twice.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

// Handler is the ingest function.
type Handler struct {
	Store   store.Store
	Routes  *routing.Live
	Queue   delivery.Queue
	Journal delivery.Journal
	Auth    *mailauth.Checker // nil: no SPF/DKIM/DMARC/ARC checks
	Log     *slog.Logger
	// KeepParsed writes parsed/<id>.json for every message; otherwise only
	// when the parsed message is too large to travel inside a job.
	KeepParsed bool
	// KeyPrefix is the store's prefix in the bucket ("PREFIX/" for
	// s3://BUCKET/PREFIX): S3 events name full keys, the store does not.
	KeyPrefix string
	// MaxBodyBytes is the parser's body limit (parser.Options.MaxBodyBytes):
	// larger text parts are stored like attachments; zero is the default.
	MaxBodyBytes int
	Now          func() time.Time
	// DeadLetter sends a raw-queue message that failed for good to the raw
	// dead-letter queue at once, so SQS does not retry what cannot succeed.
	// Nil leaves it to the queue's redrive policy (a batch item failure).
	DeadLetter func(ctx context.Context, rec events.SQSMessage) error
	// Metrics, when set, writes CloudWatch Embedded Metric Format lines
	// (messages ingested, parse warnings, jobs enqueued).
	Metrics *Metrics
}

// Handle accepts an S3 event, an SQS event wrapping S3 events, or an S3
// test event, as Lambda delivers them. For SQS it returns the batch item
// failures so only failed records are retried.
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
		Event string `json:"Event"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("ingest: event is not JSON: %w", err)
	}
	if probe.Event == "s3:TestEvent" {
		return nil, nil
	}
	if len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:sqs" {
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("ingest: bad SQS event: %w", err)
		}
		return h.HandleSQS(ctx, ev)
	}
	var ev events.S3Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("ingest: bad S3 event: %w", err)
	}
	return nil, h.HandleS3(ctx, ev)
}

// HandleSQS processes S3 notifications delivered through SQS. Only
// temporary failures become batch item failures, for SQS to retry; a
// permanent one is recorded (see Process) and dead-lettered at once.
func (h *Handler) HandleSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, rec := range ev.Records {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s3ev events.S3Event
			var probe struct {
				Event string `json:"Event"`
			}
			err := json.Unmarshal([]byte(rec.Body), &s3ev)
			if err == nil && len(s3ev.Records) == 0 {
				if json.Unmarshal([]byte(rec.Body), &probe) == nil && probe.Event == "s3:TestEvent" {
					return
				}
				err = errors.New("no S3 records")
			}
			if err == nil {
				err = h.HandleS3(ctx, s3ev)
			} else {
				h.Log.ErrorContext(ctx, "raw queue message is not an S3 event", "sqs_message_id", rec.MessageId, "err", err)
				err = fault.Permanent(err)
			}
			if err != nil && !fault.IsTemporary(err) {
				err = h.deadLetter(ctx, rec, err)
			}
			if err != nil {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

// deadLetter sends a queue message that failed permanently with cause to
// the dead-letter queue. It returns nil when the message is there, and a
// temporary error when it must stay in the queue.
func (h *Handler) deadLetter(ctx context.Context, rec events.SQSMessage, cause error) error {
	if h.DeadLetter == nil {
		h.Log.ErrorContext(ctx, "permanent failure; no dead-letter queue configured, left to the queue's redrive policy",
			"sqs_message_id", rec.MessageId, "err", cause)
		return cause
	}
	if err := h.DeadLetter(ctx, rec); err != nil {
		h.Log.ErrorContext(ctx, "cannot dead-letter a permanent failure; it stays in the queue",
			"sqs_message_id", rec.MessageId, "err", err, "cause", cause)
		return fault.Temporary(fmt.Errorf("dead-letter: %w (after %w)", err, cause))
	}
	h.Log.WarnContext(ctx, "permanent failure dead-lettered", "sqs_message_id", rec.MessageId, "err", cause)
	return nil
}

// HandleS3 processes every raw-message record of an S3 event.
func (h *Handler) HandleS3(ctx context.Context, ev events.S3Event) error {
	var errs []error
	for _, rec := range ev.Records {
		key := rec.S3.Object.URLDecodedKey
		if key == "" {
			key = rec.S3.Object.Key
		}
		key = strings.TrimPrefix(key, h.KeyPrefix)
		if _, ok := store.IDFromRawKey(key); !ok {
			h.Log.DebugContext(ctx, "ignoring object outside raw/", "key", key)
			continue
		}
		if strings.HasSuffix(key, sesSetupNotification) {
			// SES writes this object when a receipt rule's S3 action is
			// created; it is not mail.
			h.Log.InfoContext(ctx, "ignoring SES setup notification", "key", key)
			continue
		}
		if err := h.Process(withEventTime(ctx, rec.EventTime), key); err != nil {
			errs = append(errs, err)
		}
	}
	// The event is permanently failed only when every record is: one
	// temporary failure keeps it for a retry.
	for _, err := range errs {
		if fault.IsTemporary(err) {
			return fault.Temporary(errors.Join(errs...))
		}
	}
	return errors.Join(errs...)
}

// sesSetupNotification is the object SES writes to test an S3 action.
const sesSetupNotification = "/AMAZON_SES_SETUP_NOTIFICATION"

// Process parses, routes and enqueues one stored raw message. A permanent
// failure is recorded under the message's delivery records (job id
// <id>.ingest, status failed, the error), where `letterbox deliveries`
// shows it.
func (h *Handler) Process(ctx context.Context, key string) error {
	id, ok := store.IDFromRawKey(key)
	if !ok {
		return fault.Permanentf("ingest: %s is not a raw message key", key)
	}
	log := h.Log.With("message_id", id, "key", key)
	start := time.Now()
	rc, obj, err := h.Store.Get(ctx, key)
	ctx, span := startIngest(ctx, id, key, obj, start)
	defer span.End()
	var m *message.Message
	var v *store.Verdicts
	if err == nil {
		m, v, err = h.parseObject(ctx, key, rc, obj)
	}
	if err != nil {
		telemetry.Fail(span, err)
		log.ErrorContext(ctx, "cannot read message", "err", err, "temporary", fault.IsTemporary(err))
		return h.recordFailure(ctx, id, err)
	}
	if v != nil && v.Disposition != "" && v.Disposition != store.DispositionAccept {
		// Refused or quarantined during the SMTP session: a copy is under
		// quarantine/, and this one expires with raw/.
		log.InfoContext(ctx, "message quarantined by the gateway; not routed", "disposition", v.Disposition, "rule", v.Rule)
		return nil
	}
	jobs, err := h.Route(ctx, m, RouteOptions{})
	if err != nil {
		telemetry.Fail(span, err)
		log.ErrorContext(ctx, "cannot enqueue deliveries", "err", err, "temporary", fault.IsTemporary(err))
		return h.recordFailure(ctx, id, err)
	}
	span.SetAttributes(attribute.Int(telemetry.AttrJobs, len(jobs)), attribute.Int(telemetry.AttrWarnings, len(m.Warnings)), attribute.Int64(telemetry.AttrSize, m.Size))
	h.Metrics.ingested(ctx, m, jobs)
	log.InfoContext(ctx, "message routed", "routes", routeNames(jobs), "jobs", len(jobs),
		"size", m.Size, "warnings", len(m.Warnings), "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// IngestJobID is the id of the record a permanent ingest failure leaves
// under deliveries/<id>/.
func IngestJobID(messageID string) string { return messageID + ".ingest" }

// recordFailure records a permanent failure of message id and returns err;
// a temporary err is returned as it is, and a failure to record makes the
// whole a temporary error (the message is tried again, not lost).
func (h *Handler) recordFailure(ctx context.Context, id string, err error) error {
	if fault.IsTemporary(err) {
		return err
	}
	jl := h.Journal
	if jl.Store == nil {
		jl.Store = h.Store
	}
	now := time.Now().UTC()
	if h.Now != nil {
		now = h.Now().UTC()
	}
	r := &delivery.Record{
		Job:      delivery.Job{ID: IngestJobID(id), MessageID: id, Kind: "ingest", CreatedAt: now},
		Status:   delivery.StatusFailed,
		Attempts: []delivery.Attempt{{At: now, Number: 1, Error: err.Error(), Outcome: delivery.StatusFailed}},
	}
	if perr := jl.Put(ctx, r); perr != nil {
		h.Log.ErrorContext(ctx, "cannot record a permanent ingest failure", "message_id", id, "err", perr)
		return fault.Temporary(fmt.Errorf("record failure: %w (after %w)", perr, err))
	}
	return err
}

// Parse reads a raw message with its envelope and parses it, keeping the
// parsed JSON in the store when configured to.
func (h *Handler) Parse(ctx context.Context, key string) (*message.Message, error) {
	rc, obj, err := h.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	m, _, err := h.parseObject(ctx, key, rc, obj)
	return m, err
}

// parseObject parses an opened raw object, and closes it. It also returns
// the gateway's verdicts (nil when neither a scanner nor the policy hook
// looked at the message); they go to the message's spam and virus fields,
// and a message from SES receiving gets SES's own (verdicts.go).
func (h *Handler) parseObject(ctx context.Context, key string, rc io.ReadCloser, obj store.Object) (_ *message.Message, _ *store.Verdicts, err error) {
	defer rc.Close()
	id, _ := store.IDFromRawKey(key)
	ctx, span := tracer.Start(ctx, "ingest.parse", trace.WithAttributes(telemetry.MessageID(id)))
	defer func() { telemetry.Fail(span, err); span.End() }()
	env, err := store.Envelope(ctx, h.Store, obj)
	if err != nil {
		return nil, nil, err
	}
	v, err := store.ReadVerdicts(ctx, h.Store, obj)
	if err != nil {
		return nil, nil, err
	}
	m, err := parser.Parse(ctx, rc, parser.Options{ID: id, RawKey: key, Envelope: env, Store: h.Store, Auth: h.Auth, Now: h.Now, MaxBodyBytes: h.MaxBodyBytes})
	if err != nil {
		return nil, nil, err
	}
	ApplyVerdicts(m, v)
	if h.KeepParsed {
		if err := store.PutJSON(ctx, h.Store, store.ParsedKey(id), m); err != nil {
			return nil, nil, err
		}
	}
	return m, v, nil
}

// RouteOptions modify Route for `letterbox replay`.
type RouteOptions struct {
	// Replay marks the jobs as a replay and gives them ids of their own
	// (<job id>.replay-<Replay>), so receivers do not discard them as
	// duplicates of the original deliveries.
	Replay string
	// Only limits routing to the named route.
	Only string
	// DryRun computes the jobs without enqueueing them.
	DryRun bool
}

// Route evaluates the routes for a parsed message and enqueues the jobs not
// already finished.
func (h *Handler) Route(ctx context.Context, m *message.Message, opt RouteOptions) (_ []delivery.Job, err error) {
	ctx, span := tracer.Start(ctx, "ingest.route", trace.WithAttributes(telemetry.MessageID(m.ID)))
	defer func() { telemetry.Fail(span, err); span.End() }()
	cfg := h.Routes.Get(ctx)
	matches := cfg.Evaluate(ctx, m)
	replay := opt.Replay
	now := time.Now().UTC()
	if h.Now != nil {
		now = h.Now().UTC()
	}
	var jobs []delivery.Job
	for _, mt := range matches {
		if opt.Only != "" && mt.Route.Name != opt.Only {
			continue
		}
		for i, a := range mt.Route.Actions {
			j := delivery.Job{
				ID: delivery.JobID(m.ID, mt.Route.Name, i), MessageID: m.ID, Route: mt.Route.Name, Action: i, Kind: a.Kind(),
				Recipients: mt.Recipients, Captures: mt.Captures, CreatedAt: now, Message: m, Replay: replay,
			}
			if replay != "" {
				j.ID += ".replay-" + replay
			}
			if len(j.Captures) == 0 {
				j.Captures = nil
			}
			jobs = append(jobs, j)
		}
	}
	if len(jobs) == 0 {
		h.Log.WarnContext(ctx, "no route matched; message kept in the store only", "message_id", m.ID, "recipients", m.Envelope.RcptTo)
		return nil, nil
	}
	if opt.DryRun {
		return jobs, nil
	}
	if err := h.fitJobs(ctx, m, jobs); err != nil {
		return nil, err
	}
	pending := jobs[:0:0]
	for _, j := range jobs {
		r, err := h.Journal.Get(ctx, j.MessageID, j.ID)
		if err != nil {
			return nil, err
		}
		if r.Done() {
			h.Log.InfoContext(ctx, "job already finished; not enqueued again", "message_id", m.ID, "job_id", j.ID, "status", r.Status)
			continue
		}
		pending = append(pending, j)
	}
	if len(pending) == 0 {
		return jobs, nil
	}
	end := traceJobs(ctx, pending)
	err = h.Queue.Send(ctx, pending)
	end(err)
	return jobs, err
}

// fitJobs moves the parsed message out of the jobs into parsed/<id>.json
// when a job would not fit in a queue message, or when carrying it in every
// job costs more than storing it once (delivery.CarryInline).
func (h *Handler) fitJobs(ctx context.Context, m *message.Message, jobs []delivery.Job) error {
	size := 0
	for i := range jobs {
		b, err := json.Marshal(jobs[i])
		if err != nil {
			return fault.Permanent(err)
		}
		size = max(size, len(b))
	}
	if delivery.CarryInline(size, len(jobs), h.KeepParsed) {
		return nil
	}
	key := store.ParsedKey(m.ID)
	if !h.KeepParsed {
		if _, err := h.Store.Put(ctx, key, bytes.NewReader(mustJSON(m)), map[string]string{"content-type": "application/json"}); err != nil {
			return err
		}
	}
	for i := range jobs {
		jobs[i].Message, jobs[i].MessageKey = nil, key
	}
	return nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func routeNames(jobs []delivery.Job) []string {
	var out []string
	seen := map[string]bool{}
	for _, j := range jobs {
		if !seen[j.Route] {
			seen[j.Route] = true
			out = append(out, j.Route)
		}
	}
	return out
}
