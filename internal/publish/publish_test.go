package publish_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/publish"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// request is one API request as the real SDK sent it.
type request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// JSON decodes a JSON-protocol body.
func (r request) JSON(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("request body is not JSON: %v\n%s", err, r.Body)
	}
	return v
}

// Form decodes a Query-protocol body.
func (r request) Form(t *testing.T) url.Values {
	t.Helper()
	v, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatalf("request body is not a form: %v", err)
	}
	return v
}

// fake is an HTTP server standing in for one AWS service, which cannot run
// here: it records each request and answers with the test's handler.
type fake struct {
	URL    string
	mu     sync.Mutex
	reqs   []request
	answer func(w http.ResponseWriter, r request)
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r request)) *fake {
	f := &fake{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		b, _ := io.ReadAll(hr.Body)
		r := request{Method: hr.Method, Path: hr.URL.EscapedPath(), Header: hr.Header.Clone(), Body: b}
		f.mu.Lock()
		f.reqs = append(f.reqs, r)
		f.mu.Unlock()
		f.answer(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// The services' answers, as their protocols shape them.

// lambdaAccepted answers an asynchronous Invoke.
func lambdaAccepted(w http.ResponseWriter, _ request) {
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.WriteHeader(http.StatusAccepted)
}

// restJSONError is a Lambda (REST-JSON) error.
func restJSONError(status int, code string) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, _ request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", code)
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"Type":"User","message":"%s happened"}`, code)
	}
}

// sqsSent answers SendMessage with the body's MD5, which the SDK checks.
func sqsSent(w http.ResponseWriter, r request) {
	var in struct{ MessageBody string }
	json.Unmarshal(r.Body, &in)
	sum := md5.Sum([]byte(in.MessageBody))
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	fmt.Fprintf(w, `{"MessageId":"5fea7756-0ea4-451a-a703-a558b933e274","MD5OfMessageBody":"%s"}`, hex.EncodeToString(sum[:]))
}

// jsonError is an SQS (JSON 1.0, query-compatible) or EventBridge (JSON
// 1.1) error; query, if set, is SQS's x-amzn-query-error code.
func jsonError(status int, typ, query, msg string) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, _ request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if query != "" {
			fault := "Sender"
			if status >= 500 {
				fault = "Receiver"
			}
			w.Header().Set("X-Amzn-Query-Error", query+";"+fault)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"__type":"%s","message":%q}`, typ, msg)
	}
}

// snsPublished answers a Query-protocol Publish with XML.
func snsPublished(w http.ResponseWriter, _ request) {
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>94f20ce6-13c5-43a0-9a9e-ca52d816e90b</MessageId></PublishResult><ResponseMetadata><RequestId>f187a3c1-376f-11df-8963-01868b7c937a</RequestId></ResponseMetadata></PublishResponse>`)
}

// queryError is an SNS (Query protocol) error.
func queryError(status int, code, msg string) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, _ request) {
		typ := "Sender"
		if status >= 500 {
			typ = "Receiver"
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>9a0b6c1e-0f3c-5e5b-b5c4-0a7e2f6c1d11</RequestId></ErrorResponse>`, typ, code, msg)
	}
}

// eventsPut answers PutEvents; a non-empty entryCode fails the entry.
func eventsPut(entryCode, entryMsg string) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, _ request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if entryCode == "" {
			io.WriteString(w, `{"FailedEntryCount":0,"Entries":[{"EventId":"11710aed-b79e-4468-a20b-bb3c0c3b4860"}]}`)
			return
		}
		fmt.Fprintf(w, `{"FailedEntryCount":1,"Entries":[{"ErrorCode":%q,"ErrorMessage":%q}]}`, entryCode, entryMsg)
	}
}

// Fixtures.

var created = time.Date(2026, 11, 22, 16, 40, 12, 500_000_000, time.UTC)

func testJob() *delivery.Job {
	return &delivery.Job{
		ID: "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0", MessageID: "01JDQ7ZK3M8X9V2N4B6C8D0E1F",
		Route: "support", Captures: map[string]string{"team": "ops"}, CreatedAt: created,
	}
}

func testMessage(text string) *message.Message {
	return &message.Message{
		ID:         "01JDQ7ZK3M8X9V2N4B6C8D0E1F",
		ReceivedAt: created,
		Envelope:   message.Envelope{MailFrom: "alice@sender.test", RcptTo: []string{"support@example.test"}, ClientIP: "192.0.2.1"},
		MessageID:  "<m1@sender.test>",
		Subject:    "Invoice ✓",
		From:       &message.Address{Name: "Alice", Address: "alice@sender.test"},
		To:         []message.Address{{Address: "support@example.test"}},
		Cc:         []message.Address{{Address: "bob@example.test"}},
		Headers:    []message.Header{{Name: "Subject", Value: "Invoice ✓"}, {Name: "X-Long", Value: text}},
		Text:       text,
		HTML:       "<p>" + text + "</p>",
		Parts:      []message.Part{{ContentType: "text/plain", Content: text}},
		Attachments: []message.Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Size: 123456,
			SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Key: "attachments/01JDQ7ZK3M8X9V2N4B6C8D0E1F/2"}},
		Auth:   &message.Auth{SPF: &message.SPFResult{Result: "pass", Domain: "sender.test"}, AuthenticationResults: "mx.example.test; spf=pass"},
		RawKey: "raw/01JDQ7ZK3M8X9V2N4B6C8D0E1F.eml",
		Size:   4242,
	}
}

func expand(j *delivery.Job) func(string) string {
	return func(s string) string { return routing.Matched{Captures: j.Captures}.Expand(s) }
}

// publisher builds a Publisher whose clients talk to the fakes; the SDK
// does not retry, so each attempt is one request.
func publisher(e publish.Endpoints, opts ...publish.Option) *publish.Publisher {
	cfg := aws.Config{
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "SECRET", ""),
		RetryMaxAttempts: 1,
	}
	return publish.New(cfg, append([]publish.Option{publish.WithEndpoints(e)}, opts...)...)
}

func run(t *testing.T, p *publish.Publisher, a *routing.Action, text string) delivery.Result {
	t.Helper()
	j := testJob()
	return p.Publish(context.Background(), j, testMessage(text), a, expand(j))
}

func wantBody(t *testing.T) []byte {
	t.Helper()
	b, err := delivery.Body(testJob(), testMessage("Please find the invoice attached."))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLambdaInvokesAsynchronouslyWithTheWebhookBody(t *testing.T) {
	f := newFake(t, lambdaAccepted)
	p := publisher(publish.Endpoints{Lambda: f.URL})
	res := run(t, p, &routing.Action{Lambda: &routing.LambdaAction{Function: "inbound-${team}:live"}}, "Please find the invoice attached.")
	if res.Err != nil || res.Status != http.StatusAccepted {
		t.Fatalf("Publish = %+v, want 202 and no error", res)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/2015-03-31/functions/inbound-ops%3Alive/invocations" {
		t.Fatalf("request = %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("X-Amz-Invocation-Type"); got != "Event" {
		t.Fatalf("X-Amz-Invocation-Type = %q, want Event (asynchronous)", got)
	}
	if !bytes.Equal(r.Body, wantBody(t)) {
		t.Fatalf("payload:\n%s\nwant the webhook body:\n%s", r.Body, wantBody(t))
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(r.Header.Get("Authorization"), "/eu-west-1/lambda/") {
		t.Fatalf("Authorization = %q, want a SigV4 signature for lambda", r.Header.Get("Authorization"))
	}
}

func TestSQSSendsTheWebhookBodyWithTheJobID(t *testing.T) {
	const queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbound"
	tests := []struct {
		name, queue, group   string
		wantGroup, wantDedup any
	}{
		{"standard", queue, "", nil, nil},
		{"standard with a group (fair queue)", queue, "${team}", "ops", nil},
		{"FIFO", queue + ".fifo", "", "01JDQ7ZK3M8X9V2N4B6C8D0E1F", "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0"},
		{"FIFO with a group", queue + ".fifo", "team-${team}", "team-ops", "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, sqsSent)
			p := publisher(publish.Endpoints{SQS: f.URL})
			res := run(t, p, &routing.Action{SQS: &routing.SQSAction{QueueURL: tt.queue, MessageGroupID: tt.group}}, "Please find the invoice attached.")
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			r := f.requests()[0]
			if got := r.Header.Get("X-Amz-Target"); got != "AmazonSQS.SendMessage" {
				t.Fatalf("X-Amz-Target = %q", got)
			}
			in := r.JSON(t)
			if in["QueueUrl"] != tt.queue || in["MessageBody"] != string(wantBody(t)) {
				t.Fatalf("QueueUrl = %v, MessageBody = %v", in["QueueUrl"], in["MessageBody"])
			}
			attr, _ := in["MessageAttributes"].(map[string]any)["webhook-id"].(map[string]any)
			if attr["DataType"] != "String" || attr["StringValue"] != "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0" {
				t.Fatalf("MessageAttributes = %v, want webhook-id = the job id", in["MessageAttributes"])
			}
			if in["MessageGroupId"] != tt.wantGroup || in["MessageDeduplicationId"] != tt.wantDedup {
				t.Fatalf("MessageGroupId = %v, MessageDeduplicationId = %v; want %v, %v", in["MessageGroupId"], in["MessageDeduplicationId"], tt.wantGroup, tt.wantDedup)
			}
		})
	}
}

func TestSNSPublishesTheWebhookBodyWithTheJobID(t *testing.T) {
	const topic = "arn:aws:sns:eu-west-1:123456789012:inbound"
	tests := []struct {
		name, topic, group   string
		wantGroup, wantDedup string
	}{
		{"standard", topic, "", "", ""},
		{"FIFO", topic + ".fifo", "", "01JDQ7ZK3M8X9V2N4B6C8D0E1F", "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0"},
		{"FIFO with a group", topic + ".fifo", "${team}", "ops", "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, snsPublished)
			p := publisher(publish.Endpoints{SNS: f.URL})
			res := run(t, p, &routing.Action{SNS: &routing.SNSAction{TopicARN: tt.topic, MessageGroupID: tt.group}}, "Please find the invoice attached.")
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			in := f.requests()[0].Form(t)
			if in.Get("Action") != "Publish" || in.Get("Version") != "2010-03-31" || in.Get("TopicArn") != tt.topic {
				t.Fatalf("form = %v", in)
			}
			if in.Get("Message") != string(wantBody(t)) {
				t.Fatalf("Message:\n%s\nwant the webhook body", in.Get("Message"))
			}
			if in.Get("MessageAttributes.entry.1.Name") != "webhook-id" || in.Get("MessageAttributes.entry.1.Value.DataType") != "String" ||
				in.Get("MessageAttributes.entry.1.Value.StringValue") != "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0" {
				t.Fatalf("message attributes = %v, want webhook-id = the job id", in)
			}
			if in.Get("MessageGroupId") != tt.wantGroup || in.Get("MessageDeduplicationId") != tt.wantDedup {
				t.Fatalf("MessageGroupId = %q, MessageDeduplicationId = %q", in.Get("MessageGroupId"), in.Get("MessageDeduplicationId"))
			}
		})
	}
}

func TestEventBridgePutsTheWebhookBodyAsDetail(t *testing.T) {
	tests := []struct {
		name string
		a    routing.EventBridgeAction
		bus  any
	}{
		{"default bus", routing.EventBridgeAction{Source: "letterbox", DetailType: "message.received"}, nil},
		{"named bus", routing.EventBridgeAction{Bus: "mail-${team}", Source: "com.example.mail", DetailType: "Inbound"}, "mail-ops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, eventsPut("", ""))
			p := publisher(publish.Endpoints{EventBridge: f.URL})
			a := tt.a
			res := run(t, p, &routing.Action{EventBridge: &a}, "Please find the invoice attached.")
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			r := f.requests()[0]
			if got := r.Header.Get("X-Amz-Target"); got != "AWSEvents.PutEvents" {
				t.Fatalf("X-Amz-Target = %q", got)
			}
			entries := r.JSON(t)["Entries"].([]any)
			if len(entries) != 1 {
				t.Fatalf("%d entries", len(entries))
			}
			e := entries[0].(map[string]any)
			if e["Source"] != tt.a.Source || e["DetailType"] != tt.a.DetailType || e["EventBusName"] != tt.bus {
				t.Fatalf("entry = %v", e)
			}
			if e["Detail"] != string(wantBody(t)) {
				t.Fatalf("Detail:\n%v\nwant the webhook body", e["Detail"])
			}
			if res, _ := e["Resources"].([]any); len(res) != 1 || res[0] != "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0" {
				t.Fatalf("Resources = %v, want [the job id]", e["Resources"])
			}
			if tm, _ := e["Time"].(float64); int64(tm) != created.Unix() {
				t.Fatalf("Time = %v, want the job's created_at %d", e["Time"], created.Unix())
			}
		})
	}
}

// classCase is one error answer and the classification it must get.
type classCase struct {
	name      string
	answer    func(http.ResponseWriter, request)
	temporary bool
	status    int
	contains  string
}

func checkClass(t *testing.T, tests []classCase, endpoints func(url string) publish.Endpoints, a *routing.Action) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.answer)
			res := run(t, publisher(endpoints(f.URL)), a, "hello")
			if res.Err == nil {
				t.Fatal("Publish succeeded, want an error")
			}
			if got := fault.IsTemporary(res.Err); got != tt.temporary {
				t.Fatalf("temporary = %v, want %v (err: %v)", got, tt.temporary, res.Err)
			}
			if res.Status != tt.status {
				t.Fatalf("status = %d, want %d", res.Status, tt.status)
			}
			if !strings.Contains(res.Err.Error(), tt.contains) {
				t.Fatalf("err = %v, want it to contain %q", res.Err, tt.contains)
			}
			if n := len(f.requests()); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

func TestLambdaErrorClasses(t *testing.T) {
	checkClass(t, []classCase{
		{"throttled", restJSONError(429, "TooManyRequestsException"), true, 429, "lambda: "},
		{"service error", restJSONError(500, "ServiceException"), true, 500, "ServiceException"},
		{"function being updated", restJSONError(409, "ResourceConflictException"), true, 409, "ResourceConflictException"},
		{"function not ready", restJSONError(502, "ResourceNotReadyException"), true, 502, "ResourceNotReadyException"},
		{"ENI limit", restJSONError(502, "ENILimitReachedException"), true, 502, "ENILimitReachedException"},
		{"expired credentials", restJSONError(403, "ExpiredTokenException"), true, 403, "ExpiredTokenException"},
		{"no such function", restJSONError(404, "ResourceNotFoundException"), false, 404, "ResourceNotFoundException"},
		{"access denied", restJSONError(403, "AccessDeniedException"), false, 403, "AccessDeniedException"},
		{"invalid request", restJSONError(400, "InvalidRequestContentException"), false, 400, "InvalidRequestContentException"},
		{"recursion stopped", restJSONError(400, "RecursiveInvocationException"), false, 400, "RecursiveInvocationException"},
	}, func(u string) publish.Endpoints { return publish.Endpoints{Lambda: u} },
		&routing.Action{Lambda: &routing.LambdaAction{Function: "inbound"}})
}

func TestSQSErrorClasses(t *testing.T) {
	checkClass(t, []classCase{
		{"throttled", jsonError(400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled", "Rate exceeded"), true, 400, "sqs: "},
		{"KMS throttled", jsonError(400, "com.amazonaws.sqs#KmsThrottled", "KMS.ThrottlingException", "KMS throttled"), true, 400, "KMS.ThrottlingException"},
		{"internal error", jsonError(500, "InternalError", "InternalError", "We encountered an internal error"), true, 500, "InternalError"},
		{"unavailable", jsonError(503, "ServiceUnavailable", "", "Service unavailable"), true, 503, "ServiceUnavailable"},
		{"no such queue", jsonError(400, "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."), false, 400, "NonExistentQueue"},
		{"access denied", jsonError(403, "AccessDeniedException", "AccessDenied", "Access to the resource is denied"), false, 403, "AccessDenied"},
		{"KMS access denied", jsonError(400, "com.amazonaws.sqs#KmsAccessDenied", "KMS.AccessDeniedException", "denied"), false, 400, "KMS.AccessDeniedException"},
		{"invalid contents", jsonError(400, "com.amazonaws.sqs#InvalidMessageContents", "InvalidMessageContents", "Invalid characters"), false, 400, "InvalidMessageContents"},
	}, func(u string) publish.Endpoints { return publish.Endpoints{SQS: u} },
		&routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/inbound"}})
}

func TestSNSErrorClasses(t *testing.T) {
	checkClass(t, []classCase{
		{"throttled", queryError(400, "Throttled", "Rate exceeded"), true, 400, "sns: "},
		{"KMS throttled", queryError(400, "KMSThrottling", "KMS throttled"), true, 400, "KMSThrottling"},
		{"internal error", queryError(500, "InternalError", "Internal error"), true, 500, "InternalError"},
		{"unavailable", queryError(503, "ServiceUnavailable", "Unavailable"), true, 503, "ServiceUnavailable"},
		{"no such topic", queryError(404, "NotFound", "Topic does not exist"), false, 404, "NotFound"},
		{"not authorized", queryError(403, "AuthorizationError", "User is not authorized to perform SNS:Publish"), false, 403, "AuthorizationError"},
		{"invalid parameter", queryError(400, "InvalidParameter", "Invalid parameter: MessageGroupId"), false, 400, "InvalidParameter"},
		{"KMS disabled", queryError(400, "KMSDisabled", "Key disabled"), false, 400, "KMSDisabled"},
	}, func(u string) publish.Endpoints { return publish.Endpoints{SNS: u} },
		&routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:123456789012:inbound"}})
}

func TestEventBridgeErrorClasses(t *testing.T) {
	checkClass(t, []classCase{
		{"throttled", jsonError(400, "ThrottlingException", "", "Rate exceeded"), true, 400, "eventbridge: "},
		{"internal", jsonError(500, "InternalException", "", "Internal error"), true, 500, "InternalException"},
		{"no such bus", jsonError(400, "ResourceNotFoundException", "", "Event bus mail does not exist."), false, 400, "ResourceNotFoundException"},
		{"access denied", jsonError(400, "AccessDeniedException", "", "not authorized to perform events:PutEvents"), false, 400, "AccessDeniedException"},
		{"validation", jsonError(400, "ValidationException", "", "1 validation error detected"), false, 400, "ValidationException"},
		// PutEvents answers 200 and fails the entry.
		{"entry throttled", eventsPut("ThrottlingException", "Rate exceeded"), true, 0, "ThrottlingException"},
		{"entry internal failure", eventsPut("InternalFailure", "Internal failure"), true, 0, "InternalFailure"},
		{"entry unknown code", eventsPut("SomethingNew", "?"), true, 0, "SomethingNew"},
		{"entry malformed detail", eventsPut("MalformedDetail", "Detail is malformed."), false, 0, "MalformedDetail"},
		{"entry not authorized for source", eventsPut("NotAuthorizedForSourceException", "Not authorized for the source."), false, 0, "NotAuthorizedForSourceException"},
		{"entry access denied", eventsPut("AccessDeniedException", "denied"), false, 0, "AccessDeniedException"},
	}, func(u string) publish.Endpoints { return publish.Endpoints{EventBridge: u} },
		&routing.Action{EventBridge: &routing.EventBridgeAction{Source: "letterbox", DetailType: "message.received"}})
}

func TestNoResponseIsTemporary(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u := srv.URL
		srv.Close()
		res := run(t, publisher(publish.Endpoints{SQS: u}), &routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}}, "hello")
		if res.Err == nil || !fault.IsTemporary(res.Err) || res.Status != 0 {
			t.Fatalf("Publish = %+v, want a temporary error without status", res)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		f := newFake(t, func(w http.ResponseWriter, _ request) { <-release })
		defer close(release)
		p := publisher(publish.Endpoints{Lambda: f.URL}, publish.WithTimeout(200*time.Millisecond))
		res := run(t, p, &routing.Action{Lambda: &routing.LambdaAction{Function: "slow"}}, "hello")
		if res.Err == nil || !fault.IsTemporary(res.Err) || res.Err.Error() != "lambda: no response within 200ms" {
			t.Fatalf("Publish = %+v, want temporary \"lambda: no response within 200ms\"", res)
		}
	})
}

// checkTruncated decodes a published event and checks that it is the
// reduced one.
func checkTruncated(t *testing.T, body []byte, limit int) {
	t.Helper()
	if len(body) > limit {
		t.Fatalf("published %d bytes, over the limit of %d", len(body), limit)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["truncated"] != true {
		t.Fatalf("truncated = %v, want true", raw["truncated"])
	}
	var ev webhook.Event
	json.Unmarshal(body, &ev)
	d := ev.Data
	if ev.Type != webhook.TypeMessageReceived || !ev.Timestamp.Equal(created) || d == nil {
		t.Fatalf("event = %+v", ev)
	}
	if d.Text != "" || d.HTML != "" || d.StrippedText != "" || d.Headers != nil || d.Parts != nil {
		t.Fatalf("reduced data still has bodies or headers: %+v", d)
	}
	want := testMessage("")
	if d.ID != want.ID || d.Subject != want.Subject || d.From.Address != want.From.Address || len(d.To) != 1 || len(d.Cc) != 1 ||
		d.Envelope.MailFrom != want.Envelope.MailFrom || d.RawKey != want.RawKey || d.Size != want.Size || d.Auth == nil ||
		len(d.Attachments) != 1 || d.Attachments[0].Key != want.Attachments[0].Key {
		t.Fatalf("reduced data lost a kept field: %+v", d)
	}
}

func TestTruncation(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<10) // 16 KiB of text, in text, html, parts and a header
	const limit = 8 << 10
	limits := publish.Limits{Lambda: limit, SQS: limit, SNS: limit, EventBridge: limit}
	t.Run("lambda", func(t *testing.T) {
		f := newFake(t, lambdaAccepted)
		res := run(t, publisher(publish.Endpoints{Lambda: f.URL}, publish.WithLimits(limits)), &routing.Action{Lambda: &routing.LambdaAction{Function: "f"}}, big)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkTruncated(t, f.requests()[0].Body, limit)
	})
	t.Run("sqs", func(t *testing.T) {
		f := newFake(t, sqsSent)
		res := run(t, publisher(publish.Endpoints{SQS: f.URL}, publish.WithLimits(limits)), &routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}}, big)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkTruncated(t, []byte(f.requests()[0].JSON(t)["MessageBody"].(string)), limit)
	})
	t.Run("sns", func(t *testing.T) {
		f := newFake(t, snsPublished)
		res := run(t, publisher(publish.Endpoints{SNS: f.URL}, publish.WithLimits(limits)), &routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:123456789012:t"}}, big)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkTruncated(t, []byte(f.requests()[0].Form(t).Get("Message")), limit)
	})
	t.Run("eventbridge", func(t *testing.T) {
		f := newFake(t, eventsPut("", ""))
		res := run(t, publisher(publish.Endpoints{EventBridge: f.URL}, publish.WithLimits(limits)), &routing.Action{EventBridge: &routing.EventBridgeAction{Source: "letterbox", DetailType: "message.received"}}, big)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		e := f.requests()[0].JSON(t)["Entries"].([]any)[0].(map[string]any)
		checkTruncated(t, []byte(e["Detail"].(string)), limit)
	})
	t.Run("fits exactly", func(t *testing.T) {
		// The limit counts what the service counts: body plus the
		// webhook-id attribute for SQS.
		body := wantBody(t)
		exact := len(body) + len("webhook-id") + len("String") + len(testJob().ID)
		f := newFake(t, sqsSent)
		p := publisher(publish.Endpoints{SQS: f.URL}, publish.WithLimits(publish.Limits{SQS: exact}))
		if res := run(t, p, &routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}}, "Please find the invoice attached."); res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := f.requests()[0].JSON(t)["MessageBody"]; got != string(body) {
			t.Fatalf("a body at the limit was changed:\n%v", got)
		}
		p = publisher(publish.Endpoints{SQS: f.URL}, publish.WithLimits(publish.Limits{SQS: exact - 1}))
		run(t, p, &routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}}, "Please find the invoice attached.")
		checkTruncated(t, []byte(f.requests()[1].JSON(t)["MessageBody"].(string)), exact)
	})
	t.Run("too large even reduced", func(t *testing.T) {
		f := newFake(t, lambdaAccepted)
		p := publisher(publish.Endpoints{Lambda: f.URL}, publish.WithLimits(publish.Limits{Lambda: 200}))
		res := run(t, p, &routing.Action{Lambda: &routing.LambdaAction{Function: "f"}}, big)
		if res.Err == nil || fault.IsTemporary(res.Err) || !strings.Contains(res.Err.Error(), "exceeds the limit of 200 even without the message's bodies and headers") {
			t.Fatalf("Publish = %+v, want a permanent size error", res)
		}
		if n := len(f.requests()); n != 0 {
			t.Fatalf("%d requests sent, want none", n)
		}
	})
}

// TestRefusedAsTooLarge: a target configured below the default limit (an
// SQS queue's or SNS topic's MaximumMessageSize) refuses the full event;
// the reduced one is sent at once.
func TestRefusedAsTooLarge(t *testing.T) {
	const max = 4 << 10
	tooLarge := func(refuse func(http.ResponseWriter, request), ok func(http.ResponseWriter, request), size func(request) int) func(http.ResponseWriter, request) {
		return func(w http.ResponseWriter, r request) {
			if size(r) > max {
				refuse(w, r)
				return
			}
			ok(w, r)
		}
	}
	big := strings.Repeat("x", 8<<10)
	tests := []struct {
		name   string
		answer func(http.ResponseWriter, request)
		e      func(string) publish.Endpoints
		a      *routing.Action
		body   func(*testing.T, request) []byte
	}{
		{"lambda 413",
			tooLarge(restJSONError(413, "RequestTooLargeException"), lambdaAccepted, func(r request) int { return len(r.Body) }),
			func(u string) publish.Endpoints { return publish.Endpoints{Lambda: u} },
			&routing.Action{Lambda: &routing.LambdaAction{Function: "f"}},
			func(_ *testing.T, r request) []byte { return r.Body }},
		{"sqs queue with a smaller maximum",
			tooLarge(jsonError(400, "com.amazonaws.sqs#InvalidParameterValue", "InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than 4096 bytes."), sqsSent,
				func(r request) int {
					var in struct{ MessageBody string }
					json.Unmarshal(r.Body, &in)
					return len(in.MessageBody)
				}),
			func(u string) publish.Endpoints { return publish.Endpoints{SQS: u} },
			&routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}},
			func(t *testing.T, r request) []byte { return []byte(r.JSON(t)["MessageBody"].(string)) }},
		{"sns topic with a smaller maximum",
			tooLarge(queryError(400, "InvalidParameter", "Invalid parameter: Message too long"), snsPublished,
				func(r request) int { v, _ := url.ParseQuery(string(r.Body)); return len(v.Get("Message")) }),
			func(u string) publish.Endpoints { return publish.Endpoints{SNS: u} },
			&routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:123456789012:t"}},
			func(t *testing.T, r request) []byte { return []byte(r.Form(t).Get("Message")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.answer)
			res := run(t, publisher(tt.e(f.URL)), tt.a, big)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			reqs := f.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want the full event then the reduced one", len(reqs))
			}
			if b := tt.body(t, reqs[0]); bytes.Contains(b, []byte(`"truncated"`)) {
				t.Fatal("the first request was already reduced")
			}
			checkTruncated(t, tt.body(t, reqs[1]), max)
		})
	}
	t.Run("other validation errors are not retried", func(t *testing.T) {
		f := newFake(t, queryError(400, "InvalidParameter", "Invalid parameter: TopicArn"))
		res := run(t, publisher(publish.Endpoints{SNS: f.URL}), &routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:123456789012:t"}}, big)
		if res.Err == nil || fault.IsTemporary(res.Err) || len(f.requests()) != 1 {
			t.Fatalf("Publish = %+v after %d requests, want one permanent failure", res, len(f.requests()))
		}
	})
}

// queue records what the handler asks of the delivery queue.
type queue struct {
	mu          sync.Mutex
	retries     []time.Duration
	deadLetters []delivery.Job
}

func (q *queue) Send(context.Context, []delivery.Job) error { return nil }
func (q *queue) Retry(_ context.Context, _ string, d time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.retries = append(q.retries, d)
	return nil
}
func (q *queue) DeadLetter(_ context.Context, j delivery.Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadLetters = append(q.deadLetters, j)
	return nil
}

// TestThroughTheDeliverHandler runs jobs through delivery.Handler with a
// Publisher, as the deliver function wires it: delivered, retried or
// dead-lettered by the error's class.
func TestThroughTheDeliverHandler(t *testing.T) {
	tests := []struct {
		name                         string
		answer                       func(http.ResponseWriter, request)
		status                       string
		retries, deadLetters, failed int
	}{
		{"delivered", snsPublished, delivery.StatusDelivered, 0, 0, 0},
		{"throttled: retried", queryError(400, "Throttled", "Rate exceeded"), delivery.StatusRetrying, 1, 0, 1},
		{"no such topic: dead-lettered", queryError(404, "NotFound", "Topic does not exist"), delivery.StatusFailed, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.answer)
			cfg, err := routing.Parse("routes.yaml", []byte(`
domains: [example.test]
routes:
  - name: support
    match: {recipient: "regex:^(?P<team>[a-z]+)@example.test$"}
    actions:
      - sns: {topic_arn: "arn:aws:sns:eu-west-1:123456789012:inbound-${team}"}
        retry: {attempts: 3, initial: 1s, max: 1m}
`))
			if err != nil {
				t.Fatal(err)
			}
			st, err := filestore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			q := &queue{}
			h := &delivery.Handler{Store: st, Routes: routing.Static(cfg), Queue: q, Journal: delivery.Journal{Store: st},
				Publisher: publisher(publish.Endpoints{SNS: f.URL}), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			j := testJob()
			j.Kind, j.Message = "sns", testMessage("Please find the invoice attached.")
			b, _ := json.Marshal(j)
			resp, err := h.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{
				MessageId: "sqs-1", ReceiptHandle: "rh-1", Body: string(b), Attributes: map[string]string{"ApproximateReceiveCount": "1"},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.BatchItemFailures) != tt.failed || len(q.retries) != tt.retries || len(q.deadLetters) != tt.deadLetters {
				t.Fatalf("batch failures %v, retries %v, dead letters %d; want %d, %d, %d",
					resp.BatchItemFailures, q.retries, len(q.deadLetters), tt.failed, tt.retries, tt.deadLetters)
			}
			r, err := delivery.Journal{Store: st}.Get(context.Background(), j.MessageID, j.ID)
			if err != nil || r == nil || r.Status != tt.status {
				t.Fatalf("record = %+v, %v; want status %s", r, err, tt.status)
			}
			if got := f.requests()[0].Form(t).Get("TopicArn"); got != "arn:aws:sns:eu-west-1:123456789012:inbound-ops" {
				t.Fatalf("TopicArn = %q, want the capture expanded", got)
			}
		})
	}
}

func TestUnknownKindIsPermanent(t *testing.T) {
	res := run(t, publisher(publish.Endpoints{}), &routing.Action{Store: true}, "hello")
	if res.Err == nil || fault.IsTemporary(res.Err) {
		t.Fatalf("Publish(store) = %+v, want a permanent error", res)
	}
}

// The endpoint the SDK resolves from the configuration (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_<SERVICE>, or aws.Config.BaseEndpoint as here) is kept
// when no Endpoints override it: the deployed stack's local stand-in
// (internal/awsstack) points the functions at its services that way.
func TestResolvedEndpointKept(t *testing.T) {
	f := newFake(t, snsPublished)
	cfg := aws.Config{
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "SECRET", ""),
		RetryMaxAttempts: 1,
		BaseEndpoint:     aws.String(f.URL),
	}
	res := run(t, publish.New(cfg), &routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:123456789012:t"}}, "hello")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests reached the configured endpoint, want 1", n)
	}
}
