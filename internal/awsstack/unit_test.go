//go:build !awsstack

package awsstack

// Unit tests of the stand-in's parts, run by make test (no external
// programs): the template's evaluation and the event source mapping's
// batch semantics. The stack itself is tested by make test-aws (files
// with the awsstack build tag, which leaves these out: CI runs each test
// once).

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
	"github.com/letterboxmail/letterbox/internal/sqslocal"
)

func repoTemplate(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "template.yaml")
}

func TestTemplateEvaluation(t *testing.T) {
	tp, err := LoadTemplate(repoTemplate(t), map[string]string{"Domains": "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := tp.String(tp.T.Resource("MailBucket").Path("Properties", "BucketName"))
	if err != nil {
		t.Fatal(err)
	}
	// ${AWS::AccountId}-${AWS::Region}-<first group of the stack id's UUID>
	if want := "letterbox-123456789012-us-east-1-1a2b3c4d"; bucket != want {
		t.Errorf("bucket = %q, want %q", bucket, want)
	}
	tp.Refs["MailBucket"] = bucket
	tp.Attrs["MailBucket.Arn"] = "arn:aws:s3:::" + bucket
	for _, id := range tp.Queues() {
		tp.Refs[id] = "http://sqs.local/" + id
		tp.Attrs[id+".Arn"] = "arn:aws:sqs:us-east-1:123456789012:" + id
	}
	tp.Refs["LinkKeySecret"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:LinkKeySecret-AbCdEf"
	tp.Attrs["LinkFunctionUrl.FunctionUrl"] = "http://127.0.0.1:9/"
	if q := tp.Queues(); len(q) != 4 || q[0] != "DeliveryDeadLetterQueue" || q[1] != "RawDeadLetterQueue" {
		t.Errorf("queues in creation order = %v, dead-letter queues first", q)
	}

	f, err := tp.Function("IngestFunction")
	if err != nil {
		t.Fatal(err)
	}
	if f.MemoryMB != 512 || f.Timeout != 60*time.Second || f.LogFormat != "JSON" || f.LogLevel != "INFO" {
		t.Errorf("ingest: memory %d, timeout %v, log %s %s", f.MemoryMB, f.Timeout, f.LogFormat, f.LogLevel)
	}
	for k, want := range map[string]string{
		"LETTERBOX_STORE":              "s3://" + bucket,
		"LETTERBOX_ROUTES":             "s3://" + bucket + "/config/routes.yaml",
		"LETTERBOX_DELIVERY_QUEUE_URL": "http://sqs.local/DeliveryQueue",
		"LETTERBOX_KEEP_PARSED":        "false",
		"LETTERBOX_JOURNAL":            "failures",
	} {
		if f.Env[k] != want {
			t.Errorf("ingest %s = %q, want %q", k, f.Env[k], want)
		}
	}
	if len(f.Events) != 1 || f.Events[0] != (SQSEventSpec{Name: "RawMail", QueueARN: "arn:aws:sqs:us-east-1:123456789012:RawQueue", BatchSize: 10, Window: time.Second, ReportFailures: true}) {
		t.Errorf("ingest events = %+v", f.Events)
	}
	d, err := tp.Function("DeliverFunction")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Env["LETTERBOX_SRS_DOMAIN"]; ok {
		t.Error("LETTERBOX_SRS_DOMAIN is set without ForwardSrsDomain (AWS::NoValue must drop it)")
	}
	if d.Env["LETTERBOX_LINK_BASE_URL"] != "http://127.0.0.1:9/" || d.Env["LETTERBOX_LINK_KEY_ARN"] != tp.Refs["LinkKeySecret"] || d.URLAuthType != "" {
		t.Errorf("deliver: link base %q, key %q, URL auth %q", d.Env["LETTERBOX_LINK_BASE_URL"], d.Env["LETTERBOX_LINK_KEY_ARN"], d.URLAuthType)
	}
	l, err := tp.Function("LinkFunction")
	if err != nil {
		t.Fatal(err)
	}
	if l.URLAuthType != "NONE" || l.MemoryMB != 128 || l.Timeout != 10*time.Second || l.Env["LETTERBOX_LINK_KEY_ARN"] != tp.Refs["LinkKeySecret"] || len(l.Events) != 0 {
		t.Errorf("link function: %+v", l)
	}

	q, err := tp.Queue("RawQueue")
	if err != nil {
		t.Fatal(err)
	}
	var rp map[string]any
	if err := json.Unmarshal([]byte(q.Attrs["RedrivePolicy"]), &rp); err != nil || rp["maxReceiveCount"] != 5.0 || rp["deadLetterTargetArn"] != "arn:aws:sqs:us-east-1:123456789012:RawDeadLetterQueue" {
		t.Errorf("RawQueue RedrivePolicy = %s", q.Attrs["RedrivePolicy"])
	}
	if q.Attrs["VisibilityTimeout"] != "361" {
		t.Errorf("RawQueue VisibilityTimeout = %q", q.Attrs["VisibilityTimeout"])
	}

	n, err := tp.BucketNotifications("MailBucket")
	if err != nil {
		t.Fatal(err)
	}
	if len(n) != 1 || n[0].Prefix != "raw/" || n[0].QueueARN != "arn:aws:sqs:us-east-1:123456789012:RawQueue" {
		t.Fatalf("notifications = %+v", n)
	}
	for _, c := range []struct {
		event, key string
		want       bool
	}{
		{"ObjectCreated:Put", "raw/x.eml", true},
		{"ObjectCreated:CompleteMultipartUpload", "raw/x.eml", true},
		{"ObjectRemoved:Delete", "raw/x.eml", false},
		{"ObjectCreated:Put", "parsed/x.json", false},
	} {
		if got := n[0].Matches(c.event, c.key); got != c.want {
			t.Errorf("%s %s matches = %v, want %v", c.event, c.key, got, c.want)
		}
	}

	env, err := tp.ContainerEnv("GatewayTaskDefinition", "smtpgw")
	if err != nil {
		t.Fatal(err)
	}
	if env["LETTERBOX_MAX_MESSAGE_BYTES"] != "26214400" || env["LETTERBOX_STORE"] != "s3://"+bucket || env["LETTERBOX_SMTP_ADDR"] != ":2525" {
		t.Errorf("gateway environment = %v", env)
	}
}

func TestTemplateRefusesMissingParameter(t *testing.T) {
	_, err := LoadTemplate(repoTemplate(t), nil)
	if err == nil || !regexpMatch(`template\.yaml:\d+: parameter Domains has no default`, err.Error()) {
		t.Fatalf("err = %v, want the file, line and parameter", err)
	}
}

// invoker answers every invocation with what answer returns.
type invoker func(ev events.SQSEvent) ([]byte, error)

func (f invoker) Invoke(_ context.Context, payload []byte) (lambdalocal.Result, error) {
	var ev events.SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return lambdalocal.Result{}, err
	}
	out, err := f(ev)
	return lambdalocal.Result{Payload: out}, err
}

// pollerOn returns a poller on a fresh queue (visibility 30 s on a clock
// that stands still, so items left on the queue stay in flight) holding
// three messages.
func pollerOn(t *testing.T, fn invoker) (*Poller, func() (visible, inflight int)) {
	clock := sqslocal.NewFakeClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	srv := sqslocal.New(sqslocal.Options{Region: Region, AccountID: AccountID, Clock: clock})
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	arn, err := srv.CreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.New(sqs.Options{Region: Region, Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), BaseEndpoint: aws.String(srv.URL()), HTTPClient: sqslocal.HTTPClient()})
	url := srv.QueueURL("q")
	for i := range 3 {
		if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("m" + strconv.Itoa(i)),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("test")}}}); err != nil {
			t.Fatal(err)
		}
	}
	p := &Poller{Spec: SQSEventSpec{Name: "m", QueueARN: arn, BatchSize: 3, ReportFailures: true}, QueueURL: url, SQS: client, Function: fn, Region: Region}
	count := func() (int, int) {
		out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
		i, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
		return v, i
	}
	return p, count
}

func once(t *testing.T, p *Poller) Invocation {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inv, err := p.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestPollerDeletesAllButReportedFailures(t *testing.T) {
	var seen events.SQSEvent
	p, count := pollerOn(t, func(ev events.SQSEvent) ([]byte, error) {
		seen = ev
		return json.Marshal(events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: ev.Records[1].MessageId}}})
	})
	inv := once(t, p)
	if inv.Err != nil || inv.Records != 3 || inv.Failed != 1 || inv.Deleted != 2 {
		t.Fatalf("invocation = %+v", inv)
	}
	r := seen.Records[0]
	if r.EventSource != "aws:sqs" || r.EventSourceARN != p.Spec.QueueARN || r.AWSRegion != Region || r.ReceiptHandle == "" ||
		r.Attributes["ApproximateReceiveCount"] != "1" || r.Attributes["SentTimestamp"] == "" ||
		r.MessageAttributes["kind"].DataType != "String" || aws.ToString(r.MessageAttributes["kind"].StringValue) != "test" || r.Md5OfBody == "" {
		t.Errorf("record as Lambda builds it: %+v", r)
	}
	if v, i := count(); v != 0 || i != 1 {
		t.Errorf("after the batch: %d visible, %d in flight; want the failed item alone in flight", v, i)
	}
}

func TestPollerFunctionErrorKeepsTheBatch(t *testing.T) {
	p, count := pollerOn(t, func(events.SQSEvent) ([]byte, error) {
		return nil, &lambdalocal.FunctionError{Type: "errorString", Message: "boom"}
	})
	inv := once(t, p)
	var fe *lambdalocal.FunctionError
	if !errors.As(inv.Err, &fe) || inv.Failed != 3 || inv.Deleted != 0 {
		t.Fatalf("invocation = %+v", inv)
	}
	if v, i := count(); v != 0 || i != 3 {
		t.Errorf("after a function error: %d visible, %d in flight; want all 3 in flight", v, i)
	}
}

func TestPollerUnknownItemFailsTheBatch(t *testing.T) {
	p, count := pollerOn(t, func(events.SQSEvent) ([]byte, error) {
		return []byte(`{"batchItemFailures":[{"itemIdentifier":"not-in-the-batch"}]}`), nil
	})
	inv := once(t, p)
	if inv.Err == nil || inv.Failed != 3 || inv.Deleted != 0 {
		t.Fatalf("invocation = %+v", inv)
	}
	if _, i := count(); i != 3 {
		t.Errorf("%d in flight, want 3: nothing deleted", i)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
