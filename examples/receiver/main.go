// Command receiver is an example webhook receiver for letterbox: it
// verifies each request's Standard Webhooks signature, de-duplicates on
// webhook-id (deliveries are at-least-once), and prints the message.
//
//	LETTERBOX_WEBHOOK_SECRET=whsec_... go run ./examples/receiver -addr :9000
//
// Point a route's webhook at http://HOST:9000/inbound.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/letterboxmail/letterbox/webhook"
)

// handler verifies, de-duplicates and hands each message to handle.
type handler struct {
	v      *webhook.Verifier
	mu     sync.Mutex
	seen   map[string]bool // use your database in production
	handle func(id string, ev *webhook.Event)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	id, ev, err := h.v.ReadEvent(r)
	if err != nil {
		// 401 is retried by letterbox; a bad signature means a wrong
		// secret, which retrying with the right one will fix.
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	dup := h.seen[id]
	h.seen[id] = true
	h.mu.Unlock()
	if !dup {
		h.handle(id, ev)
	}
	// Any 2xx acknowledges the delivery; answer fast and work later.
	w.WriteHeader(http.StatusNoContent)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	v, err := webhook.NewVerifier(strings.Split(os.Getenv("LETTERBOX_WEBHOOK_SECRET"), ",")...)
	if err != nil {
		log.Fatalf("LETTERBOX_WEBHOOK_SECRET: %v", err)
	}
	h := &handler{v: v, seen: map[string]bool{}, handle: func(id string, ev *webhook.Event) {
		m := ev.Data
		fmt.Printf("%s: message %s from %v: %q, %d attachment(s)\n", id, m.ID, m.From, m.Subject, len(m.Attachments))
	}}
	http.Handle("/inbound", h)
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
