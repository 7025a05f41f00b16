package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sent is one message of the load: when it was due, when its transaction
// started, when the 250 arrived and the id it named.
type sent struct {
	due, start, acked time.Time
	id                string
	err               error
}

// load is an open-loop generator: message i is due at start + i/rate,
// whatever happened to earlier ones. A message due while every session is
// busy gets a new session (up to maxSessions), so slow replies never lower
// the offered rate; lateness (start − due) shows when the generator
// itself could not keep up.
type load struct {
	addr        string
	rate        float64
	maxSessions int
	perSession  int // messages per SMTP session before QUIT
	body        func(i int) []byte
	from        string
	rcpt        func(i int) string
	onAck       func(i int, s sent) // called as soon as a 250 arrives

	mu       sync.Mutex
	results  []sent
	sessions int
	peak     int
}

type job struct {
	i   int
	due time.Time
}

var queuedAs = regexp.MustCompile(`queued as (\S+)`)

// run offers n messages at the rate from t0 and returns when every
// transaction ended.
func (l *load) run(ctx context.Context, t0 time.Time, n int) []sent {
	l.results = make([]sent, n)
	work := make(chan job)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		due := t0.Add(time.Duration(float64(i) / l.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				n = i
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		j := job{i, due}
		select {
		case work <- j:
			continue
		default:
		}
		l.mu.Lock()
		spawn := l.sessions < l.maxSessions
		if spawn {
			l.sessions++
			l.peak = max(l.peak, l.sessions)
		}
		l.mu.Unlock()
		if spawn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.worker(j, work)
			}()
		} else {
			work <- j // every session busy and at the cap: wait (counted as lateness)
		}
	}
	close(work)
	wg.Wait()
	return l.results
}

// worker sends its first job and then whatever the dispatcher hands it,
// keeping one SMTP session open across messages.
func (l *load) worker(first job, work <-chan job) {
	defer func() {
		l.mu.Lock()
		l.sessions--
		l.mu.Unlock()
	}()
	var c *smtp.Client
	used := 0
	closeSession := func() {
		if c != nil {
			c.Quit()
			c.Close()
			c = nil
		}
	}
	defer closeSession()
	send := func(j job) {
		s := sent{due: j.due, start: time.Now()}
		if c == nil || used >= l.perSession {
			closeSession()
			conn, err := net.DialTimeout("tcp", l.addr, 10*time.Second)
			if err != nil {
				s.err = err
				l.record(j.i, s)
				return
			}
			c = smtp.NewClient(conn)
			c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 60*time.Second
			if err := c.Hello("load.bench.test"); err != nil {
				s.err = err
				closeSession()
				l.record(j.i, s)
				return
			}
			used = 0
		}
		used++
		id, err := l.transaction(c, j.i)
		if err != nil {
			s.err = err
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				closeSession() // the connection is gone
			} else {
				c.Reset()
			}
		} else {
			s.acked, s.id = time.Now(), id
			if l.onAck != nil {
				l.onAck(j.i, s)
			}
		}
		l.record(j.i, s)
	}
	send(first)
	for j := range work {
		send(j)
	}
}

func (l *load) transaction(c *smtp.Client, i int) (string, error) {
	if err := c.Mail(l.from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(l.rcpt(i), nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(l.body(i)); err != nil {
		w.Close()
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	m := queuedAs.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("250 reply without an id: %q", resp.StatusText)
	}
	return m[1], nil
}

func (l *load) record(i int, s sent) {
	l.mu.Lock()
	l.results[i] = s
	l.mu.Unlock()
}

// peakSessions returns the most sessions open at once.
func (l *load) peakSessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

// openSessions returns the sessions open now.
func (l *load) openSessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions
}
