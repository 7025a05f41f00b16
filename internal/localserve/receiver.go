package localserve

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/webhook"
)

// Received is one webhook request the dev receiver accepted.
type Received struct {
	ID    string         `json:"webhook_id"`
	At    time.Time      `json:"received_at"`
	Path  string         `json:"path"`
	Event *webhook.Event `json:"event"`
}

// Receiver is the development webhook receiver served at /dev/webhook/…:
// it verifies each request's signature with the secrets of the routes
// that point at its path, prints a summary, and keeps the latest events
// (GET /dev/webhook/NAME lists them as JSON).
type Receiver struct {
	routes *routing.Live
	out    io.Writer

	mu     sync.Mutex
	events map[string][]Received
}

// keep bounds the events kept per path.
const keep = 100

// NewReceiver returns a receiver printing to out.
func NewReceiver(routes *routing.Live, out io.Writer) *Receiver {
	return &Receiver{routes: routes, out: out, events: map[string][]Received{}}
}

func (rc *Receiver) secretsFor(r *http.Request) []string {
	var out []string
	for _, rt := range rc.routes.Get(r.Context()).Routes {
		for _, a := range rt.Actions {
			if a.Webhook == nil {
				continue
			}
			u, err := url.Parse(a.Webhook.URL)
			if err != nil || u.Path != r.URL.Path {
				continue
			}
			if a.Webhook.Secret != "" {
				out = append(out, a.Webhook.Secret)
			}
			out = append(out, a.Webhook.Secrets...)
		}
	}
	return out
}

// ServeHTTP implements http.Handler.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		rc.mu.Lock()
		evs := append([]Received{}, rc.events[r.URL.Path]...)
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(evs)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	secrets := rc.secretsFor(r)
	if len(secrets) == 0 {
		http.Error(w, "no route with an inline secret points at "+r.URL.Path, http.StatusNotFound)
		fmt.Fprintf(rc.out, "dev receiver: %s: refused: no route with an inline secret points here\n", r.URL.Path)
		return
	}
	v, err := webhook.NewVerifier(secrets...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	id, ev, err := v.ReadEvent(r)
	if err != nil {
		fmt.Fprintf(rc.out, "dev receiver: %s: REFUSED: %v\n", r.URL.Path, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	list := append(rc.events[r.URL.Path], Received{ID: id, At: time.Now().UTC(), Path: r.URL.Path, Event: ev})
	if len(list) > keep {
		list = list[len(list)-keep:]
	}
	rc.events[r.URL.Path] = list
	rc.mu.Unlock()
	rc.print(r.URL.Path, id, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *Receiver) print(path, id string, ev *webhook.Event) {
	m := ev.Data
	if m == nil {
		fmt.Fprintf(rc.out, "dev receiver: %s: signature OK, webhook-id %s, no data\n", path, id)
		return
	}
	from := ""
	if m.From != nil {
		from = m.From.Address
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dev receiver: %s: signature OK, webhook-id %s\n", path, id)
	fmt.Fprintf(&b, "  message %s from %s to %s\n", m.ID, from, strings.Join(m.Envelope.RcptTo, ", "))
	fmt.Fprintf(&b, "  subject: %s\n", m.Subject)
	if t := strings.TrimSpace(m.Text); t != "" {
		if len(t) > 200 {
			t = t[:200] + "…"
		}
		fmt.Fprintf(&b, "  text: %s\n", strings.ReplaceAll(t, "\n", "\n        "))
	}
	for _, a := range m.Attachments {
		fmt.Fprintf(&b, "  attachment: %s (%s, %d bytes)\n", a.Filename, a.ContentType, a.Size)
	}
	if len(m.Warnings) > 0 {
		fmt.Fprintf(&b, "  warnings: %s\n", strings.Join(m.Warnings, "; "))
	}
	io.WriteString(rc.out, b.String())
}

// Events returns the events received at path.
func (rc *Receiver) Events(path string) []Received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Received{}, rc.events[path]...)
}
