// Command ingest is the parse-and-route Lambda function: S3 events for raw/
// (through the raw SQS queue) in, delivery jobs out. See internal/ingest.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/lambdaenv"
	"github.com/letterboxmail/letterbox/internal/mailauth"
)

func main() {
	ctx := context.Background()
	log := slog.New(lambdacontext.NewLogHandler())
	env := lambdaenv.MustLoad(ctx, log)
	auth, err := mailauth.New(mailauth.Config{Resolver: os.Getenv("LETTERBOX_RESOLVER"), Timeout: 5 * time.Second})
	lambdaenv.Check(log, err, "mail authentication")
	h := &ingest.Handler{Store: env.Store, Routes: env.Routes, Queue: env.Queue, Journal: env.Journal,
		Auth: auth, Log: log, KeepParsed: os.Getenv("LETTERBOX_KEEP_PARSED") == "true", KeyPrefix: env.KeyPrefix}
	// A permanent failure goes to the raw dead-letter queue at once.
	if dlq := os.Getenv("LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL"); dlq != "" {
		api := sqs.NewFromConfig(env.AWS)
		h.DeadLetter = func(ctx context.Context, rec events.SQSMessage) error {
			_, err := api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(rec.Body)})
			return err
		}
	}
	lambda.Start(h.Handle)
}
