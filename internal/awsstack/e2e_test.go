//go:build awsstack

package awsstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/letterboxmail/letterbox/internal/e2e"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

const hookSecret = "whsec_ZGV2LW9ubHktc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbg=="

// e2eRoutes: hook@ goes to the webhook receiver only; links@ to the
// links receiver, with attachment links; all@ takes every kind of action.
func e2eRoutes(hook, links, sinkAddr, targetQueue string) []byte {
	return []byte(fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: links
    match:
      recipient: "links@example.test"
    actions:
      - webhook:
          url: %q
          secret: %q
          attachments: links
          allow_private_network: true
    stop: true
  - name: hook
    match:
      recipient: "hook@example.test"
    actions:
      - webhook:
          url: %q
          secret: %q
          allow_private_network: true
    stop: true
  - name: all
    match:
      recipient: "all@example.test"
    actions:
      - webhook:
          url: %q
          secret: %q
          allow_private_network: true
      - forward:
          to: ["someone@elsewhere.test"]
          smarthost: %q
          starttls: false
          allow_private_network: true
      - lambda:
          function: "arn:aws:lambda:us-east-1:123456789012:function:mail-handler"
      - sqs:
          queue_url: %q
      - sns:
          topic_arn: "arn:aws:sns:us-east-1:123456789012:mail"
      - eventbridge:
          source: letterbox
    stop: true
`, links+"/links", hookSecret, hook+"/hook", hookSecret, hook+"/all", hookSecret, sinkAddr, targetQueue))
}

type stackRun struct {
	st                  *Stack
	recv                *e2e.Receiver
	sink                *sink
	lambda, sns, events *endpoint
	links               *eventReceiver
	target              string
	log                 *testLog
}

// startE2E brings up the stack with the e2e routes and every local
// endpoint the deliver function publishes to.
func startE2E(t *testing.T, params map[string]string, o Options) *stackRun {
	bin, emu := artefacts(t)
	x := &stackRun{log: newTestLog(t, "stack"), sink: startSink(t), lambda: lambdaEndpoint(t), sns: snsEndpoint(t), events: eventsEndpoint(t),
		links: startEventReceiver(t, hookSecret)}
	var err error
	if x.recv, err = e2e.NewReceiver("hooks", hookSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.recv.Close)
	dns := testenv.StartDNS(t)
	p := map[string]string{"Domains": "example.test", "DnsResolver": dns.Addr, "ForwardSrsDomain": "fwd.example.test"}
	for k, v := range params {
		p[k] = v
	}
	o.Template, o.Params, o.Bin, o.Emulator, o.Output = templatePath(t), p, bin, emu, x.log
	o.Endpoints = map[string]string{"LAMBDA": x.lambda.URL, "SNS": x.sns.URL, "EVENTBRIDGE": x.events.URL}
	// The sqs action's queue lives in sqslocal; its URL must be known
	// before the routes are written, and sqslocal before the stack:
	// Start creates it through a hook.
	o.RoutesFunc = func(st *Stack) []byte {
		if _, err := st.SQS.CreateQueue("mail-target", nil); err != nil {
			t.Fatal(err)
		}
		x.target = st.SQS.QueueURL("mail-target")
		return e2eRoutes(x.recv.URL(), x.links.URL, x.sink.Addr, x.target)
	}
	x.st = Start(t, o)
	return x
}

func TestEndToEnd(t *testing.T) {
	x := startE2E(t, nil, Options{})
	swaks := testenv.Require(t, "swaks", "apt-get install swaks")
	source := testenv.Require(t, "smtp-source", "apt-get install postfix")

	out, err := exec.Command(swaks, "--server", x.st.Gateway.SMTPAddr, "--from", "alice@sender.test", "--to", "all@example.test",
		"--header", "Subject: every action", "--body", "Hello from swaks.", "--attach-type", "text/csv", "--attach", "@/etc/hostname").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250 ") {
		t.Fatalf("swaks: no 250:\n%s", out)
	}
	// links@: a binary attachment and a text part over MaxBodyBytes,
	// both delivered as links to the link function's URL.
	attachment, bigText := linkTestFiles(t)
	out, err = exec.Command(swaks, "--server", x.st.Gateway.SMTPAddr, "--from", "carol@sender.test", "--to", "links@example.test",
		"--header", "Subject: links", "--body", "@"+bigText.path, "--attach-type", "application/octet-stream",
		"--attach-name", "blob.bin", "--attach", "@"+attachment.path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<-  250 ") {
		t.Fatalf("swaks (links): %v\n%s", err, out)
	}
	host, port, _ := strings.Cut(x.st.Gateway.SMTPAddr, ":")
	out, err = exec.Command(source, "-m", "5", "-s", "2", "-l", "2048", "-f", "bob@sender.test", "-t", "hook@example.test", "inet:"+host+":"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	waitFor(t, 3*time.Minute, "6 signed webhooks, a forward and 4 publishes", func() bool {
		return len(x.recv.Requests()) >= 6 && len(x.sink.messages()) >= 1 && len(x.lambda.requests()) >= 1 &&
			len(x.sns.requests()) >= 1 && len(x.events.requests()) >= 1 && x.targetCount(t) >= 1
	})
	ids := map[string]bool{}
	for _, r := range x.recv.Requests() {
		if !r.Delivered() {
			t.Errorf("webhook request not delivered (signature checked with the webhook package): %+v", r)
		}
		ids[r.MessageID] = true
	}
	if len(ids) != 6 {
		t.Errorf("webhooks for %d distinct messages, want 6 (1 from swaks, 5 from smtp-source)", len(ids))
	}
	if fwd := string(x.sink.messages()[0]); !strings.Contains(fwd, "Hello from swaks.") {
		t.Errorf("forwarded message lacks the body:\n%s", fwd)
	}
	var lambdaEvent struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(x.lambda.requests()[0], &lambdaEvent); err != nil || lambdaEvent.Type == "" {
		t.Errorf("lambda action's event: %v %s", err, x.lambda.requests()[0])
	}
	if !strings.Contains(string(x.sns.requests()[0]), "Action=Publish") {
		t.Errorf("sns request: %s", x.sns.requests()[0])
	}
	if !strings.Contains(string(x.events.requests()[0]), `"Source":"letterbox"`) {
		t.Errorf("eventbridge request: %s", x.events.requests()[0])
	}
	// Each stage ran under the emulator through the event source mappings.
	seen := map[string]int{}
	for _, inv := range x.st.Invocations() {
		if inv.Err == nil {
			seen[inv.Mapping] += inv.Records
		}
	}
	if seen["RawMail"] < 6 || seen["DeliveryJobs"] < 6 {
		t.Errorf("records handled per mapping: %v", seen)
	}

	x.checkLinks(t, attachment, bigText)
}

func (x *stackRun) targetCount(t *testing.T) int {
	out, err := x.st.SQSClient.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(x.target),
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"}})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &n)
	return n
}
