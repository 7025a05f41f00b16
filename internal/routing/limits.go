package routing

import "time"

// The delivery queue's limits, in one place. The deliver function retries a
// job by hiding it in the queue (SQS ChangeMessageVisibility), so a retry
// schedule must fit in what the queue allows, or the queue ends the job
// before its schedule does. A routes file whose schedule does not fit is
// refused when it loads; template.yaml's DeliveryQueue is checked against
// these values by the infra tests (infra/template_test.go).
const (
	// MaxAttempts is the most attempts a retry schedule may ask for.
	MaxAttempts = 50
	// MaxReceives is the delivery queue's maxReceiveCount: SQS moves a
	// job to the dead-letter queue on the receive after this many. Every
	// receive is an attempt, so a job ends its schedule (and is
	// dead-lettered with its record) at MaxAttempts receives at the
	// latest; the margin above covers a dead-letter that could not be
	// sent, which is tried again on the next receive. A job received for
	// the MaxReceives-th time (a redriven one, whose attempts restart) is
	// dead-lettered by the deliver function rather than retried.
	MaxReceives = MaxAttempts + 5
	// QueueRetention is the delivery queue's MessageRetentionPeriod: SQS
	// deletes a job this long after it was sent, whatever its state. It is
	// below SQS's 14-day maximum, which the dead-letter queue keeps, so
	// that a job SQS moves there itself (keeping its enqueue time) still
	// has 4 days there.
	QueueRetention = 10 * 24 * time.Hour
	// MaxRetryWindow is the longest a retry schedule may last, counting
	// every wait at its longest (full jitter) and every attempt at its
	// deadline. The rest of QueueRetention is room for Retry-After answers
	// that stretch a schedule; a job whose next retry would pass
	// QueueRetention is dead-lettered instead (the deliver function knows
	// when the job was sent).
	MaxRetryWindow = 7 * 24 * time.Hour
	// MaxRetryDelay is the longest wait between two attempts. SQS allows a
	// received message at most 12 hours of visibility counted from its
	// receipt, attempt included, and refuses a longer change (SQS API
	// reference, ChangeMessageVisibility); an hour is kept for the attempt.
	MaxRetryDelay = 11 * time.Hour
	// VisibilityMax is SQS's 12-hour visibility maximum.
	VisibilityMax = 12 * time.Hour

	// DefaultDeliverTimeout is the deliver function's timeout in
	// template.yaml (and the bound `letterbox dev` and `routes check` use).
	DefaultDeliverTimeout = 120 * time.Second
	// AttemptMargin is kept from the deliver function's timeout after an
	// attempt's deadline, to write the job's record and requeue or
	// dead-letter it.
	AttemptMargin = 15 * time.Second
)

// Limits are what the place loading a routes file can honour, beyond the
// queue's (the constants above). The zero value is the deployed stack's
// defaults with forwarding allowed.
type Limits struct {
	// DeliverTimeout is the deliver function's timeout (its Lambda
	// Timeout); 0 means DefaultDeliverTimeout. An action's timeout may be
	// at most this minus AttemptMargin.
	DeliverTimeout time.Duration
	// NoForward, when set, says why forward actions cannot run where the
	// file is loaded (e.g. "forwarding is not configured: set the stack's
	// ForwardSrsDomain parameter"); a file with one is then refused.
	NoForward string
	// NoARC, when set, says why a forward action's arc_seal cannot be
	// honoured where the file is loaded (no ARC key); a file asking for
	// it is then refused. Only the deliver function and `letterbox dev`
	// know whether there is a key, so only they set it.
	NoARC string
}

// ActionTimeout is the longest deadline an attempt may have.
func (l Limits) ActionTimeout() time.Duration {
	d := l.DeliverTimeout
	if d <= 0 {
		d = DefaultDeliverTimeout
	}
	return d - AttemptMargin
}

// Window returns the longest a retry schedule can last: every wait at its
// longest (the full backoff, before jitter takes up to half of it away)
// and every attempt at the given deadline.
func (r Retry) Window(attempt time.Duration) time.Duration {
	total := time.Duration(r.Attempts) * attempt
	d := time.Duration(r.Initial)
	for i := 1; i < r.Attempts; i++ {
		total += min(d, time.Duration(r.Max), MaxRetryDelay)
		if d < time.Duration(r.Max) {
			d *= 2
		}
	}
	return total
}

// Delay returns the wait before attempt n+1 after attempt n failed, before
// jitter: exponential from Initial, capped at Max and MaxRetryDelay.
func (r Retry) Delay(n int) time.Duration {
	d := time.Duration(r.Initial)
	for i := 1; i < n && d < time.Duration(r.Max); i++ {
		d *= 2
	}
	return min(d, time.Duration(r.Max), MaxRetryDelay)
}

// check refuses a schedule the delivery queue cannot honour.
func (r Retry) check(fail func(int, string, string, ...any), line int, p string, attempt time.Duration) {
	if r.Attempts > MaxAttempts {
		fail(line, p+".attempts", "%d is more than the delivery queue allows (at most %d attempts)", r.Attempts, MaxAttempts)
		return
	}
	if w := r.Window(attempt); w > MaxRetryWindow {
		fail(line, p, "the schedule may last %s, longer than the delivery queue keeps a job for retries (%s): use fewer attempts or a shorter max", w.Round(time.Minute), MaxRetryWindow)
	}
}

// checkTimeout refuses an action timeout above the attempt deadline.
func (l Limits) checkTimeout(fail func(int, string, string, ...any), line int, field string, d Duration) {
	if max := l.ActionTimeout(); time.Duration(d) > max {
		fail(line, field, "%s is longer than an attempt may last here (at most %s: the deliver function's timeout, %s, less %s to record the attempt)",
			time.Duration(d), max, max+AttemptMargin, AttemptMargin)
	}
}
