// Command deliver is the delivery Lambda function: delivery jobs from the
// delivery SQS queue in, signed webhooks, forwards and publishes out. See
// internal/delivery; its configuration: pipeline.Function. Its secret_env
// and password_env variables may come from the secret LETTERBOX_SECRETS_ARN
// names (pipeline.LoadSecrets).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func main() {
	ctx := context.Background()
	log := slog.New(telemetry.LogHandler(lambdacontext.NewLogHandler()))
	fn, err := pipeline.LoadFunction(ctx, os.Getenv, log)
	pipeline.Check(log, err, "configuration")
	h, err := fn.DeliverHandler(ctx)
	pipeline.Check(log, err, "configuration")
	lambda.Start(telemetry.Flushing(fn.Tracing, log, h.Handle))
}
