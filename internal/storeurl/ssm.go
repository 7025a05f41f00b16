package storeurl

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// SSMAPI is the part of the SSM client the routes loader uses.
type SSMAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, opts ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// SSMLoader loads a routes file kept in an SSM parameter (String or
// SecureString; advanced parameters hold up to 8 KB). A parameter's version
// number changes on every write, so a reload parses only when it changed.
type SSMLoader struct {
	API       SSMAPI
	Parameter string
}

// Name returns the parameter's URL.
func (l SSMLoader) Name() string { return "ssm://" + l.Parameter }

// Load fetches the parameter and reports whether its version changed.
func (l SSMLoader) Load(ctx context.Context, version string) ([]byte, string, bool, error) {
	out, err := l.API.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(l.Parameter), WithDecryption: aws.Bool(true)})
	if err != nil {
		return nil, "", false, fault.Temporary(fmt.Errorf("ssm parameter %s: %w", l.Parameter, err))
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, "", false, fault.Permanentf("ssm parameter %s has no value", l.Parameter)
	}
	v := strconv.FormatInt(out.Parameter.Version, 10)
	if v == version {
		return nil, version, false, nil
	}
	return []byte(*out.Parameter.Value), v, true, nil
}
