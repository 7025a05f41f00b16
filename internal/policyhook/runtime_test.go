package policyhook_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/lambdalocal"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// emulated is a LambdaAPI that runs the function's real bootstrap under
// the Lambda Runtime Interface Emulator: the Invoke API as Lambda answers
// it synchronously (payload, or X-Amz-Function-Error with the error
// document).
type emulated struct{ f *lambdalocal.Function }

func (e emulated) Invoke(ctx context.Context, in *lambda.InvokeInput, _ ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	if in.InvocationType != "RequestResponse" {
		return nil, errors.New("the hook must be invoked RequestResponse")
	}
	res, err := e.f.Invoke(ctx, in.Payload)
	var fe *lambdalocal.FunctionError
	switch {
	case errors.As(err, &fe):
		return &lambda.InvokeOutput{StatusCode: 200, FunctionError: aws.String("Unhandled"), Payload: res.Payload}, nil
	case err != nil:
		return nil, err
	}
	return &lambda.InvokeOutput{StatusCode: 200, Payload: res.Payload}, nil
}

// TestAskLambdaRuntime: a hook written with aws-lambda-go, run by the
// Runtime Interface Emulator, answers the gateway's question; its error
// and its slowness are failures within the hook's deadline.
func TestAskLambdaRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Lambda Runtime Interface Emulator")
	}
	rie := testenv.Require(t, "aws-lambda-rie", "make tools (or: go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d)")
	bin := filepath.Join(t.TempDir(), "bootstrap")
	if out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bin, "./testdata/hookfn").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	log := &testenv.Buffer{}
	f := lambdalocal.New(lambdalocal.Config{Name: "policy", Bootstrap: bin, Emulator: rie, MemoryMB: 128, Timeout: 10 * time.Second, Output: log})
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			t.Logf("emulator output:\n%s", log.String())
		}
	})
	c := policyhook.New(egress.Policy{}, emulated{f})
	target := policyhook.Target{URL: "arn:aws:lambda:eu-west-1:123456789012:function:policy", Timeout: 5 * time.Second}
	ask := func(rcpt string, timeout time.Duration) (*policyhook.Answer, error) {
		q := query()
		q.Stage, q.Rcpt = policyhook.StageRcpt, rcpt
		target.Timeout = timeout
		return c.Ask(context.Background(), target, "id", q)
	}
	if a, err := ask("yes@example.test", 5*time.Second); err != nil || a.Action != "accept" {
		t.Fatalf("accept: %+v %v", a, err)
	}
	if a, err := ask("no@example.test", 5*time.Second); err != nil || a.Action != "reject" || a.Code != 550 || a.EnhancedCode != "5.1.1" || a.Message != "No such user at the hook" {
		t.Fatalf("reject: %+v %v", a, err)
	}
	if _, err := ask("fail@example.test", 5*time.Second); err == nil || !strings.Contains(err.Error(), `function error "Unhandled"`) {
		t.Fatalf("function error: %v", err)
	}
	start := time.Now()
	if _, err := ask("slow@example.test", 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("slow function: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the deadline took %s", d)
	}
}
