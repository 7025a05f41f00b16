package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/letterboxmail/letterbox/internal/inspect"
	"github.com/letterboxmail/letterbox/internal/localserve"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func init() {
	commands["dev"] = command{summary: "run the whole pipeline locally (SMTP → store → parse → route → deliver)", run: runDev}
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	cfg := localserve.Config{}
	gw := pipeline.RegisterGatewayFlags(fs, os.Getenv)
	fs.StringVar(gw.Addr(), "smtp", envOr("LETTERBOX_SMTP_ADDR", "127.0.0.1:2525"), "SMTP listen `address` (env LETTERBOX_SMTP_ADDR)")
	fs.StringVar(&cfg.HTTPAddr, "http", envOr("LETTERBOX_HTTP_ADDR", "127.0.0.1:8025"), "HTTP `address` for the inspector (/), /healthz, /readyz, /metrics and the dev webhook receiver (env LETTERBOX_HTTP_ADDR)")
	fs.StringVar(&cfg.StoreURL, "store", envOr("LETTERBOX_STORE", "file://.letterbox"), "store `URL`: file://DIR or s3://BUCKET[/PREFIX] (env LETTERBOX_STORE)")
	fs.StringVar(&cfg.RoutesPath, "routes", envOr("LETTERBOX_ROUTES", "routes.yaml"), "routes `file` (env LETTERBOX_ROUTES)")
	fs.StringVar(&cfg.QueueDir, "queue", envOr("LETTERBOX_QUEUE_DIR", ""), "delivery queue `directory` (default: .queue in a file store)")
	fs.BoolVar(&cfg.NoAuth, "no-auth", false, "skip SPF/DKIM/DMARC/ARC checks while parsing")
	maxBody := maxBodyFlag(fs)
	fs.BoolVar(&cfg.ExternalEvents, "external-events", false, "process raw messages only on S3 notifications posted to /dev/s3-events (e.g. versitygw --event-webhook-url)")
	fs.BoolVar(&cfg.AWSActions, "aws-actions", false, "enable the lambda, sqs, sns and eventbridge actions with the AWS SDK's default credentials")
	fs.BoolVar(&cfg.AllowPrivate, "allow-private-webhooks", false, "let webhooks reach private networks (loopback is always allowed in dev)")
	logLevel := fs.String("log-level", envOr("LETTERBOX_LOG_LEVEL", "info"), "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", envOr("LETTERBOX_LOG_FORMAT", "text"), "log `format`: text or json")
	spans := fs.String("spans", envOr("LETTERBOX_SPANS", ""), "span `file` that letterbox trace reads, or off (default: traces.jsonl in a file store; env LETTERBOX_SPANS)")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	logger, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return &exitError{2, err}
	}
	if cfg.MaxBodyBytes, err = maxBody(); err != nil {
		return &exitError{2, err}
	}
	if cfg.Gateway, err = gw.Config(); err != nil {
		return &exitError{2, err}
	}
	cfg.Logger, cfg.Getenv = logger, os.Getenv
	cfg.InspectToken = os.Getenv(inspect.TokenEnv)
	// Forwarding is configured by environment, as in the deliver function;
	// LETTERBOX_SECRETS_ARN (Secrets Manager) is refused rather than ignored.
	// Without LETTERBOX_SRS_DOMAIN, localserve forwards with no setup.
	if _, err := pipeline.LoadSecrets(ctx, os.Getenv, nil); err != nil {
		return &exitError{2, err}
	}
	if cfg.Forward, err = pipeline.LoadForwardConfig(ctx, os.Getenv, nil); err != nil {
		return &exitError{2, err}
	}
	// Tracing: spans go to the span file, and to an OTLP endpoint when
	// OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md).
	if *spans == "" {
		*spans = pipeline.DevSpanFile(cfg.StoreURL)
	}
	if *spans == "off" {
		*spans = ""
	}
	tel, err := pipeline.Tracing(ctx, "letterbox-dev", os.Getenv, *spans, false)
	if err != nil {
		return &exitError{2, err}
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	// SIGHUP reloads the TLS certificate, as in the smtpgw binary.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv, err := localserve.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("letterbox dev: SMTP on %s, HTTP on http://%s (inspector /, health /healthz, metrics /metrics, webhook receiver /dev/webhook/)\n", srv.SMTPAddr(), srv.HTTPAddr())
	fmt.Printf("letterbox dev: store %s, routes %s; webhooks may reach loopback (dev default)\n", cfg.StoreURL, cfg.RoutesPath)
	fmt.Printf("letterbox dev: try: letterbox send --smtp %s --to support@example.test --subject hello\n", srv.SMTPAddr())
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			if err := srv.ReloadTLS(ctx); err != nil {
				logger.ErrorContext(ctx, "TLS reload failed; keeping the certificate in use", "err", err)
			}
		case err := <-srv.Err():
			srv.Shutdown(context.Background())
			return err
		}
	}
	fmt.Println("letterbox dev: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(os.Stderr, opts))), nil
	case "json":
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
