package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/sqsqueue"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// Function is the pipeline of a Lambda function (ingest or deliver), built
// once per cold start from the environment the SAM template sets:
//
//	LETTERBOX_STORE                  s3://BUCKET[/PREFIX]
//	LETTERBOX_ROUTES                 s3://BUCKET/KEY (reloaded on change) or a bundled file path
//	LETTERBOX_DELIVERY_QUEUE_URL     the delivery queue
//	LETTERBOX_DEAD_LETTER_QUEUE_URL  its dead-letter queue
//	LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL  the raw queue's dead-letter queue (ingest: permanent failures)
//	LETTERBOX_ROUTES_INTERVAL        how often to check the routes for changes (default 30s)
//	LETTERBOX_JOURNAL                all (default) or failures: which deliveries get a store record
//	LETTERBOX_DELIVER_TIMEOUT        the deliver function's timeout in seconds (its Lambda Timeout):
//	                                 the routes' action timeouts are checked against it
//	LETTERBOX_SRS_DOMAIN             set where forwarding is configured; without it, a routes file
//	                                 with a forward action is refused
//
// and, for ingest, LETTERBOX_RESOLVER, LETTERBOX_MAX_BODY_BYTES and
// LETTERBOX_KEEP_PARSED (IngestHandler); for deliver,
// LETTERBOX_SECRETS_ARN (LoadSecrets), the forward action's variables
// (LoadForwardConfig) and the attachment links' (LoadLinkSigner). The link
// function reads only LETTERBOX_STORE and LETTERBOX_LINK_KEY_ARN
// (LinkHandler).
type Function struct {
	// Config is where the store and the routes are, and what the routes
	// are checked against; each handler opens its pipeline from it.
	Config Config
	// AWS is the SDK configuration every client is built from.
	AWS   aws.Config
	Queue *sqsqueue.Queue
	// Tracing is the function's tracing, set up by IngestHandler or
	// DeliverHandler (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set): wrap
	// the handler in telemetry.Flushing so that each invocation's spans
	// are exported before it returns.
	Tracing *telemetry.Provider
	getenv  func(string) string
	opened  []*Pipeline
}

// LoadFunction reads the environment through getenv and builds the
// clients; IngestHandler and DeliverHandler then open the store and load
// the routes.
func LoadFunction(ctx context.Context, getenv func(string) string, log *slog.Logger) (*Function, error) {
	cfg := Config{StoreURL: getenv("LETTERBOX_STORE"), Routes: getenv("LETTERBOX_ROUTES"),
		RoutesInterval: 30 * time.Second, Journal: getenv("LETTERBOX_JOURNAL"), Logger: log}
	for name, v := range map[string]string{"LETTERBOX_STORE": cfg.StoreURL, "LETTERBOX_ROUTES": cfg.Routes} {
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is not set", name)
		}
	}
	if v := getenv("LETTERBOX_ROUTES_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("LETTERBOX_ROUTES_INTERVAL: %w", err)
		}
		cfg.RoutesInterval = d
	}
	if cfg.Journal != "" && cfg.Journal != delivery.JournalAll && cfg.Journal != delivery.JournalFailures {
		return nil, fmt.Errorf("LETTERBOX_JOURNAL=%q: want all or failures", cfg.Journal)
	}
	var err error
	if cfg.Limits, err = Limits(getenv); err != nil {
		return nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	q := &sqsqueue.Queue{API: sqs.NewFromConfig(awsCfg), URL: getenv("LETTERBOX_DELIVERY_QUEUE_URL"), DeadLetterURL: getenv("LETTERBOX_DEAD_LETTER_QUEUE_URL")}
	return &Function{Config: cfg, AWS: awsCfg, Queue: q, getenv: getenv}, nil
}

// Limits reads what the functions can honour, for the routes file:
// LETTERBOX_DELIVER_TIMEOUT (seconds) and whether forwarding is configured
// (LETTERBOX_SRS_DOMAIN).
func Limits(getenv func(string) string) (routing.Limits, error) {
	var lim routing.Limits
	if v := getenv("LETTERBOX_DELIVER_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= int(routing.AttemptMargin/time.Second) {
			return lim, fmt.Errorf("LETTERBOX_DELIVER_TIMEOUT=%q: want the deliver function's timeout in seconds, more than %d", v, int(routing.AttemptMargin/time.Second))
		}
		lim.DeliverTimeout = time.Duration(n) * time.Second
	}
	if getenv("LETTERBOX_SRS_DOMAIN") == "" {
		lim.NoForward = "forwarding is not configured on this stack: deploy it with the ForwardSrsDomain parameter (see docs/forwarding.md)"
	}
	return lim, nil
}

// IngestHandler builds the ingest function's handler. Its mail
// authentication checks query LETTERBOX_RESOLVER (default: the system's)
// with a 5s timeout; LETTERBOX_MAX_BODY_BYTES is the parser's body limit
// and LETTERBOX_KEEP_PARSED=true keeps every parsed message. A message
// that fails for good goes to LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL at once,
// when it is set.
func (f *Function) IngestHandler(ctx context.Context) (*ingest.Handler, error) {
	maxBody, err := parser.ParseMaxBodyBytes(f.getenv("LETTERBOX_MAX_BODY_BYTES"))
	if err != nil {
		return nil, fmt.Errorf("LETTERBOX_MAX_BODY_BYTES: %w", err)
	}
	c := IngestConfig{Queue: f.Queue, Resolver: f.getenv("LETTERBOX_RESOLVER"), AuthTimeout: 5 * time.Second,
		MaxBodyBytes: maxBody, KeepParsed: f.getenv("LETTERBOX_KEEP_PARSED") == "true"}
	if dlq := f.getenv("LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL"); dlq != "" {
		c.DeadLetter = func(ctx context.Context, rec events.SQSMessage) error {
			_, err := f.Queue.API.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(rec.Body)})
			return err
		}
	}
	if f.Tracing, err = Tracing(ctx, "letterbox-ingest", f.getenv, "", true); err != nil {
		return nil, err
	}
	p, err := f.open(ctx, f.Config)
	if err != nil {
		return nil, err
	}
	h, err := p.Ingest(c)
	if err != nil {
		return nil, err
	}
	h.Metrics = &ingest.Metrics{EMF: f.metricsWriter()}
	return h, nil
}

// DeliverHandler builds the deliver function's handler: its variables
// (secret_env, password_env, the forward action's) are the environment's
// and those of the secret LETTERBOX_SECRETS_ARN names (LoadSecrets); the
// SRS and link keys may come from Secrets Manager too. Connections obey the
// default egress policy (no private networks). Attachment links are the
// link function's when they are configured (LoadLinkSigner), else the S3
// store's presigned URLs, which die with the function's temporary
// credentials (hours), whatever link_ttl says; the stack always configures
// them. A routes file with arc_seal on a forward action is refused, at
// cold start and at every reload, unless an ARC key is configured.
func (f *Function) DeliverHandler(ctx context.Context) (*delivery.Handler, error) {
	var err error
	if f.Tracing, err = Tracing(ctx, "letterbox-deliver", f.getenv, "", true); err != nil {
		return nil, err
	}
	secrets := secretsmanager.NewFromConfig(f.AWS)
	signer, err := LoadLinkSigner(ctx, f.getenv, secrets)
	if err != nil {
		return nil, fmt.Errorf("attachment links: %w", err)
	}
	getenv, err := LoadSecrets(ctx, f.getenv, secrets)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	fwd, err := LoadForwardConfig(ctx, getenv, secrets)
	if err != nil {
		return nil, fmt.Errorf("forwarding: %w", err)
	}
	c := DeliverConfig{Queue: f.Queue, Egress: egress.Policy{}, Getenv: getenv, Forward: fwd, AWS: &f.AWS}
	if signer != nil {
		c.Links = signer
	}
	cfg := f.Config
	cfg.Limits.NoARC = NoARC(fwd)
	p, err := f.open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	h, err := p.Deliver(c)
	if err != nil {
		return nil, err
	}
	h.Metrics = delivery.NewEMFMetrics(f.metricsWriter())
	return h, nil
}

func (f *Function) open(ctx context.Context, cfg Config) (*Pipeline, error) {
	p, err := Open(ctx, cfg)
	if err == nil {
		f.opened = append(f.opened, p)
	}
	return p, err
}

// Close releases the stores the handlers opened. A function never calls
// it: its process ends with the execution environment.
func (f *Function) Close() error {
	var errs []error
	for _, p := range f.opened {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// Check ends a function's process when err is not nil, with the error
// logged, so that a deployment with a bad configuration fails loudly at
// its first cold start.
func Check(log *slog.Logger, err error, what string) {
	if err != nil {
		log.Error("cannot start: "+what, "err", err)
		os.Exit(1)
	}
}
