// Package localserve runs the whole letterbox pipeline in one process, the
// way `letterbox dev` does: the SMTP gateway writes raw messages to a store;
// the store emits the S3 event records S3 would; the ingest handler
// consumes them as the SQS-wrapped events Lambda receives; delivery jobs go
// through a local queue with SQS's semantics to the deliver handler. Every
// handler is the one that runs on Lambda; only the queues are local.
//
// A built-in webhook receiver (/dev/webhook/…) verifies and prints what it
// receives, so the whole path can be tried with no other server running.
// Attachment links (/dev/links/…) have the deployed stack's format and are
// checked by the same handler as the link function's (package links). The
// inspector (package inspect) is served at /.
package localserve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/inspect"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Config configures a local pipeline.
type Config struct {
	// HTTPAddr serves /healthz, /readyz, /metrics and the dev receiver.
	HTTPAddr string
	// StoreURL is file://DIR or s3://BUCKET[/PREFIX].
	StoreURL string
	// RoutesPath is the routes file; it is reloaded when it changes.
	RoutesPath string
	// QueueDir holds the delivery queue; empty means .queue beside a file
	// store, or .letterbox-queue for an S3 store.
	QueueDir string
	// Gateway configures the SMTP gateway (Gateway.Addr is the SMTP address).
	Gateway smtpgw.Config
	// NoAuth disables SPF/DKIM/DMARC/ARC checks while parsing.
	NoAuth bool
	// MaxBodyBytes is the parser's body limit; zero is the default.
	MaxBodyBytes int
	// AllowPrivate lets webhooks reach private networks; loopback is
	// always allowed in dev.
	AllowPrivate bool
	// ExternalEvents stops the store from emitting events itself: raw
	// messages are then processed only when an S3 server posts its bucket
	// notifications to /dev/s3-events (and by the restart scan).
	ExternalEvents bool
	// Forward configures the forward action (its Store and Policy are set
	// here). nil forwards with no setup: the SRS domain is the first of
	// the routes file's domains, and the SRS secret is generated into the
	// store (SRSSecretKey) on first use and kept there.
	Forward *forward.Config
	// Getenv resolves the routes' secret_env and password_env (the
	// environment of `letterbox dev`); nil resolves nothing.
	Getenv func(string) string
	// AWSActions enables the lambda, sqs, sns and eventbridge actions with
	// the AWS SDK's default configuration (environment, shared config);
	// otherwise they fail permanently with a clear error.
	AWSActions bool
	// Workers is the number of concurrent batches per queue.
	Workers int
	Logger  *slog.Logger
	// Out receives the dev receiver's printout; nil means os.Stdout.
	Out io.Writer
	// InspectToken, when set, is required by the inspector served at /
	// (LETTERBOX_INSPECT_TOKEN); without it the inspector answers only
	// loopback connections.
	InspectToken string
}

// Server is a running local pipeline.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	p       *pipeline.Pipeline
	gw      *smtpgw.Gateway
	http    *http.Server
	httpLn  net.Listener
	rawQ    *localqueue.Queue
	jobQ    *localqueue.Queue
	ingest  *ingest.Handler
	deliver *delivery.Handler
	recv    *Receiver
	inspect *inspect.Inspector
	index   *inspect.Index

	cancel context.CancelFunc
	wg     sync.WaitGroup
	bg     sync.WaitGroup // raw events being written
	errc   chan error
}

// Start starts every stage and returns once all listen.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, errc: make(chan error, 4)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.Workers <= 0 {
		s.cfg.Workers = 4
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	var err error
	// Without LETTERBOX_SRS_DOMAIN, forwarding needs no setup (devForward)
	// but has no ARC key: arc_seal is then refused when the routes load.
	if s.p, err = pipeline.Open(ctx, pipeline.Config{StoreURL: cfg.StoreURL, Routes: cfg.RoutesPath, RoutesFileOnly: true,
		RoutesInterval: time.Second, Ping: true, Logger: s.log,
		Limits: routing.Limits{NoARC: pipeline.NoARC(cfg.Forward)}}); err != nil {
		return nil, err
	}
	base := s.p.Store
	qdir := cfg.QueueDir
	if qdir == "" {
		if strings.HasPrefix(cfg.StoreURL, "s3://") {
			qdir = ".letterbox-queue"
		} else {
			qdir = filepath.Join(strings.TrimPrefix(cfg.StoreURL, "file://"), ".queue")
		}
	}
	// Storage events wait on disk, as S3 → SQS keeps them: an event goes
	// only once ingest has queued the message's jobs, so a crash at any
	// point re-runs ingest (whose jobs are de-duplicated by id).
	if s.rawQ, err = localqueue.Open(ctx, qdir+"-raw", "letterbox-raw"); err != nil {
		return nil, err
	}
	s.rawQ.Log = s.log
	// Ingest takes milliseconds; after a crash, an event that was being
	// processed comes back this soon.
	s.rawQ.Visibility = 10 * time.Second
	s.store = base
	if !cfg.ExternalEvents {
		s.store = store.WithEvents(base, s.p.Bucket, s.onRaw)
	}
	if s.jobQ, err = localqueue.Open(ctx, qdir, "letterbox-deliveries"); err != nil {
		return nil, err
	}
	s.jobQ.Log = s.log
	jobs := localqueue.Deliveries{Queue: s.jobQ}

	if s.ingest, err = s.p.Ingest(pipeline.IngestConfig{Queue: jobs, NoAuth: cfg.NoAuth, Resolver: cfg.Gateway.Resolver,
		MaxBodyBytes: cfg.MaxBodyBytes, KeepParsed: true,
		DeadLetter: func(ctx context.Context, rec events.SQSMessage) error {
			return s.rawQ.DeadLetterBody(ctx, rec.MessageId, []byte(rec.Body))
		}}); err != nil {
		return nil, err
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	// Attachment links: the deployed stack's link format, served here.
	signer, links := newLinks("http://"+s.httpLn.Addr().String(), base, s.log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dc := pipeline.DeliverConfig{Queue: jobs, Egress: egress.Policy{AllowLoopback: true, AllowPrivate: cfg.AllowPrivate},
		Getenv: cfg.Getenv, Forward: cfg.Forward, Links: signer, Metrics: reg}
	if dc.Forward == nil {
		if dc.Forward, err = s.devForward(ctx, base); err != nil {
			return nil, fmt.Errorf("forwarding: %w", err)
		}
	}
	if cfg.AWSActions {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("AWS configuration for the AWS actions: %w", err)
		}
		dc.AWS = &awsCfg
	}
	if s.deliver, err = s.p.Deliver(dc); err != nil {
		return nil, err
	}
	// The policy hook may be on this machine, as webhooks may.
	gwc := cfg.Gateway
	gwc.HookEgress = dc.Egress
	if dc.AWS != nil && gwc.HookLambda == nil {
		// With --aws-actions a Lambda function ARN can be the hook too.
		gwc.HookLambda = lambda.NewFromConfig(*dc.AWS)
	}
	if gwc.Getenv == nil {
		gwc.Getenv = cfg.Getenv
	}
	if s.gw, err = s.p.Gateway(gwc, s.store, reg); err != nil {
		return nil, err
	}

	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	s.recv = NewReceiver(s.p.Routes, out)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.gw.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.Handle("/dev/webhook/", s.recv)
	mux.HandleFunc("POST /dev/s3-events", s.s3Events)
	mux.Handle(linksPath+"/", links)
	// The inspector (package inspect), at /: replay is allowed, it is the
	// developer's own pipeline.
	if s.index, err = inspect.OpenIndex(qdir + "-inspect.db"); err != nil {
		return nil, err
	}
	if s.inspect, err = inspect.New(inspect.Config{Source: inspect.Source{Store: base, MaxBodyBytes: cfg.MaxBodyBytes}, Index: s.index,
		Routes: s.p.Routes, RoutesName: cfg.RoutesPath, Replayer: s.ingest, Token: cfg.InspectToken, Poll: 500 * time.Millisecond, Log: s.log}); err != nil {
		return nil, err
	}
	mux.Handle("/", s.inspect)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.http.RegisterOnShutdown(s.inspect.Close) // end the inspector's event streams

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.inspect.Run(runCtx) }()
	go func() { defer s.wg.Done(); s.rawQ.Run(runCtx, s.cfg.Workers, s.handleRaw) }()
	go func() { defer s.wg.Done(); s.jobQ.Run(runCtx, s.cfg.Workers, s.deliver.Handle) }()
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("http: %w", err)
		}
	}()
	if err := s.gw.Listen(); err != nil {
		return nil, err
	}
	go func() {
		if err := s.gw.ListenAndServe(runCtx); err != nil {
			s.errc <- fmt.Errorf("smtp: %w", err)
		}
	}()
	if err := s.recover(ctx, base); err != nil {
		s.log.WarnContext(ctx, "recovery scan incomplete", "err", err)
	}
	ok = true
	return s, nil
}

// SRSSecretKey is where `letterbox dev` keeps the SRS secret it generates
// when forwarding is not configured otherwise.
const SRSSecretKey = "dev/srs-secret"

// devForward is the forwarding configuration of a `letterbox dev` started
// without one: SRS for the first of the routes file's domains, with a
// secret generated into the store on first use, so that SRS addresses
// minted before a restart still verify after it.
func (s *Server) devForward(ctx context.Context, st store.Store) (*forward.Config, error) {
	cfg := s.p.Routes.Get(ctx)
	domain := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(cfg.Domains[0]), "."))
	secret, err := store.ReadAll(ctx, st, SRSSecretKey)
	switch {
	case store.IsNotFound(err):
		b := make([]byte, 32)
		rand.Read(b)
		secret = []byte(hex.EncodeToString(b))
		if _, err := st.Put(ctx, SRSSecretKey, bytes.NewReader(secret), nil); err != nil {
			return nil, fmt.Errorf("keep the generated SRS secret at %s: %w", SRSSecretKey, err)
		}
		s.log.InfoContext(ctx, "forwarding: generated an SRS secret", "key", SRSSecretKey)
	case err != nil:
		return nil, fmt.Errorf("read the SRS secret %s: %w", SRSSecretKey, err)
	}
	s.log.InfoContext(ctx, "forwarding: SRS domain is the routes file's first domain (set LETTERBOX_SRS_DOMAIN to choose another)", "srs_domain", domain)
	return &forward.Config{SRSDomain: domain, SRSSecret: strings.TrimSpace(string(secret)), Resolver: s.cfg.Gateway.Resolver}, nil
}

// onRaw is the store's event destination: it queues the record as S3
// would send it to SQS.
// The event is written in the background: the writer (the gateway, before
// its 250) does not wait for it, and a crash before it is written is
// covered by the restart scan.
func (s *Server) onRaw(ctx context.Context, rec events.S3EventRecord) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.queueRaw(context.WithoutCancel(ctx), rec)
	}()
}

func (s *Server) queueRaw(ctx context.Context, rec events.S3EventRecord) {
	body, _ := json.Marshal(events.S3Event{Records: []events.S3EventRecord{rec}})
	id, _ := store.IDFromRawKey(strings.TrimPrefix(rec.S3.Object.URLDecodedKey, s.p.KeyPrefix))
	if err := s.rawQ.Send(ctx, id, body, 0); err != nil {
		s.log.ErrorContext(ctx, "cannot queue storage event; the restart scan will find it", "key", rec.S3.Object.URLDecodedKey, "err", err)
	}
}

// s3Events accepts S3 bucket notifications (the JSON an S3 server posts to
// a webhook, shaped like events.S3Event) and queues their raw-message
// records: a real S3 → event → function path, and a way to deliver
// duplicate events on purpose.
func (s *Server) s3Events(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := decodeS3Event(body)
	if err != nil {
		http.Error(w, "not an S3 event notification: "+err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for _, rec := range ev.Records {
		if !strings.HasPrefix(strings.TrimPrefix(rec.EventName, "s3:"), "ObjectCreated:") {
			continue
		}
		if _, ok := store.IDFromRawKey(strings.TrimPrefix(rec.S3.Object.URLDecodedKey, s.p.KeyPrefix)); ok {
			s.queueRaw(r.Context(), rec)
			n++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"queued\":%d}\n", n)
}

// decodeS3Event decodes a bucket notification, tolerating what S3-protocol
// servers other than AWS send (versitygw: an empty glacierEventData time,
// event names prefixed "s3:", test events without records).
func decodeS3Event(body []byte) (events.S3Event, error) {
	var raw struct {
		Records []map[string]json.RawMessage `json:"Records"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return events.S3Event{}, err
	}
	var ev events.S3Event
	for _, rec := range raw.Records {
		delete(rec, "glacierEventData")
		b, _ := json.Marshal(rec)
		var r events.S3EventRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return events.S3Event{}, err
		}
		r.EventName = strings.TrimPrefix(r.EventName, "s3:")
		ev.Records = append(ev.Records, r)
	}
	return ev, nil
}

func (s *Server) handleRaw(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	resp, err := s.ingest.HandleSQS(ctx, ev)
	for _, f := range resp.BatchItemFailures {
		// Back off before the next try, as the raw queue's visibility
		// timeout would.
		s.rawQ.ChangeVisibility(ctx, f.ItemIdentifier+"#0", 2*time.Second)
	}
	return resp, err
}

// recover queues raw messages that were stored but never parsed: a crash
// between the store's commit and the parse loses no message.
func (s *Server) recover(ctx context.Context, st store.Store) error {
	n := 0
	err := st.List(ctx, store.RawPrefix, "", func(o store.Object) bool {
		id, ok := store.IDFromRawKey(o.Key)
		if !ok {
			return true
		}
		if _, err := st.Stat(ctx, store.ParsedKey(id)); store.IsNotFound(err) {
			o.Key = s.p.KeyPrefix + o.Key // as S3 would name it
			s.queueRaw(ctx, store.EventRecord(s.p.Bucket, o))
			n++
		}
		return true
	})
	if n > 0 {
		s.log.InfoContext(ctx, "queued stored messages that were not yet processed", "count", n)
	}
	return err
}

// SMTPAddr returns the SMTP listener's address.
func (s *Server) SMTPAddr() string { return s.gw.Addr().String() }

// HTTPAddr returns the HTTP listener's address.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// Store returns the pipeline's store (without the event hook).
func (s *Server) Store() store.Store { return s.ingest.Store }

// Receiver returns the built-in webhook receiver.
func (s *Server) Receiver() *Receiver { return s.recv }

// ReloadTLS reloads the gateway's TLS certificate and key files now.
func (s *Server) ReloadTLS(ctx context.Context) error { return s.gw.ReloadTLS(ctx) }

// Err returns a channel that receives a listener's fatal error.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting mail, lets transactions in flight finish, then
// stops the consumers after their current batch. Queued deliveries resume
// at the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.gw != nil {
		errs = append(errs, s.gw.Shutdown(ctx))
	}
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
	}
	// The store's error says what it could not write into its tree (kept
	// in its log for the next start).
	errs = append(errs, s.close())
	return errors.Join(errs...)
}

func (s *Server) close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.bg.Wait()
	if s.rawQ != nil {
		s.rawQ.Close()
	}
	if s.jobQ != nil {
		s.jobQ.Close()
	}
	if s.index != nil {
		s.index.Close()
	}
	if s.http == nil && s.httpLn != nil {
		s.httpLn.Close()
	}
	if s.p != nil {
		return s.p.Close()
	}
	return nil
}
