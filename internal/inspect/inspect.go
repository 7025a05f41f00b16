// Package inspect is the inspector: a web UI and an HTTP API (/api/v1/)
// over a letterbox store, listing messages newest first with search, and
// showing each one's envelope, headers, bodies, a sanitised HTML preview,
// attachments, authentication and scanner verdicts, delivery records, and
// which routes match; it replays deliveries when allowed. `letterbox dev`
// serves it on its HTTP address, `letterbox inspect` over any store.
//
// Live updates use server-sent events (HTML Living Standard §9.2). The HTML
// preview is isolated with an iframe sandbox (HTML §4.8.5) and a
// Content-Security-Policy (CSP Level 3) that allows no script and no
// remote fetch; remote images load only when the reader asks.
//
// The list comes from a local SQLite index (Index) that the inspector keeps
// in step with the store's keys; see docs/inspector.md.
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/replay"
	"github.com/letterboxmail/letterbox/internal/routereport"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Config configures an inspector.
type Config struct {
	Source Source
	Index  *Index
	// Routes is the loaded routes file, for the routes page; nil shows
	// none. RoutesName names it.
	Routes     *routing.Live
	RoutesName string
	// Replayer routes and enqueues replays. nil makes the inspector
	// read-only: POST .../replay answers 403 (a dry run still works when
	// Routes is set).
	Replayer *ingest.Handler
	// Token, when set, is required on every request (see authorize).
	Token string
	// Poll is how often the index follows the store while someone uses
	// the inspector (default 1s).
	Poll time.Duration
	// RefreshLimit bounds the recent unfinished messages whose delivery
	// records each sync reads again (default 100).
	RefreshLimit int
	Log          *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Inspector serves the UI and the API.
type Inspector struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	ui      *ui

	mu      sync.Mutex
	subs    map[chan []byte]struct{}
	lastUse atomic.Int64 // Unix nanoseconds of the last request
	kick    chan struct{}
	closing chan struct{}
	close   sync.Once
}

// New returns an inspector. Run keeps its index in step with the store.
func New(cfg Config) (*Inspector, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.RefreshLimit == 0 {
		cfg.RefreshLimit = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Inspector{cfg: cfg, log: cfg.Log, subs: map[chan []byte]struct{}{}, kick: make(chan struct{}, 1), closing: make(chan struct{})}
	if in.log == nil {
		in.log = slog.Default()
	}
	if in.cfg.Source.Log == nil {
		in.cfg.Source.Log = in.log
	}
	u, err := newUI(in)
	if err != nil {
		return nil, err
	}
	in.ui = u
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/messages", in.apiList)
	mux.HandleFunc("GET /api/v1/messages/{id}", in.apiMessage)
	mux.HandleFunc("GET /api/v1/messages/{id}/raw", in.apiRaw)
	mux.HandleFunc("GET /api/v1/messages/{id}/attachments/{n}", in.apiAttachment)
	mux.HandleFunc("GET /api/v1/messages/{id}/deliveries", in.apiDeliveries)
	mux.HandleFunc("GET /api/v1/messages/{id}/routes", in.apiRoutes)
	mux.HandleFunc("POST /api/v1/messages/{id}/replay", in.apiReplay)
	mux.HandleFunc("GET /api/v1/events", in.apiEvents)
	u.register(mux)
	var h http.Handler = mux
	h = http.NewCrossOriginProtection().Handler(h) // no cross-site POST (replay)
	h = authorize(cfg.Token, h)
	if cfg.Token == "" {
		h = loopbackHost(h)
	}
	in.handler = h
	return in, nil
}

// ServeHTTP serves the inspector.
func (in *Inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.lastUse.Store(in.cfg.Now().UnixNano())
	in.handler.ServeHTTP(w, r)
}

// loopbackHost refuses, when no token is set, connections from another
// machine (`letterbox dev --http 0.0.0.0:8025` serves its other endpoints
// there, not the inspector) and requests whose Host is not a loopback
// name, which stops a web page from reading the inspector through DNS
// rebinding.
func loopbackHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ra, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !isLoopbackIP(ra) {
			http.Error(w, "403 forbidden: without "+TokenEnv+" the inspector answers only connections from this machine", http.StatusForbidden)
			return
		}
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.Trim(host, "[]")
		if !strings.EqualFold(host, "localhost") && !isLoopbackIP(host) {
			http.Error(w, "403 forbidden: without "+TokenEnv+" the inspector answers only requests to a loopback address", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Run follows the store until ctx ends: every Poll while the inspector was
// used in the last two minutes or an event stream is open, it adds new
// messages to the index and publishes what changed to the event streams.
func (in *Inspector) Run(ctx context.Context) {
	t := time.NewTicker(in.cfg.Poll)
	defer t.Stop()
	first := true
	for {
		if first || in.active() {
			first = false
			for {
				more, err := in.sync(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					in.log.WarnContext(ctx, "inspector: index sync failed; trying again", "err", err, "temporary", fault.IsTemporary(err))
				}
				if !more {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-in.kick:
		}
	}
}

// Close ends the open event streams, which would otherwise keep an
// http.Server's Shutdown waiting: register it with RegisterOnShutdown.
func (in *Inspector) Close() { in.close.Do(func() { close(in.closing) }) }

// Kick asks Run to sync now (localserve calls it when a message arrives).
func (in *Inspector) Kick() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}

func (in *Inspector) active() bool {
	in.mu.Lock()
	n := len(in.subs)
	in.mu.Unlock()
	return n > 0 || in.cfg.Now().Sub(time.Unix(0, in.lastUse.Load())) < 2*time.Minute
}

// sync runs one index sync and publishes its changes.
func (in *Inspector) sync(ctx context.Context) (bool, error) {
	changed, more, err := in.cfg.Index.Sync(ctx, in.cfg.Source, in.cfg.Now(), in.cfg.RefreshLimit)
	for _, it := range changed {
		in.publish(it)
	}
	return more, err
}

func (in *Inspector) publish(it Item) {
	b := marshalItem(it)
	in.mu.Lock()
	defer in.mu.Unlock()
	for c := range in.subs {
		select {
		case c <- b:
		default: // a slow reader misses an update; its next page load shows it
		}
	}
}

// apiEvents streams "message" events, each an Item as JSON, whenever a
// message arrives or its status changes.
func (in *Inspector) apiEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	c := make(chan []byte, 64)
	in.mu.Lock()
	in.subs[c] = struct{}{}
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		delete(in.subs, c)
		in.mu.Unlock()
	}()
	in.Kick()
	io.WriteString(w, "retry: 2000\n: letterbox inspector events\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-in.closing:
			return
		case b := <-c:
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", b)
		case <-ping.C:
			io.WriteString(w, ": ping\n\n")
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (in *Inspector) apiList(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	p, err := in.cfg.Index.List(r.Context(), q, in.cfg.Now())
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	writeJSON(w, p)
}

func listQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Q: v.Get("q"), Before: v.Get("before")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("%w: limit=%s is not a positive number", ErrBadQuery, s)
		}
		q.Limit = n
	}
	return q, nil
}

func (in *Inspector) apiMessage(w http.ResponseWriter, r *http.Request) {
	m, err := in.cfg.Source.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	writeJSON(w, m)
}

func (in *Inspector) apiRaw(w http.ResponseWriter, r *http.Request) {
	rc, obj, err := in.cfg.Source.Raw(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Length", strconv.FormatInt(obj.Size, 10))
	if r.URL.Query().Get("download") == "1" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": r.PathValue("id") + ".eml"}))
	}
	io.Copy(w, rc)
}

func (in *Inspector) apiAttachment(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		http.Error(w, "404 no such attachment", http.StatusNotFound)
		return
	}
	started := false
	err = in.cfg.Source.Attachment(r.Context(), r.PathValue("id"), n, func(a message.Attachment) io.Writer {
		started = true
		h := w.Header()
		ct := a.ContentType
		if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		name := a.Filename
		if name == "" {
			name = fmt.Sprintf("attachment-%d", n)
		}
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		if a.Size > 0 {
			h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
		}
		return w
	})
	if err != nil && !started {
		httpError(w, r, in.log, err)
	}
}

func (in *Inspector) apiDeliveries(w http.ResponseWriter, r *http.Request) {
	recs, err := in.cfg.Source.Deliveries(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	if recs == nil {
		recs = []delivery.Record{}
	}
	writeJSON(w, map[string]any{"message_id": r.PathValue("id"), "deliveries": recs})
}

// ReplayResult is the answer to POST .../replay.
type ReplayResult struct {
	MessageID string `json:"message_id"`
	DryRun    bool   `json:"dry_run"`
	// Jobs are the jobs queued (or, in a dry run, that would be).
	Jobs []ReplayJob `json:"jobs"`
}

// ReplayJob is one replayed job.
type ReplayJob struct {
	ID     string `json:"id"`
	Route  string `json:"route"`
	Action int    `json:"action"`
	Kind   string `json:"kind"`
}

// ErrReadOnly is returned for a replay the inspector is not allowed to do.
var ErrReadOnly = errors.New("the inspector is read-only: start it with --allow-replay (and --queue) to replay")

func (in *Inspector) apiReplay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	dry := r.URL.Query().Get("dry_run") == "1" || r.URL.Query().Get("dry_run") == "true"
	h := in.cfg.Replayer
	if h == nil {
		if !dry || in.cfg.Routes == nil {
			httpError(w, r, in.log, ErrReadOnly)
			return
		}
		// A dry run routes only; it needs no queue.
		h = &ingest.Handler{Store: in.cfg.Source.Store, Routes: in.cfg.Routes, Log: in.log}
	}
	if !validID(id) {
		httpError(w, r, in.log, store.ErrNotFound)
		return
	}
	var (
		jobs []delivery.Job
		err  error
	)
	opt := ingest.RouteOptions{Replay: replay.Tag(in.cfg.Now()), Only: r.URL.Query().Get("route"), DryRun: dry}
	if dry || in.cfg.Replayer == nil {
		// Read-only: route the message the inspector reads, never one
		// parsed by the handler (which may write parsed JSON).
		var m *message.Message
		if m, err = in.cfg.Source.Message(r.Context(), id); err == nil {
			jobs, err = h.Route(r.Context(), m, opt)
		}
	} else {
		jobs, err = replay.Message(r.Context(), h, id, opt)
	}
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	res := ReplayResult{MessageID: id, DryRun: dry, Jobs: []ReplayJob{}}
	for _, j := range jobs {
		res.Jobs = append(res.Jobs, ReplayJob{ID: j.ID, Route: j.Route, Action: j.Action, Kind: j.Kind})
	}
	if !dry {
		in.log.InfoContext(r.Context(), "inspector: replay queued", "message_id", id, "jobs", len(jobs))
		in.Kick()
	}
	writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// httpError maps an error to a status: not found 404, a bad query 400,
// read-only 403, a temporary store failure 503, anything else 500. The
// peer sees a generic text; the details go to the log.
func httpError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch {
	case store.IsNotFound(err) || errors.Is(err, ErrNoAttachment):
		http.Error(w, "404 not found", http.StatusNotFound)
	case errors.Is(err, ErrBadQuery):
		http.Error(w, "400 "+err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrNoRoutes):
		http.Error(w, "403 "+err.Error(), http.StatusForbidden)
	case fault.IsTemporary(err):
		log.WarnContext(r.Context(), "inspector: store unavailable", "path", r.URL.Path, "err", err)
		http.Error(w, "503 the store is unavailable; try again", http.StatusServiceUnavailable)
	default:
		log.ErrorContext(r.Context(), "inspector: request failed", "path", r.URL.Path, "err", err)
		http.Error(w, "500 internal error (see the inspector's log)", http.StatusInternalServerError)
	}
}

// apiRoutes answers what the loaded routes file does with the message, as
// `letterbox routes test` does.
func (in *Inspector) apiRoutes(w http.ResponseWriter, r *http.Request) {
	rep, err := in.routeReport(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, r, in.log, err)
		return
	}
	writeJSON(w, rep)
}

// ErrNoRoutes is returned when the inspector was started without routes.
var ErrNoRoutes = errors.New("no routes file loaded (start the inspector with --routes)")

func (in *Inspector) routeReport(ctx context.Context, id string) (routereport.Report, error) {
	if in.cfg.Routes == nil {
		return routereport.Report{}, ErrNoRoutes
	}
	m, err := in.cfg.Source.Message(ctx, id)
	if err != nil {
		return routereport.Report{}, err
	}
	return routereport.Build(ctx, in.cfg.Routes.Get(ctx), m), nil
}

func isLoopbackIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}
