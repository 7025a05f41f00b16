package delivery

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// MaxDelay is the longest a job can wait between attempts (see
// routing.MaxRetryDelay: SQS's 12-hour visibility maximum, less the
// attempt).
const MaxDelay = routing.MaxRetryDelay

// Backoff returns the wait before attempt n+1 after attempt n failed:
// exponential from Initial, capped at Max, with "equal jitter" (half fixed,
// half random) so retries from many jobs spread out.
func Backoff(r routing.Retry, n int) time.Duration {
	d := r.Delay(n)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// RetryAfter parses a Retry-After header: seconds or an HTTP date.
func RetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, MaxDelay)
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), MaxDelay)
	}
	return 0
}

// ScheduleSpan returns the least total wait a retry schedule gives a job,
// for documentation and checks.
func ScheduleSpan(r routing.Retry) time.Duration {
	var total time.Duration
	d := time.Duration(r.Initial)
	for i := 1; i < r.Attempts; i++ {
		total += min(d, time.Duration(r.Max), MaxDelay) / 2
		if d < time.Duration(r.Max) {
			d *= 2
		}
	}
	return total
}
