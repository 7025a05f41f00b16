// Command smtpgw is letterbox's SMTP gateway: it receives mail for the
// domains in the routes file and writes each message to the store. Flags
// and operation: docs/gateway.md. `smtpgw hash-password` reads a password
// on stdin and prints a bcrypt hash for the --auth-users file.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "hash-password" {
		pw, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		h, err := smtpgw.HashPassword(strings.TrimRight(pw, "\r\n"))
		exitOn(err)
		fmt.Println(h)
		return
	}
	fs := flag.NewFlagSet("smtpgw", flag.ExitOnError)
	gwFlags := pipeline.RegisterGatewayFlags(fs, os.Getenv)
	fs.StringVar(gwFlags.Addr(), "smtp", env("LETTERBOX_SMTP_ADDR", ":2525"), "SMTP listen address [LETTERBOX_SMTP_ADDR]")
	httpAddr := fs.String("http", env("LETTERBOX_HTTP_ADDR", ":8025"), "HTTP address for /metrics, /healthz, /readyz [LETTERBOX_HTTP_ADDR]")
	storeURL := fs.String("store", env("LETTERBOX_STORE", "file://.letterbox"), "store URL: file://DIR or s3://BUCKET[/PREFIX] [LETTERBOX_STORE]")
	routesRef := fs.String("routes", env("LETTERBOX_ROUTES", "routes.yaml"), "routes file, s3://BUCKET/KEY or ssm:///NAME, reloaded when it changes [LETTERBOX_ROUTES]")
	_ = fs.Parse(os.Args[1:])

	var level slog.Level
	_ = level.UnmarshalText([]byte(env("LETTERBOX_LOG_LEVEL", "info")))
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// SIGHUP reloads the TLS certificate; caught from here on, so that
	// one sent during startup does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	tel, err := pipeline.Tracing(ctx, "letterbox-smtpgw", os.Getenv, "", false)
	exitOn(err)
	defer tel.Shutdown(context.WithoutCancel(ctx))
	cfg, err := gwFlags.Config()
	exitOn(err)
	p, err := pipeline.Open(ctx, pipeline.Config{StoreURL: *storeURL, Routes: *routesRef, RoutesInterval: 10 * time.Second, Logger: log})
	exitOn(err)
	defer p.Close()
	// A policy hook that is a Lambda function ARN is invoked with the
	// task role's credentials (template.yaml: GatewayPolicyHookFunction).
	if awsCfg, err := config.LoadDefaultConfig(ctx); err == nil {
		cfg.HookLambda = lambda.NewFromConfig(awsCfg)
	} else {
		log.Warn("no AWS configuration: a Lambda policy hook would fail", "err", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw, err := p.Gateway(cfg, p.Store, reg)
	exitOn(err)
	go reloadOnHangup(ctx, hup, gw, log)
	go pipeline.GatewayMetrics(ctx, os.Getenv, reg)
	exitOn(gw.Run(ctx, *httpAddr, reg))
}

// reloadOnHangup reloads the TLS certificate on every SIGHUP until ctx
// ends.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, gw *smtpgw.Gateway, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := gw.ReloadTLS(ctx); err != nil {
				log.ErrorContext(ctx, "TLS reload failed; keeping the certificate in use", "err", err)
			}
		}
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func exitOn(err error) {
	if err != nil {
		slog.Error("smtpgw: " + err.Error())
		os.Exit(1)
	}
}
