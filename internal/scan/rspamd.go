package scan

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/letterboxmail/letterbox/message"
)

// DefaultRspamdMaxBytes is rspamd's own default max_message (50 MiB).
const DefaultRspamdMaxBytes = 50 << 20

// Rspamd asks rspamd's normal worker (default port 11333) over its HTTP
// protocol: POST /checkv2 with the message as the body (chunked) and the
// envelope in the From, Rcpt (one per recipient), IP, Helo, Queue-Id and
// User headers.
type Rspamd struct {
	// URL is the worker's base URL, e.g. http://127.0.0.1:11333.
	URL string
	// Client defaults to http.DefaultClient (NewRspamd gives one that
	// keeps more idle connections); the context bounds each request.
	Client *http.Client
	// MaxBytes is the largest message sent (DefaultRspamdMaxBytes when
	// zero); a larger one is not scanned (ErrTooLarge). Keep it at or
	// below rspamd's max_message.
	MaxBytes int64
}

// NewRspamd checks the URL.
func NewRspamd(raw string) (*Rspamd, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rspamd %q: want an http or https URL such as http://127.0.0.1:11333", raw)
	}
	// Connections are kept for the sessions in DATA at once (net/http
	// keeps two per host by default, so most requests would dial).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &Rspamd{URL: strings.TrimSuffix(u.String(), "/"), Client: &http.Client{Transport: tr}}, nil
}

// rspamdReply is the part of /checkv2's answer we keep.
type rspamdReply struct {
	Score         float64 `json:"score"`
	RequiredScore float64 `json:"required_score"`
	Action        string  `json:"action"`
	Symbols       map[string]struct {
		Name  string  `json:"name"`
		Score float64 `json:"score"`
	} `json:"symbols"`
	Error string `json:"error"`
}

// CheckSpam implements SpamScanner.
func (r *Rspamd) CheckSpam(ctx context.Context, env Envelope, body io.Reader) (*message.Spam, error) {
	max := r.MaxBytes
	if max <= 0 {
		max = DefaultRspamdMaxBytes
	}
	lim := &limitReader{r: body, n: max}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/checkv2", lim)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1 // chunked: the size is not known yet
	h := req.Header
	h.Set("Content-Type", "message/rfc822")
	setHeader(h, "From", env.From)
	for _, rc := range env.Rcpts {
		if clean(rc) != "" {
			h.Add("Rcpt", clean(rc))
		}
	}
	setHeader(h, "IP", env.IP)
	setHeader(h, "Helo", env.Helo)
	setHeader(h, "Queue-Id", env.QueueID)
	setHeader(h, "User", env.User)
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if lim.over.Load() {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("rspamd: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("rspamd: read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rspamd: %s: %s", resp.Status, firstLine(b))
	}
	var rep rspamdReply
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("rspamd: reply is not JSON: %w", err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("rspamd: %s", rep.Error)
	}
	if rep.Action == "" {
		return nil, fmt.Errorf("rspamd: reply has no action")
	}
	v := &message.Spam{Score: rep.Score, RequiredScore: rep.RequiredScore, Action: rep.Action, Scanner: "rspamd"}
	for name, s := range rep.Symbols {
		if s.Name != "" {
			name = s.Name
		}
		v.Symbols = append(v.Symbols, message.SpamSymbol{Name: name, Score: s.Score})
	}
	sort.Slice(v.Symbols, func(i, j int) bool {
		if v.Symbols[i].Score != v.Symbols[j].Score {
			return v.Symbols[i].Score > v.Symbols[j].Score
		}
		return v.Symbols[i].Name < v.Symbols[j].Name
	})
	return v, nil
}

func setHeader(h http.Header, k, v string) {
	if v = clean(v); v != "" {
		h.Set(k, v)
	}
}

// clean drops what cannot go in an HTTP header value.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// limitReader reads at most n bytes; the n+1th fails the read and sets
// over (read by another goroutine than the HTTP transport's).
type limitReader struct {
	r    io.Reader
	n    int64
	over atomic.Bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.over.Load() {
		return 0, ErrTooLarge
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		l.over.Store(true)
		return 0, ErrTooLarge
	}
	return n, err
}
