// Command deliver is the delivery Lambda function: delivery jobs from the
// delivery SQS queue in, signed webhooks out. See internal/delivery. Its
// secret_env and password_env variables may come from the secret
// LETTERBOX_SECRETS_ARN names (lambdaenv.LoadSecrets).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/emf"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/lambdaenv"
	"github.com/letterboxmail/letterbox/internal/publish"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func main() {
	ctx := context.Background()
	log := slog.New(telemetry.LogHandler(lambdacontext.NewLogHandler()))
	tel, err := telemetry.Setup(ctx, telemetry.Config{Service: "letterbox-deliver", Getenv: os.Getenv, PerInvocation: true})
	lambdaenv.Check(log, err, "tracing")
	env := lambdaenv.MustLoad(ctx, log)
	lambdaenv.Check(log, env.LoadLinks(ctx), "attachment links")
	getenv, err := env.Getenv(ctx)
	lambdaenv.Check(log, err, "secrets")
	fwd, err := env.ForwardConfig(ctx, getenv)
	lambdaenv.Check(log, err, "forwarding")
	hooks := delivery.NewWebhooks(egress.Policy{}, getenv)
	hooks.Store, hooks.Links = env.Store, env.Links
	h := &delivery.Handler{Store: env.Store, Routes: env.Routes, Queue: env.Queue, Journal: env.Journal, Webhooks: hooks,
		Publisher: publish.New(env.AWS), Log: log, Metrics: delivery.NewEMFMetrics(emf.New(os.Stdout, metricsNamespace()))}
	if fwd != nil {
		fwd.Store, fwd.Logger = env.Store, log
		h.Forwarder, err = forward.New(*fwd)
		lambdaenv.Check(log, err, "forwarding")
	}
	lambda.Start(telemetry.Flushing(tel, log, h.Handle))
}

// metricsNamespace is the CloudWatch namespace of the EMF metrics.
func metricsNamespace() string {
	if ns := os.Getenv("LETTERBOX_METRICS_NAMESPACE"); ns != "" {
		return ns
	}
	return "letterbox"
}
