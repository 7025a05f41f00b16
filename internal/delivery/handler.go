package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

// Handler is the deliver function: it consumes delivery-queue batches
// (events.SQSEvent) and reports the jobs to retry as batch item failures.
// The same handler runs in Lambda and in `letterbox dev`.
type Handler struct {
	Store    store.Store
	Routes   *routing.Live
	Queue    Queue
	Webhooks *Webhooks
	Journal  Journal
	// Forwarder runs forward actions; nil refuses them permanently.
	Forwarder Forwarder
	// Publisher runs the lambda, sqs, sns and eventbridge actions; nil
	// refuses them permanently.
	Publisher Publisher
	Log       *slog.Logger
	// Metrics, when set, counts attempts.
	Metrics *Metrics
	// Parallel bounds the jobs of one batch run at once (default 10).
	Parallel int
	// Retention is how long the queue keeps a job after it was sent
	// (default routing.QueueRetention): a job whose next retry would come
	// later is dead-lettered instead of being deleted by the queue.
	Retention time.Duration
}

// Handle processes one batch. Every goroutine it starts ends before it
// returns.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var (
		mu   sync.Mutex
		resp = events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
		wg   sync.WaitGroup
	)
	par := h.Parallel
	if par <= 0 {
		par = 10
	}
	sem := make(chan struct{}, par)
	ctx, span := startBatch(ctx, ev)
	defer span.End()
	for _, rec := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if !h.process(ctx, rec) {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

// process runs one job; it returns false when the queue must redeliver it.
func (h *Handler) process(ctx context.Context, rec events.SQSMessage) bool {
	var job Job
	if err := json.Unmarshal([]byte(rec.Body), &job); err != nil || job.ID == "" {
		// Not a job: leave it to the queue's redrive policy, which moves
		// it to the dead-letter queue after its receive limit.
		h.Log.ErrorContext(ctx, "delivery queue message is not a job", "sqs_message_id", rec.MessageId, "err", err)
		return false
	}
	log := h.Log.With("message_id", job.MessageID, "route", job.Route, "job_id", job.ID, "action", job.Kind)
	receives, _ := strconv.Atoi(rec.Attributes["ApproximateReceiveCount"])
	receives = max(receives, 1)
	attempt := receives
	ctx, span := startAttempt(ctx, rec, &job, receives)
	defer span.End()

	// The record is read when it may exist: always with a full journal,
	// and from the second attempt or a redrive on with a failures-only one.
	var r *Record
	if h.Journal.Full() || attempt > 1 || job.DeadLetteredAt != nil {
		var err error
		if r, err = h.Journal.Get(ctx, job.MessageID, job.ID); err != nil {
			log.WarnContext(ctx, "cannot read delivery record; will retry", "err", err)
			return false
		}
	}
	if r.Done() {
		redriven := job.DeadLetteredAt != nil && r.Status == StatusFailed
		if !redriven {
			log.InfoContext(ctx, "job already finished; duplicate ignored", "status", r.Status)
			return true
		}
		log.InfoContext(ctx, "redriven dead letter; trying again")
	}
	if job.DeadLetteredAt != nil && r != nil {
		// A dead letter sent back to the queue gets a fresh budget: its
		// attempts count from when it was dead-lettered, not by receives.
		attempt = 1
		for _, a := range r.Attempts {
			if a.At.After(*job.DeadLetteredAt) {
				attempt++
			}
		}
	}
	if r == nil {
		r = &Record{Job: job, Status: StatusPending}
	}

	cfg := h.Routes.Get(ctx)
	retry := routing.DefaultRetry
	start := time.Now()
	// The attempt's deadline: the routes' limit (the deliver function's
	// timeout less a margin), and never later than the margin before the
	// function's own deadline, so that the attempt is always recorded.
	actx, cancel := context.WithTimeout(ctx, h.Routes.Limits().ActionTimeout())
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		var cancel2 context.CancelFunc
		actx, cancel2 = context.WithDeadline(actx, dl.Add(-routing.AttemptMargin))
		defer cancel2()
	}
	var res Result
	route := cfg.Route(job.Route)
	switch {
	case route == nil:
		res.Err = fault.Permanentf("route %q is no longer in %s", job.Route, cfg.File)
	case job.Action >= len(route.Actions):
		res.Err = fault.Permanentf("route %q has no action %d any more", job.Route, job.Action)
	default:
		act := route.Actions[job.Action]
		if act.Retry != nil {
			retry = *act.Retry
		}
		m, err := job.Load(actx, h.Store)
		if err != nil {
			res.Err = fmt.Errorf("load message: %w", err)
		} else {
			res = h.run(actx, &job, m, act)
		}
	}
	latency := time.Since(start)

	a := Attempt{At: start.UTC(), Number: attempt, Status: res.Status, LatencyMS: float64(latency.Microseconds()) / 1000, Response: res.Response}
	redeliver := false
	var delay time.Duration
	var giveUp string // why a job with attempts left is dead-lettered now
	if res.Err != nil && fault.IsTemporary(res.Err) && attempt < retry.Attempts {
		delay = min(max(Backoff(retry, attempt), res.RetryAfter), MaxDelay)
		giveUp = h.queueEnds(rec, receives, delay)
	}
	switch {
	case res.Err == nil:
		a.Outcome, r.Status = StatusDelivered, StatusDelivered
	case fault.IsTemporary(res.Err) && attempt < retry.Attempts && giveUp == "":
		at := time.Now().Add(delay).UTC()
		a.Outcome, a.Error, a.RetryAt, r.Status = "retry", res.Err.Error(), &at, StatusRetrying
		if err := h.Queue.Retry(ctx, rec.ReceiptHandle, delay); err != nil {
			log.WarnContext(ctx, "cannot set retry delay; the queue's default applies", "err", err)
		}
		redeliver = true
	default:
		a.Outcome, a.Error, r.Status = StatusFailed, res.Err.Error(), StatusFailed
		if giveUp != "" {
			a.Error += "; not retried: " + giveUp
		}
	}
	r.Attempts = append(r.Attempts, a)
	endAttempt(span, a, res.Err)
	if h.Journal.Full() || len(r.Attempts) > 1 || r.Status != StatusDelivered {
		if err := h.Journal.Put(ctx, r); err != nil {
			log.ErrorContext(ctx, "cannot write delivery record", "err", err)
			if r.Status == StatusFailed {
				return false // keep the job until its failure is on record
			}
		}
	}
	h.Metrics.observe(ctx, &job, a.Outcome, latency.Seconds())
	attrs := []any{"attempt", attempt, "status", res.Status, "latency_ms", a.LatencyMS, "outcome", a.Outcome}
	switch a.Outcome {
	case StatusDelivered:
		log.InfoContext(ctx, "delivered", attrs...)
	case "retry":
		log.WarnContext(ctx, "delivery failed; will retry", append(attrs, "err", res.Err, "retry_at", a.RetryAt)...)
	default:
		log.ErrorContext(ctx, "delivery failed for good; dead-lettered", append(attrs, "err", res.Err)...)
		now := time.Now().UTC()
		job.DeadLetteredAt = &now
		if err := h.Queue.DeadLetter(ctx, job); err != nil {
			log.ErrorContext(ctx, "cannot dead-letter job; will retry", "err", err)
			return false
		}
	}
	return !redeliver
}

// queueEnds says why the queue would end the job before its next attempt,
// delay from now, or returns "": SQS moves a job to the dead-letter queue
// itself after routing.MaxReceives receives, and deletes it
// routing.QueueRetention after it was sent, both without its record. The
// handler dead-letters it first, with its record.
func (h *Handler) queueEnds(rec events.SQSMessage, receives int, delay time.Duration) string {
	if receives >= routing.MaxReceives {
		return fmt.Sprintf("the delivery queue's receive limit (%d) is reached", routing.MaxReceives)
	}
	ms, err := strconv.ParseInt(rec.Attributes["SentTimestamp"], 10, 64)
	if err != nil {
		return ""
	}
	retention := h.Retention
	if retention <= 0 {
		retention = routing.QueueRetention
	}
	expires := time.UnixMilli(ms).Add(retention)
	// The next attempt must end, and be recorded, before the queue
	// deletes the job.
	if next := time.Now().Add(delay + h.Routes.Limits().ActionTimeout() + routing.AttemptMargin); next.After(expires) {
		return fmt.Sprintf("the next attempt would end after the delivery queue's retention (%s after the job was queued, at %s)",
			retention, expires.UTC().Format(time.RFC3339))
	}
	return ""
}

// Forwarder re-sends a message over SMTP (the forward action). It reads
// the raw message from the store by m.RawKey, so the bytes stay identical.
type Forwarder interface {
	Forward(ctx context.Context, j *Job, m *message.Message, a *routing.ForwardAction, expand func(string) string) Result
}

// Publisher sends the webhook v1 body of a job to an AWS target: a Lambda
// function (asynchronous invocation), an SQS queue, an SNS topic or an
// EventBridge bus.
type Publisher interface {
	Publish(ctx context.Context, j *Job, m *message.Message, a *routing.Action, expand func(string) string) Result
}

// run performs one attempt of an action.
func (h *Handler) run(ctx context.Context, j *Job, m *message.Message, act *routing.Action) (res Result) {
	ctx, span := startAction(ctx, act.Kind(), j)
	defer func() { telemetry.Fail(span, res.Err); span.End() }()
	expand := func(s string) string { return routing.Matched{Captures: j.Captures}.Expand(s) }
	switch act.Kind() {
	case "webhook":
		return h.Webhooks.Post(ctx, j, m, act.Webhook, expand)
	case "forward":
		if h.Forwarder == nil {
			return Result{Err: fault.Permanentf("forward: this deliverer has no SMTP forwarder configured")}
		}
		return h.Forwarder.Forward(ctx, j, m, act.Forward, expand)
	case "lambda", "sqs", "sns", "eventbridge":
		if h.Publisher == nil {
			return Result{Err: fault.Permanentf("%s: this deliverer has no AWS publisher configured", act.Kind())}
		}
		return h.Publisher.Publish(ctx, j, m, act, expand)
	case "quarantine":
		// A copy under quarantine/ with the raw object's metadata
		// (envelope, verdicts); copying again writes the same bytes.
		if err := store.CopyToQuarantine(ctx, h.Store, j.MessageID); err != nil {
			return Result{Err: err}
		}
		return Result{}
	case "store", "drop":
		// The raw message is already stored; these actions only end the
		// message's routing, and are recorded like any other.
		return Result{}
	default:
		return Result{Err: fault.Permanentf("action %s is not supported by this deliverer", act.Kind())}
	}
}
