// Command link is the attachment link function, behind a Lambda function
// URL (AuthType NONE): it checks a link's token and redirects to a
// short-lived S3 URL presigned with its own current credentials, so links
// live for their whole link_ttl. See internal/links; its configuration:
// pipeline.LinkHandler.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/pipeline"
)

func main() {
	log := slog.New(lambdacontext.NewLogHandler())
	h, err := pipeline.LinkHandler(context.Background(), os.Getenv, log)
	pipeline.Check(log, err, "configuration")
	lambda.Start(links.FunctionURL(h))
}
