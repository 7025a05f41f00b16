// Command ingest is the parse-and-route Lambda function: S3 events for raw/
// (through the raw SQS queue) in, delivery jobs out. See internal/ingest.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/lambdaenv"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func main() {
	ctx := context.Background()
	log := slog.New(telemetry.LogHandler(lambdacontext.NewLogHandler()))
	tel, err := telemetry.Setup(ctx, telemetry.Config{Service: "letterbox-ingest", Getenv: os.Getenv, PerInvocation: true})
	lambdaenv.Check(log, err, "tracing")
	env := lambdaenv.MustLoad(ctx, log)
	auth, err := mailauth.New(mailauth.Config{Resolver: os.Getenv("LETTERBOX_RESOLVER"), Timeout: 5 * time.Second})
	lambdaenv.Check(log, err, "mail authentication")
	maxBody, err := parser.ParseMaxBodyBytes(os.Getenv("LETTERBOX_MAX_BODY_BYTES"))
	lambdaenv.Check(log, err, "LETTERBOX_MAX_BODY_BYTES")
	h := &ingest.Handler{Store: env.Store, Routes: env.Routes, Queue: env.Queue, Journal: env.Journal,
		Auth: auth, Log: log, KeepParsed: os.Getenv("LETTERBOX_KEEP_PARSED") == "true", KeyPrefix: env.KeyPrefix,
		MaxBodyBytes: maxBody, DeadLetter: env.RawDeadLetter, Metrics: &ingest.Metrics{EMF: emf.New(os.Stdout, metricsNamespace())}}
	lambda.Start(telemetry.Flushing(tel, log, h.Handle))
}

// metricsNamespace is the CloudWatch namespace of the EMF metrics.
func metricsNamespace() string {
	if ns := os.Getenv("LETTERBOX_METRICS_NAMESPACE"); ns != "" {
		return ns
	}
	return "letterbox"
}
