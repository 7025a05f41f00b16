// Command link is the attachment link function, behind a Lambda function
// URL (AuthType NONE): it checks a link's token and redirects to a
// short-lived S3 URL presigned with its own current credentials, so links
// live for their whole link_ttl. See internal/links.
package main

import (
	"context"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/letterboxmail/letterbox/internal/lambdaenv"
	"github.com/letterboxmail/letterbox/internal/links"
)

func main() {
	log := slog.New(lambdacontext.NewLogHandler())
	h, err := lambdaenv.LoadLinkHandler(context.Background(), log)
	lambdaenv.Check(log, err, "configuration")
	lambda.Start(links.FunctionURL(h))
}
