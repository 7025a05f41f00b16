package sqslocal

import (
	"sync"
	"time"
)

// Clock is the time the server keeps: message age (retention, SentTimestamp),
// visibility timeouts, delays and long-poll waits all follow it.
type Clock interface {
	// Now is the current time on this clock.
	Now() time.Time
	// Timer returns a channel that receives once d has passed on this clock,
	// and a function that releases the timer early.
	Timer(d time.Duration) (c <-chan time.Time, stop func())
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Timer wraps time.NewTimer.
func (RealClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// ScaledClock runs factor times faster than the wall clock from the moment
// NewScaledClock was called: with factor 3600 an hour of SQS time (a
// visibility timeout, a retention period) passes in a real second.
type ScaledClock struct {
	factor    float64
	realStart time.Time
}

// NewScaledClock returns a clock that starts at the current wall time and runs
// factor times faster. factor must be positive.
func NewScaledClock(factor float64) *ScaledClock {
	if factor <= 0 {
		panic("sqslocal: NewScaledClock factor must be positive")
	}
	return &ScaledClock{factor: factor, realStart: time.Now()}
}

// Now returns the scaled time.
func (c *ScaledClock) Now() time.Time {
	return c.realStart.Add(time.Duration(float64(time.Since(c.realStart)) * c.factor))
}

// Timer fires after d of scaled time (d/factor of real time).
func (c *ScaledClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(time.Duration(float64(d) / c.factor))
	return t.C, func() { t.Stop() }
}

// FakeClock stands still until Advance or Set moves it; timers whose time has
// come fire then. The zero value is not usable: use NewFakeClock.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Timer fires once the clock has been advanced by d.
func (c *FakeClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t.c, func() {}
	}
	c.timers = append(c.timers, t)
	return t.c, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.remove(t)
	}
}

// Advance moves the clock forward by d and fires the timers that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.set(c.now.Add(d))
	c.mu.Unlock()
}

// Set moves the clock to t (never backwards) and fires the timers that are due.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.set(t)
	}
	c.mu.Unlock()
}

// Timers is the number of timers waiting to fire: a test advances the clock
// once a long poll is known to be waiting on it.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *FakeClock) set(t time.Time) {
	c.now = t
	keep := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(t) {
			tm.c <- t
			continue
		}
		keep = append(keep, tm)
	}
	for i := len(keep); i < len(c.timers); i++ {
		c.timers[i] = nil
	}
	c.timers = keep
}

func (c *FakeClock) remove(t *fakeTimer) {
	for i, tm := range c.timers {
		if tm == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}
