package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Outcome is how one delivery attempt ended, as the sender saw it.
type Outcome string

// Outcomes.
const (
	// Accepted: the final dot was answered 250; the message is the
	// server's responsibility now.
	Accepted Outcome = "accepted"
	// Deferred: a 4xx reply at some stage; the sender retries and the
	// server must keep nothing of this attempt.
	Deferred Outcome = "deferred"
	// Refused: a 5xx reply; the sender gives up.
	Refused Outcome = "refused"
	// Dropped: the connection failed before the final dot was sent;
	// nothing can have been accepted.
	Dropped Outcome = "dropped"
	// Unknown: the connection failed after the final dot was sent and
	// before the reply arrived. The server may have stored the message
	// (RFC 1047's duplicate-message window); the sender retries.
	Unknown Outcome = "unknown"
)

// Attempt records one SMTP transaction attempt: every reply line the server
// sent, how it ended, and a digest of the message bytes sent.
type Attempt struct {
	Sender  int       `json:"sender"`
	Seq     int       `json:"seq"`
	N       int       `json:"attempt"`
	Token   string    `json:"token"`
	Rcpts   []string  `json:"rcpts"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Stage   string    `json:"stage"` // where it ended: connect, greeting, ehlo, mail, rcpt, data, dot, quit
	Outcome Outcome   `json:"outcome"`
	// Code, Enhanced and Text are the last reply's.
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text,omitempty"`
	Err      string `json:"err,omitempty"`
	// ID is the message id from "250 2.0.0 OK: queued as <ID>".
	ID      string   `json:"id,omitempty"`
	Replies []string `json:"replies"`
	// Size and Digest (SHA-256) describe the message bytes sent.
	Size   int      `json:"size"`
	Digest [32]byte `json:"-"`
}

// Message is one message a sender must get accepted. Build returns its
// bytes for an attempt, given the attempt's token; the token must appear in
// the message so a stored copy can be traced to its attempt.
type Message struct {
	Sender int
	Seq    int
	From   string
	To     []string
	Build  func(token string) []byte
}

// MTA sends messages like a real mail transfer agent: one transaction per
// connection, retried with backoff on 4xx replies and connection errors
// until accepted, refused (5xx) or its context ends.
type MTA struct {
	Addr    string
	HELO    string
	Backoff func(attempt int) time.Duration
	Timeout time.Duration // per command; the final dot gets 4×
	Record  func(Attempt) // called after every attempt, from any goroutine
}

// Token names an attempt: "s<sender>-m<seq>-a<n>".
func Token(sender, seq, n int) string { return fmt.Sprintf("s%d-m%d-a%d", sender, seq, n) }

var queuedAs = regexp.MustCompile(`queued as (\S+)`)

// Deliver tries until the message is accepted or refused, or ctx ends. It
// returns every attempt.
func (m *MTA) Deliver(ctx context.Context, msg Message) []Attempt {
	var out []Attempt
	for n := 1; ; n++ {
		a := m.attempt(ctx, msg, n)
		out = append(out, a)
		if m.Record != nil {
			m.Record(a)
		}
		if a.Outcome == Accepted || a.Outcome == Refused {
			return out
		}
		d := 100 * time.Millisecond
		if m.Backoff != nil {
			d = m.Backoff(n)
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(d):
		}
	}
}

func (m *MTA) attempt(ctx context.Context, msg Message, n int) (a Attempt) {
	a = Attempt{Sender: msg.Sender, Seq: msg.Seq, N: n, Token: Token(msg.Sender, msg.Seq, n), Rcpts: msg.To, Start: time.Now()}
	body := msg.Build(a.Token)
	a.Size, a.Digest = len(body), sha256.Sum256(body)
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	defer func() { a.End = time.Now() }()

	a.Stage = "connect"
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		a.Outcome, a.Err = Dropped, err.Error()
		return a
	}
	tap := &replyTap{Conn: conn}
	c := smtp.NewClient(tap)
	c.CommandTimeout, c.SubmissionTimeout = timeout, 4*timeout
	defer func() {
		c.Close()
		a.Replies = tap.lines()
	}()
	// fail classifies an error at the current stage.
	fail := func(err error) Attempt {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			a.Code, a.Text = se.Code, se.Message
			a.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
			switch {
			case se.Code >= 400 && se.Code < 500:
				a.Outcome = Deferred
			case se.Code >= 500:
				a.Outcome = Refused
			default:
				a.Outcome = Dropped
			}
			return a
		}
		a.Err = err.Error()
		a.Outcome = Dropped
		if a.Stage == "dot" {
			a.Outcome = Unknown
		}
		return a
	}
	helo := m.HELO
	if helo == "" {
		helo = "mta.faults.test"
	}
	a.Stage = "ehlo" // go-smtp reads the greeting here too
	if err := c.Hello(helo); err != nil {
		return fail(err)
	}
	a.Stage = "mail"
	if err := c.Mail(msg.From, nil); err != nil {
		return fail(err)
	}
	a.Stage = "rcpt"
	for _, r := range msg.To {
		if err := c.Rcpt(r, nil); err != nil {
			return fail(err)
		}
	}
	a.Stage = "data"
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := w.Write(body); err != nil {
		return fail(err)
	}
	// From here the final dot may have reached the server.
	a.Stage = "dot"
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail(err)
	}
	a.Code, a.Text = 250, resp.StatusText
	if mm := queuedAs.FindStringSubmatch(resp.StatusText); mm != nil {
		a.ID = mm[1]
	}
	a.Outcome = Accepted
	a.Stage = "quit"
	c.Quit()
	return a
}

// replyTap records the lines a server sends.
type replyTap struct {
	net.Conn
	mu      sync.Mutex
	partial []byte
	got     []string
}

func (t *replyTap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.mu.Lock()
		t.partial = append(t.partial, p[:n]...)
		for {
			i := bytes.IndexByte(t.partial, '\n')
			if i < 0 {
				break
			}
			t.got = append(t.got, strings.TrimRight(string(t.partial[:i]), "\r"))
			t.partial = t.partial[i+1:]
		}
		t.mu.Unlock()
	}
	return n, err
}

func (t *replyTap) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.got...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial)+" [incomplete]")
	}
	return out
}

var _ io.Reader = (*replyTap)(nil)
