package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// Mode is how a Receiver answers.
type Mode int

// Receiver modes.
const (
	// OK verifies the signature and answers 204.
	OK Mode = iota
	// Fail answers 503 after verifying.
	Fail
	// Hang reads and verifies the request, then never answers until the
	// client gives up (its timeout) or the mode changes.
	Hang
	// Refuse closes the listener: connections are refused.
	Refuse
)

func (m Mode) String() string {
	switch m {
	case OK:
		return "ok"
	case Fail:
		return "fail-503"
	case Hang:
		return "hang"
	case Refuse:
		return "refuse"
	}
	return "?"
}

// Request is one webhook request a Receiver got.
type Request struct {
	At        time.Time `json:"at"`
	Receiver  string    `json:"receiver"`
	WebhookID string    `json:"webhook_id"`
	MessageID string    `json:"message_id"` // data.id
	Token     string    `json:"token"`      // the sender's attempt token, from the subject
	Mode      string    `json:"mode"`
	// Status is what the receiver answered; 0 when it hung.
	Status int    `json:"status"`
	Err    string `json:"err,omitempty"` // signature or payload error
	// Incomplete: the connection broke before the whole body arrived
	// (the sender crashed mid-request); nothing to verify.
	Incomplete bool `json:"incomplete,omitempty"`
	// Traceparent is the request's W3C trace context header, if any.
	Traceparent string `json:"traceparent,omitempty"`
}

// Delivered reports whether the request counts as a delivery.
func (r Request) Delivered() bool {
	return r.Err == "" && !r.Incomplete && r.Status >= 200 && r.Status < 300
}

var tokenRE = regexp.MustCompile(`s\d+-m\d+-a\d+`)

// Receiver is a webhook receiver on a fixed loopback address that
// verifies Standard Webhooks signatures, logs every request and can be
// switched to fail.
type Receiver struct {
	Name string
	addr string
	v    *webhook.Verifier

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed when the mode changes
	srv     *http.Server
	reqs    []Request
}

// NewReceiver starts a receiver verifying with secret.
func NewReceiver(name, secret string) (*Receiver, error) {
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{Name: name, addr: ln.Addr().String(), v: v, changed: make(chan struct{})}
	r.serve(ln)
	return r, nil
}

// URL returns the receiver's base URL.
func (r *Receiver) URL() string { return "http://" + r.addr }

func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	r.srv = srv
	go srv.Serve(ln)
}

// SetMode switches the receiver. Leaving Refuse listens again on the same
// address.
func (r *Receiver) SetMode(m Mode) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m == r.mode {
		return nil
	}
	old := r.mode
	r.mode = m
	close(r.changed)
	r.changed = make(chan struct{})
	switch {
	case m == Refuse:
		r.srv.Close()
	case old == Refuse:
		var ln net.Listener
		var err error
		// The port was ours a moment ago; a connection in TIME_WAIT does
		// not stop a listener, but retry briefly all the same.
		for i := 0; i < 50; i++ {
			if ln, err = net.Listen("tcp", r.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		r.serve(ln)
	}
	return nil
}

// Mode returns the current mode.
func (r *Receiver) Mode() Mode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// Requests returns a copy of the request log.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Close stops the receiver.
func (r *Receiver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.srv.Close()
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	rec := Request{At: time.Now(), Receiver: r.Name, WebhookID: req.Header.Get(webhook.HeaderID), Traceparent: req.Header.Get("traceparent")}
	body, err := io.ReadAll(io.LimitReader(req.Body, webhook.MaxBodyBytes))
	if err != nil {
		rec.Incomplete, rec.Status = true, http.StatusBadRequest
		r.mu.Lock()
		r.reqs = append(r.reqs, rec)
		r.mu.Unlock()
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	id, ev, err := r.v.ReadEvent(req)
	switch {
	case err != nil:
		rec.Err = err.Error()
	case ev.Data == nil:
		rec.Err = "event without data"
	default:
		rec.WebhookID, rec.MessageID = id, ev.Data.ID
		rec.Token = tokenRE.FindString(ev.Data.Subject)
	}
	r.mu.Lock()
	mode, changed := r.mode, r.changed
	r.mu.Unlock()
	rec.Mode = mode.String()
	switch {
	case rec.Err != "":
		rec.Status = http.StatusUnauthorized
	case mode == Fail:
		rec.Status = http.StatusServiceUnavailable
	case mode == Hang:
		select {
		case <-req.Context().Done():
		case <-changed:
		}
		rec.Status = 0
	default:
		rec.Status = http.StatusNoContent
	}
	if rec.Status != 0 {
		w.WriteHeader(rec.Status)
	} else {
		// Answer nothing: drop the connection.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
			}
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
}
