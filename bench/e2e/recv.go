package main

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// receiver is the webhook target: it notes when each message's first
// request arrived, verifies the signature and answers 204.
type receiver struct {
	v   *webhook.Verifier
	srv *http.Server
	url string

	mu       sync.Mutex
	first    map[string]time.Time
	requests int
	bad      int
}

func newReceiver(secret string) (*receiver, error) {
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{v: v, url: "http://" + ln.Addr().String() + "/hook", first: map[string]time.Time{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	_, ev, err := r.v.ReadEvent(req)
	r.mu.Lock()
	r.requests++
	if err != nil || ev.Data == nil {
		r.bad++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if _, ok := r.first[ev.Data.ID]; !ok {
		r.first[ev.Data.ID] = at
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// got returns when id first arrived.
func (r *receiver) got(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[id]
	return t, ok
}

// count returns the number of distinct messages received.
func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.first)
}

func (r *receiver) close() { r.srv.Close() }
