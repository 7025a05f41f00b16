// Command ingest is the parse-and-route Lambda function: S3 events for raw/
// (through the raw SQS queue) in, delivery jobs out. See internal/ingest;
// its configuration: pipeline.Function.
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
	h, err := fn.IngestHandler(ctx)
	pipeline.Check(log, err, "configuration")
	lambda.Start(telemetry.Flushing(fn.Tracing, log, h.Handle))
}
