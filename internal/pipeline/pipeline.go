// Package pipeline builds letterbox's pipeline from a configuration: the
// store (storeurl), the live routes, the mail authentication checker
// (SPF RFC 7208, DKIM RFC 6376, DMARC RFC 7489, ARC RFC 8617), the ingest
// handler, the deliver handler (webhook, forward and publish actions behind
// the egress guard, with their secrets) and the SMTP gateway.
//
// It is the one answer to "how is X built". Each entry point only says
// where its configuration comes from and calls the builders here:
//
//   - `letterbox dev` (internal/localserve) and the smtpgw binary: flags,
//     with the gateway's registered by RegisterGatewayFlags;
//   - the Lambda functions: the environment the SAM template sets, read by
//     LoadFunction (and LinkHandler for the link function), with the
//     deliver function's secrets from Secrets Manager (LoadSecrets).
//
// The package reads configuration only through the getenv function its
// caller passes (the mains pass os.Getenv), never from the process itself.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/publish"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// Config is what every part shares: where the store and the routes are.
type Config struct {
	// StoreURL is file://DIR or s3://BUCKET[/PREFIX].
	StoreURL string
	// Routes is the routes file: a path, s3://BUCKET/KEY or ssm:///NAME
	// (storeurl.RoutesLoader). With RoutesFileOnly it is a path only.
	Routes         string
	RoutesFileOnly bool
	// RoutesInterval is how often the routes are checked for changes.
	RoutesInterval time.Duration
	// Limits is what this deployment can honour: a routes file asking
	// for more is refused when it loads (routing.Limits).
	Limits routing.Limits
	// Journal is delivery.JournalAll (or "") or delivery.JournalFailures:
	// which deliveries get a record in the store.
	Journal string
	// Ping checks that the store answers before Open returns.
	Ping bool
	// Logger is every part's logger; nil means slog.Default().
	Logger *slog.Logger
}

// Pipeline holds the parts every stage shares, and builds the stages.
type Pipeline struct {
	Store   store.Store
	Routes  *routing.Live
	Journal delivery.Journal
	// KeyPrefix is the store's key prefix in its bucket, as S3 events
	// name keys ("PREFIX/" for s3://BUCKET/PREFIX); Bucket is the bucket
	// name the events carry (storeurl.Bucket).
	KeyPrefix, Bucket string
	Log               *slog.Logger

	closer io.Closer
}

// Open opens the store and loads the routes.
func Open(ctx context.Context, cfg Config) (*Pipeline, error) {
	p := &Pipeline{Log: cfg.Logger, KeyPrefix: storeurl.Prefix(cfg.StoreURL), Bucket: storeurl.Bucket(cfg.StoreURL)}
	if p.Log == nil {
		p.Log = slog.Default()
	}
	var loader routing.Loader
	if cfg.RoutesFileOnly {
		loader = routing.FileLoader(cfg.Routes)
	} else {
		var err error
		if loader, err = storeurl.RoutesLoader(ctx, cfg.Routes); err != nil {
			return nil, err
		}
	}
	var err error
	if p.Routes, err = cfg.Limits.NewLive(ctx, loader, cfg.RoutesInterval); err != nil {
		return nil, err
	}
	if p.Store, p.closer, err = storeurl.Open(ctx, cfg.StoreURL); err != nil {
		return nil, fmt.Errorf("store %s: %w", cfg.StoreURL, err)
	}
	if cfg.Ping {
		if err := p.Store.Ping(ctx); err != nil {
			p.Close()
			return nil, fmt.Errorf("store %s is not reachable: %w", cfg.StoreURL, err)
		}
	}
	p.Journal = delivery.Journal{Store: p.Store, Mode: cfg.Journal}
	return p, nil
}

// Close releases the store.
func (p *Pipeline) Close() error {
	if p.closer == nil {
		return nil
	}
	return p.closer.Close()
}

// IngestConfig configures the ingest stage.
type IngestConfig struct {
	// Queue receives the delivery jobs.
	Queue delivery.Queue
	// NoAuth skips the SPF/DKIM/DMARC/ARC checks.
	NoAuth bool
	// Resolver is the DNS server (host:port) for the checks; empty means
	// the system's. AuthTimeout bounds each query (zero: mailauth's
	// default).
	Resolver    string
	AuthTimeout time.Duration
	// MaxBodyBytes is the parser's body limit; zero is the default.
	MaxBodyBytes int
	// KeepParsed writes parsed/<id>.json for every message.
	KeepParsed bool
	// DeadLetter sends a raw event that failed for good to the raw
	// dead-letter queue (ingest.Handler.DeadLetter).
	DeadLetter func(ctx context.Context, rec events.SQSMessage) error
}

// Ingest builds the parse-and-route handler.
func (p *Pipeline) Ingest(c IngestConfig) (*ingest.Handler, error) {
	var auth *mailauth.Checker
	if !c.NoAuth {
		var err error
		if auth, err = mailauth.New(mailauth.Config{Resolver: c.Resolver, Timeout: c.AuthTimeout}); err != nil {
			return nil, fmt.Errorf("mail authentication: %w", err)
		}
	}
	return &ingest.Handler{Store: p.Store, Routes: p.Routes, Queue: c.Queue, Journal: p.Journal,
		Auth: auth, Log: p.Log, KeepParsed: c.KeepParsed, KeyPrefix: p.KeyPrefix,
		MaxBodyBytes: c.MaxBodyBytes, DeadLetter: c.DeadLetter}, nil
}

// DeliverConfig configures the deliver stage.
type DeliverConfig struct {
	// Queue is the delivery queue (retries, dead letters).
	Queue delivery.Queue
	// Egress guards every connection to a host a routes file names.
	Egress egress.Policy
	// Getenv resolves the routes' secret_env and password_env; nil
	// resolves nothing.
	Getenv func(string) string
	// Forward configures the forward action (its Store, Policy and Logger
	// are set here, and Getenv when it has none); nil refuses forward
	// actions permanently.
	Forward *forward.Config
	// Links makes attachment links; nil means the store's presigned URLs
	// when it has them (S3), else no links.
	Links store.Presigner
	// AWS, when set, enables the lambda, sqs, sns and eventbridge actions;
	// nil refuses them permanently.
	AWS *aws.Config
	// Metrics, when set, registers the delivery metrics.
	Metrics prometheus.Registerer
}

// Deliver builds the delivery handler.
func (p *Pipeline) Deliver(c DeliverConfig) (*delivery.Handler, error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	h := &delivery.Handler{Store: p.Store, Routes: p.Routes, Queue: c.Queue, Journal: p.Journal,
		Webhooks: delivery.NewWebhooks(c.Egress, getenv), Log: p.Log}
	h.Webhooks.Store, h.Webhooks.Links = p.Store, c.Links
	if c.Links == nil {
		h.Webhooks.Links, _ = p.Store.(store.Presigner)
	}
	if c.Forward != nil {
		fc := *c.Forward
		fc.Store, fc.Policy, fc.Logger = p.Store, c.Egress, p.Log
		if fc.Getenv == nil {
			fc.Getenv = getenv
		}
		var err error
		if h.Forwarder, err = forward.New(fc); err != nil {
			return nil, fmt.Errorf("forwarding: %w", err)
		}
	}
	if c.AWS != nil {
		h.Publisher = publish.New(*c.AWS)
	}
	if c.Metrics != nil {
		h.Metrics = delivery.NewMetrics(c.Metrics)
	}
	return h, nil
}

// Gateway builds the SMTP gateway over st (the pipeline's store, or a
// wrapper of it that emits storage events). An empty Hostname is the
// system's host name.
func (p *Pipeline) Gateway(c smtpgw.Config, st store.Store, reg prometheus.Registerer) (*smtpgw.Gateway, error) {
	if st == nil {
		return nil, errors.New("gateway: no store")
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	return smtpgw.New(c, st, p.Routes, p.Log, reg)
}
