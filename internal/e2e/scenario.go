package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// The pieces below are shared by the fault scenarios (faults/ against
// `letterbox dev`, internal/awsstack against the deployed stack's
// stand-in): both route every message to receiver A (route "all") and
// messages with a b-* recipient also to receiver B (route "bees").

// Expect is the scenario routes' meaning, for Check: receiver A under
// route "all" for every message, receiver B under route "bees" when a
// recipient starts with "b-".
func Expect(rcpts []string) map[string]string {
	out := map[string]string{"A": "all"}
	for _, r := range rcpts {
		if strings.HasPrefix(r, "b-") {
			out["B"] = "bees"
		}
	}
	return out
}

// Acknowledged returns the envelope recipients of every message an
// attempt saw answered 250, by message id.
func Acknowledged(attempts []Attempt) map[string][]string {
	acked := map[string][]string{}
	for _, a := range attempts {
		if a.Outcome == Accepted && a.ID != "" {
			acked[a.ID] = a.Rcpts
		}
	}
	return acked
}

// Pending counts the deliveries still missing: for each acknowledged
// message (see Acknowledged), each receiver expect names that has not yet
// answered a request for it with success.
func Pending(acked map[string][]string, receivers map[string]*Receiver, expect Expectation) int {
	got := map[string]bool{}
	for name, r := range receivers {
		for _, q := range r.Requests() {
			if q.Delivered() {
				got[name+" "+q.MessageID] = true
			}
		}
	}
	n := 0
	for id, rcpts := range acked {
		for name := range expect(rcpts) {
			if !got[name+" "+id] {
				n++
			}
		}
	}
	return n
}

// AwaitDelivered polls Pending every 250 ms until nothing is missing, the
// deadline passes, or the count has not moved for quiet; it returns the
// deliveries still missing (0 when all arrived).
func AwaitDelivered(acked map[string][]string, receivers map[string]*Receiver, expect Expectation, deadline time.Time, quiet time.Duration) int {
	last, lastChange := -1, time.Now()
	for {
		missing := Pending(acked, receivers, expect)
		if missing == 0 {
			return 0
		}
		if missing != last {
			last, lastChange = missing, time.Now()
		}
		if time.Now().After(deadline) || time.Since(lastChange) > quiet {
			return missing
		}
		time.Sleep(250 * time.Millisecond) // polling the receivers' logs
	}
}

// Errorer is the part of testing.TB that MustMode reports to.
type Errorer interface {
	Errorf(format string, args ...any)
}

// MustMode switches r to m and reports a failure to t (the test goes on).
func MustMode(t Errorer, r *Receiver, m Mode) {
	if err := r.SetMode(m); err != nil {
		t.Errorf("receiver %s: %v", r.Name, err)
	}
}

// Window returns a random moment in [lo, hi) of stream, lo and hi being
// fractions of it.
func Window(rng *rand.Rand, stream time.Duration, lo, hi float64) time.Duration {
	return time.Duration((lo + rng.Float64()*(hi-lo)) * float64(stream))
}

// Backoff is the scenario senders' wait before retry n (1, 2, ...): 100 ms
// doubling up to 1.6 s, with jitter between half and one and a half times
// that.
func Backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 4)
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// ScheduleReceiverFaults schedules, through at, the scenario's six
// receiver fault windows (fail, hang, refuse on A and B in turn across
// the stream, each 3 to 6 s long and each followed by a return to OK),
// drawing the moments from rng; a mode that cannot be set is reported to
// t.
func ScheduleReceiverFaults(t Errorer, rng *rand.Rand, stream time.Duration, receivers map[string]*Receiver, at func(d time.Duration, name string, do func())) {
	for _, f := range []struct {
		recv string
		mode Mode
		lo   float64
	}{{"A", Fail, 0.05}, {"B", Hang, 0.15}, {"A", Refuse, 0.35}, {"B", Fail, 0.45}, {"A", Hang, 0.6}, {"B", Refuse, 0.7}} {
		r := receivers[f.recv]
		d := Window(rng, stream, f.lo, f.lo+0.15)
		dur := time.Duration(3000+rng.IntN(3000)) * time.Millisecond
		at(d, fmt.Sprintf("receiver %s: %v for %v", f.recv, f.mode, dur), func() { MustMode(t, r, f.mode) })
		at(d+dur, fmt.Sprintf("receiver %s: ok", f.recv), func() { MustMode(t, r, OK) })
	}
}
