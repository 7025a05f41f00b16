// Command hookfn is a policy hook as a Lambda function, for the tests of
// package policyhook: it refuses recipients starting with "no", sleeps for
// "slow" ones and fails for "fail" ones.
package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/letterboxmail/letterbox/internal/policyhook"
)

func handle(ctx context.Context, req policyhook.Request) (*policyhook.Answer, error) {
	if req.Type != policyhook.TypeRcpt || req.Data == nil {
		return nil, errors.New("not a policy.rcpt request")
	}
	switch rcpt := req.Data.Rcpt; {
	case strings.HasPrefix(rcpt, "no"):
		return &policyhook.Answer{Action: policyhook.Reject, Code: 550, EnhancedCode: "5.1.1", Message: "No such user at the hook"}, nil
	case strings.HasPrefix(rcpt, "slow"):
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
	case strings.HasPrefix(rcpt, "fail"):
		return nil, errors.New("the hook failed")
	}
	return &policyhook.Answer{Action: policyhook.Accept}, nil
}

func main() { lambda.Start(handle) }
