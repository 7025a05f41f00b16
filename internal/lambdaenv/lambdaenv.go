// Package lambdaenv builds, once per Lambda cold start, the clients every
// letterbox function shares, from the environment the SAM template sets:
//
//	LETTERBOX_STORE                  s3://BUCKET[/PREFIX]
//	LETTERBOX_ROUTES                 s3://BUCKET/KEY (reloaded on change) or a bundled file path
//	LETTERBOX_DELIVERY_QUEUE_URL     the delivery queue
//	LETTERBOX_DEAD_LETTER_QUEUE_URL  its dead-letter queue
//	LETTERBOX_ROUTES_INTERVAL        how often to check the routes for changes (default 30s)
//	LETTERBOX_JOURNAL                all (default) or failures: which deliveries get a store record
//
// Only main packages call it: it is the functions' configuration reader.
package lambdaenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/sqsqueue"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// Env is what a function needs.
type Env struct {
	Store   store.Store
	Routes  *routing.Live
	Queue   *sqsqueue.Queue
	Journal delivery.Journal
	// Links presigns attachment links (the S3 store); nil for other stores.
	Links store.Presigner
	// AWS is the SDK configuration the clients were built from.
	AWS aws.Config
	// KeyPrefix is the store's prefix in its bucket, as S3 events name keys.
	KeyPrefix string
}

// Load reads the environment and builds the clients.
func Load(ctx context.Context) (*Env, error) {
	need := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	}
	storeURL, err := need("LETTERBOX_STORE")
	if err != nil {
		return nil, err
	}
	routesRef, err := need("LETTERBOX_ROUTES")
	if err != nil {
		return nil, err
	}
	st, _, err := storeurl.Open(ctx, storeURL)
	if err != nil {
		return nil, err
	}
	loader, err := storeurl.RoutesLoader(ctx, routesRef)
	if err != nil {
		return nil, err
	}
	interval := 30 * time.Second
	if v := os.Getenv("LETTERBOX_ROUTES_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("LETTERBOX_ROUTES_INTERVAL: %w", err)
		}
	}
	routes, err := routing.NewLive(ctx, loader, interval)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	q := &sqsqueue.Queue{API: sqs.NewFromConfig(cfg), URL: os.Getenv("LETTERBOX_DELIVERY_QUEUE_URL"), DeadLetterURL: os.Getenv("LETTERBOX_DEAD_LETTER_QUEUE_URL")}
	mode := os.Getenv("LETTERBOX_JOURNAL")
	switch mode {
	case "", delivery.JournalAll, delivery.JournalFailures:
	default:
		return nil, fmt.Errorf("LETTERBOX_JOURNAL=%q: want all or failures", mode)
	}
	links, _ := st.(store.Presigner)
	return &Env{Store: st, Routes: routes, Queue: q, Journal: delivery.Journal{Store: st, Mode: mode}, Links: links, AWS: cfg, KeyPrefix: storeurl.Prefix(storeURL)}, nil
}

// MustLoad is Load for a function's main: a configuration error ends the
// process with the error logged, so the deployment fails loudly.
func MustLoad(ctx context.Context, log *slog.Logger) *Env {
	env, err := Load(ctx)
	Check(log, err, "configuration")
	return env
}

// Check ends the process when err is not nil.
func Check(log *slog.Logger, err error, what string) {
	if err != nil {
		log.Error("cannot start: "+what, "err", err)
		os.Exit(1)
	}
}

// ForwardConfig reads the forward action's configuration from the
// environment, or returns nil when forwarding is not configured
// (LETTERBOX_SRS_DOMAIN unset: forward actions then fail permanently with a
// clear error). The caller sets Store and Policy. `letterbox dev` uses it
// too, so both read the same variables:
//
//	LETTERBOX_SRS_DOMAIN, LETTERBOX_SRS_SECRET  SRS rewriting (required to forward)
//	LETTERBOX_SRS_OLD_SECRETS                   comma-separated, still accepted
//	LETTERBOX_ARC_KEY_FILE, LETTERBOX_ARC_SELECTOR, LETTERBOX_ARC_DOMAIN  ARC sealing (optional)
//	LETTERBOX_FORWARD_HELO, LETTERBOX_FORWARD_TIMEOUT
func ForwardConfig(getenv func(string) string) (*forward.Config, error) {
	domain := getenv("LETTERBOX_SRS_DOMAIN")
	if domain == "" {
		return nil, nil
	}
	cfg := &forward.Config{SRSDomain: domain, SRSSecret: getenv("LETTERBOX_SRS_SECRET"),
		Resolver: getenv("LETTERBOX_RESOLVER"), HELO: getenv("LETTERBOX_FORWARD_HELO"), Getenv: getenv}
	for _, s := range strings.Split(getenv("LETTERBOX_SRS_OLD_SECRETS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.SRSOldSecrets = append(cfg.SRSOldSecrets, s)
		}
	}
	if v := getenv("LETTERBOX_FORWARD_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("LETTERBOX_FORWARD_TIMEOUT: %w", err)
		}
		cfg.Timeout = d
	}
	if f := getenv("LETTERBOX_ARC_KEY_FILE"); f != "" {
		k, err := forward.LoadARCKey(f, getenv("LETTERBOX_ARC_SELECTOR"), getenv("LETTERBOX_ARC_DOMAIN"))
		if err != nil {
			return nil, fmt.Errorf("ARC key: %w", err)
		}
		cfg.ARC = k
	}
	return cfg, nil
}
