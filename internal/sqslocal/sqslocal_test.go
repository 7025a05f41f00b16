package sqslocal

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// env is a server on 127.0.0.1:0 and a real SDK client pointed at it.
type env struct {
	srv   *Server
	clock *FakeClock
	c     *sqs.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := NewFakeClock(t0)
	return newEnvClock(t, clk, clk)
}

func newEnvClock(t *testing.T, clk Clock, fake *FakeClock) *env {
	t.Helper()
	s := New(Options{Clock: clk, Region: "eu-west-1", AccountID: "123456789012"})
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := sqs.New(sqs.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	return &env{srv: s, clock: fake, c: c}
}

func (e *env) queue(t *testing.T, name string, attrs map[string]string) string {
	t.Helper()
	out, err := e.c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return *out.QueueUrl
}

func (e *env) send(t *testing.T, url, body string) string {
	t.Helper()
	out, err := e.c.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body})
	if err != nil {
		t.Fatal(err)
	}
	return *out.MessageId
}

func (e *env) receive(t *testing.T, url string, max int32) []types.Message {
	t.Helper()
	out, err := e.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: max,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Messages
}

func (e *env) attr(t *testing.T, url string, name types.QueueAttributeName) string {
	t.Helper()
	out, err := e.c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{name}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes[string(name)]
}

// wantCode checks the error code the SDK reports, which for SQS is the Query
// protocol code carried in x-amzn-query-error.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want API error %s", err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("error code = %q (%v), want %q", ae.ErrorCode(), err, code)
	}
}

func TestRoundTripAndChecksums(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	body := "héllo 𝄞 world\n"
	in := &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body, MessageAttributes: map[string]types.MessageAttributeValue{
		"b": {DataType: aws.String("String"), StringValue: aws.String("v")},
		"a": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2}},
	}}
	sent, err := e.c.SendMessage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// MD5OfMessageAttributes from the Developer Guide's encoding, written out
	// by hand: names sorted, length-prefixed name, type, transport byte, value.
	enc := "\x00\x00\x00\x01a\x00\x00\x00\x06Binary\x02\x00\x00\x00\x02\x01\x02" +
		"\x00\x00\x00\x01b\x00\x00\x00\x06String\x01\x00\x00\x00\x01v"
	sum := md5.Sum([]byte(enc))
	wantAttrMD5 := hex.EncodeToString(sum[:])
	bodySum := md5.Sum([]byte(body))
	if *sent.MD5OfMessageBody != hex.EncodeToString(bodySum[:]) || aws.ToString(sent.MD5OfMessageAttributes) != wantAttrMD5 {
		t.Fatalf("send checksums = %s %s, want %x %s", *sent.MD5OfMessageBody, aws.ToString(sent.MD5OfMessageAttributes), bodySum, wantAttrMD5)
	}
	msgs := e.receive(t, url, 10)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if *m.Body != body || *m.MessageId != *sent.MessageId || aws.ToString(m.MD5OfMessageAttributes) != wantAttrMD5 {
		t.Fatalf("received %+v", m)
	}
	if v := m.MessageAttributes["a"]; string(v.BinaryValue) != "\x01\x02" || *v.DataType != "Binary" {
		t.Fatalf("attribute a = %+v", v)
	}
	if got := m.Attributes["SentTimestamp"]; got != strconv.FormatInt(t0.UnixMilli(), 10) {
		t.Fatalf("SentTimestamp = %s", got)
	}
	if got := m.Attributes["ApproximateReceiveCount"]; got != "1" {
		t.Fatalf("ApproximateReceiveCount = %s", got)
	}
	if _, err := e.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible); n != "0" {
		t.Fatalf("not visible after delete = %s", n)
	}
}

// The SDK verifies MD5OfBody: a server that got it wrong would fail every
// receive. This checks the SDK really does, so the round trip above means
// something.
func TestSDKRejectsWrongBodyChecksum(t *testing.T) {
	e := newEnv(t)
	url := e.queue(t, "q", nil)
	e.send(t, url, "x")
	e.srv.mu.Lock()
	e.srv.queues["q"].msgs[0].md5Body = strings.Repeat("0", 32)
	e.srv.mu.Unlock()
	_, err := e.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("receive with a wrong MD5OfBody: %v, want a checksum error", err)
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	e := newEnv(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", e.srv.URL())
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := sqs.NewFromConfig(cfg)
	if _, err := e.srv.CreateQueue("envq", nil); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("envq")})
	if err != nil {
		t.Fatal(err)
	}
	if *out.QueueUrl != e.srv.QueueURL("envq") {
		t.Fatalf("QueueUrl = %s, want %s", *out.QueueUrl, e.srv.QueueURL("envq"))
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	small := e.queue(t, "small", map[string]string{"MaximumMessageSize": "1024"})
	str := func(s string) *types.MessageAttributeValue {
		return &types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
	}
	entries := func(n int, body string) []types.SendMessageBatchRequestEntry {
		var es []types.SendMessageBatchRequestEntry
		for i := range n {
			es = append(es, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint("e", i)), MessageBody: aws.String(body)})
		}
		return es
	}
	send := func(u, body string, attrs map[string]types.MessageAttributeValue) error {
		_, err := e.c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &u, MessageBody: &body, MessageAttributes: attrs})
		return err
	}
	batch := func(es []types.SendMessageBatchRequestEntry) error {
		_, err := e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: es})
		return err
	}
	tenAttrs := map[string]types.MessageAttributeValue{}
	for i := range 10 {
		tenAttrs[fmt.Sprint("a", i)] = *str("v")
	}
	elevenAttrs := map[string]types.MessageAttributeValue{"a10": *str("v")}
	for k, v := range tenAttrs {
		elevenAttrs[k] = v
	}
	dup := entries(2, "x")
	dup[1].Id = aws.String("e0")
	badID := entries(1, "x")
	badID[0].Id = aws.String("a b")
	longID := entries(1, "x")
	longID[0].Id = aws.String(strings.Repeat("i", 81))
	maxID := entries(1, "x")
	maxID[0].Id = aws.String(strings.Repeat("i", 80))

	for _, tc := range []struct {
		name string
		err  error
		code string // "" for success
	}{
		{"missing queue", send(url+"-no", "x", nil), "AWS.SimpleQueueService.NonExistentQueue"},
		{"body at queue maximum", send(small, strings.Repeat("x", 1024), nil), ""},
		{"body over queue maximum", send(small, strings.Repeat("x", 1025), nil), "InvalidParameterValue"},
		{"attributes count toward size", send(small, strings.Repeat("x", 1000), map[string]types.MessageAttributeValue{"name": *str(strings.Repeat("v", 15))}), "InvalidParameterValue"},
		{"attributes within size", send(small, strings.Repeat("x", 1000), map[string]types.MessageAttributeValue{"name": *str(strings.Repeat("v", 14))}), ""},
		{"body at 1 MiB default", send(url, strings.Repeat("x", 1<<20), nil), ""},
		{"body over 1 MiB default", send(url, strings.Repeat("x", 1<<20+1), nil), "InvalidParameterValue"},
		{"empty body", send(url, "", nil), "InvalidParameterValue"},
		{"NUL in body", send(url, "a\x00b", nil), "InvalidMessageContents"},
		{"U+FFFE in body", send(url, "a\uFFFEb", nil), "InvalidMessageContents"},
		{"U+10FFFF in body", send(url, "a\U0010FFFFb", nil), ""},
		{"tab CR LF in body", send(url, "\t\r\n", nil), ""},
		{"10 attributes", send(url, "x", tenAttrs), ""},
		{"11 attributes", send(url, "x", elevenAttrs), "InvalidParameterValue"},
		{"reserved attribute name", send(url, "x", map[string]types.MessageAttributeValue{"AWS.x": *str("v")}), "InvalidParameterValue"},
		{"10 entries", batch(entries(10, "x")), ""},
		{"11 entries", batch(entries(11, "x")), "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"},
		{"no entries", batch([]types.SendMessageBatchRequestEntry{}), "AWS.SimpleQueueService.EmptyBatchRequest"},
		{"repeated id", batch(dup), "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"},
		{"id with a space", batch(badID), "AWS.SimpleQueueService.InvalidBatchEntryId"},
		{"id of 81 characters", batch(longID), "AWS.SimpleQueueService.InvalidBatchEntryId"},
		{"id of 80 characters", batch(maxID), ""},
		{"batch of exactly 1 MiB", batch(entries(4, strings.Repeat("x", 1<<18))), ""},
		{"batch over 1 MiB", batch(entries(4, strings.Repeat("x", 1<<18+1))), "AWS.SimpleQueueService.BatchRequestTooLong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code == "" {
				if tc.err != nil {
					t.Fatalf("error = %v, want success", tc.err)
				}
				return
			}
			wantCode(t, tc.err, tc.code)
		})
	}
}

func TestModelledErrorTypes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	_, err := e.c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var qne *types.QueueDoesNotExist
	if !errors.As(err, &qne) {
		t.Fatalf("GetQueueUrl of a missing queue: %T %v, want *types.QueueDoesNotExist", err, err)
	}
	_, err = e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("x")}, {Id: aws.String("a"), MessageBody: aws.String("y")},
	}})
	var dist *types.BatchEntryIdsNotDistinct
	if !errors.As(err, &dist) {
		t.Fatalf("repeated ids: %T %v, want *types.BatchEntryIdsNotDistinct", err, err)
	}
	big := strings.Repeat("x", 600<<10)
	_, err = e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: &big}, {Id: aws.String("b"), MessageBody: &big},
	}})
	var tooLong *types.BatchRequestTooLong
	if !errors.As(err, &tooLong) {
		t.Fatalf("batch over 1 MiB: %T %v, want *types.BatchRequestTooLong", err, err)
	}
	_, err = e.c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("\x01")})
	var contents *types.InvalidMessageContents
	if !errors.As(err, &contents) {
		t.Fatalf("invalid character: %T %v, want *types.InvalidMessageContents", err, err)
	}
}

func TestBatchEntryFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", map[string]string{"MaximumMessageSize": "1024"})
	out, err := e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("ok"), MessageBody: aws.String("fine")},
		{Id: aws.String("bad"), MessageBody: aws.String("\x02")},
		{Id: aws.String("big"), MessageBody: aws.String(strings.Repeat("x", 1025))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Successful) != 1 || *out.Successful[0].Id != "ok" {
		t.Fatalf("successful = %+v", out.Successful)
	}
	codes := map[string]string{}
	for _, f := range out.Failed {
		if !f.SenderFault {
			t.Errorf("%s: SenderFault false", *f.Id)
		}
		codes[*f.Id] = *f.Code
	}
	if codes["bad"] != "InvalidMessageContents" || codes["big"] != "InvalidParameterValue" || len(codes) != 2 {
		t.Fatalf("failed = %v", codes)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessages); n != "1" {
		t.Fatalf("messages = %s, want 1", n)
	}
}

func TestReceiveParameterLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	for _, in := range []*sqs.ReceiveMessageInput{
		{QueueUrl: &url, MaxNumberOfMessages: 11},
		{QueueUrl: &url, MaxNumberOfMessages: -1},
		{QueueUrl: &url, WaitTimeSeconds: 21},
		{QueueUrl: &url, VisibilityTimeout: 43201},
	} {
		_, err := e.c.ReceiveMessage(ctx, in)
		wantCode(t, err, "InvalidParameterValue")
	}
	_, err := e.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 43200})
	if err != nil {
		t.Fatal(err)
	}
}

func TestQueueConfiguration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dlqARN, err := e.srv.CreateQueue("dlq", nil)
	if err != nil {
		t.Fatal(err)
	}
	if dlqARN != "arn:aws:sqs:eu-west-1:123456789012:dlq" {
		t.Fatalf("ARN = %s", dlqARN)
	}
	rp := `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":"5"}`
	attrs := map[string]string{"VisibilityTimeout": "60", "RedrivePolicy": rp, "MessageRetentionPeriod": "120"}
	url := e.queue(t, "src", attrs)
	if _, err := e.srv.CreateQueue("src", attrs); err != nil {
		t.Fatalf("CreateQueue with the same attributes: %v", err)
	}
	out, err := e.c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"QueueArn": "arn:aws:sqs:eu-west-1:123456789012:src", "VisibilityTimeout": "60",
		"MessageRetentionPeriod": "120", "MaximumMessageSize": "1048576",
		"RedrivePolicy": `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":5}`,
	}
	for k, v := range want {
		if out.Attributes[k] != v {
			t.Errorf("%s = %q, want %q", k, out.Attributes[k], v)
		}
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		code  string
	}{
		{"src", map[string]string{"VisibilityTimeout": "61"}, "QueueAlreadyExists"},
		{"x", map[string]string{"VisibilityTimeout": "43201"}, "InvalidAttributeValue"},
		{"x", map[string]string{"MaximumMessageSize": "1048577"}, "InvalidAttributeValue"},
		{"x", map[string]string{"MaximumMessageSize": "1023"}, "InvalidAttributeValue"},
		{"x", map[string]string{"MessageRetentionPeriod": "59"}, "InvalidAttributeValue"},
		{"x", map[string]string{"DelaySeconds": "901"}, "InvalidAttributeValue"},
		{"x", map[string]string{"ReceiveMessageWaitTimeSeconds": "21"}, "InvalidAttributeValue"},
		{"x", map[string]string{"Visibility": "1"}, "InvalidAttributeName"},
		{"x", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:none","maxReceiveCount":5}`}, "InvalidParameterValue"},
		{"x", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":0}`}, "InvalidParameterValue"},
		{"bad name", nil, "InvalidParameterValue"},
	} {
		_, err := e.c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(tc.name), Attributes: tc.attrs})
		wantCode(t, err, tc.code)
	}
	_, err = e.c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{"Nope"}})
	wantCode(t, err, "InvalidAttributeName")
}

func TestVisibilityFollowsClock(t *testing.T) {
	e := newEnv(t)
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "30"})
	e.send(t, url, "m")
	first := e.receive(t, url, 1)
	if len(first) != 1 {
		t.Fatal("no message")
	}
	if got := e.receive(t, url, 1); len(got) != 0 {
		t.Fatal("received an invisible message")
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible); n != "1" {
		t.Fatalf("not visible = %s", n)
	}
	e.clock.Advance(29 * time.Second)
	if got := e.receive(t, url, 1); len(got) != 0 {
		t.Fatal("visible before its timeout")
	}
	e.clock.Advance(time.Second)
	again := e.receive(t, url, 1)
	if len(again) != 1 {
		t.Fatal("not visible after its timeout")
	}
	m := again[0]
	if m.Attributes["ApproximateReceiveCount"] != "2" ||
		m.Attributes["ApproximateFirstReceiveTimestamp"] != strconv.FormatInt(t0.UnixMilli(), 10) ||
		m.Attributes["SentTimestamp"] != strconv.FormatInt(t0.UnixMilli(), 10) {
		t.Fatalf("attributes = %v", m.Attributes)
	}
	if *m.ReceiptHandle == *first[0].ReceiptHandle {
		t.Fatal("receipt handle did not change on the second receive")
	}
}

func TestReceiptHandles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "30"})
	e.send(t, url, "m")
	old := *e.receive(t, url, 1)[0].ReceiptHandle

	// In flight: changing visibility with the current handle works.
	if _, err := e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: &old, VisibilityTimeout: 10}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Second)
	// Visible again, not yet received: the change succeeds and leaves the
	// message visible.
	if _, err := e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: &old, VisibilityTimeout: 600}); err != nil {
		t.Fatalf("change after the timeout ran out: %v, want success", err)
	}
	again := e.receive(t, url, 1)
	if len(again) != 1 {
		t.Fatal("a change after the timeout ran out hid the message")
	}
	cur := *again[0].ReceiptHandle

	// The old handle: DeleteMessage succeeds without deleting, a visibility
	// change is refused.
	if _, err := e.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &old}); err != nil {
		t.Fatalf("delete with an old handle: %v, want success", err)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible); n != "1" {
		t.Fatalf("an old handle deleted the message (not visible = %s)", n)
	}
	_, err := e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: &old, VisibilityTimeout: 0})
	wantCode(t, err, "InvalidParameterValue")

	_, err = e.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: aws.String("garbage")})
	wantCode(t, err, "ReceiptHandleIsInvalid")
	_, err = e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: aws.String("garbage")})
	wantCode(t, err, "ReceiptHandleIsInvalid")

	if _, err := e.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &cur}); err != nil {
		t.Fatal(err)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible); n != "0" {
		t.Fatalf("not visible after delete = %s", n)
	}
	// Deleting again, and changing a deleted message.
	if _, err := e.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: &cur}); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, err = e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: &cur, VisibilityTimeout: 5})
	wantCode(t, err, "InvalidParameterValue")
}

func TestVisibilityTwelveHourMaximum(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "43200"})
	e.send(t, url, "m")
	h := e.receive(t, url, 1)[0].ReceiptHandle
	change := func(vt int32) error {
		_, err := e.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: h, VisibilityTimeout: vt})
		return err
	}
	wantCode(t, change(43201), "InvalidParameterValue")
	e.clock.Advance(11 * time.Hour)
	wantCode(t, change(3601), "InvalidParameterValue")
	if err := change(3600); err != nil {
		t.Fatalf("extension to exactly 12 hours: %v", err)
	}
	out, err := e.c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("over"), ReceiptHandle: h, VisibilityTimeout: 3601},
		{Id: aws.String("ok"), ReceiptHandle: h, VisibilityTimeout: 60},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Failed) != 1 || *out.Failed[0].Id != "over" || *out.Failed[0].Code != "InvalidParameterValue" || len(out.Successful) != 1 {
		t.Fatalf("batch = %+v %+v", out.Successful, out.Failed)
	}
	var entries []types.ChangeMessageVisibilityBatchRequestEntry
	for i := range 11 {
		entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: h})
	}
	_, err = e.c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: entries})
	wantCode(t, err, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
}

func TestRedriveKeepsSentTimestamp(t *testing.T) {
	e := newEnv(t)
	dlqARN, err := e.srv.CreateQueue("dlq", nil)
	if err != nil {
		t.Fatal(err)
	}
	dlq := e.srv.QueueURL("dlq")
	url := e.queue(t, "src", map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":2}`,
	})
	id := e.send(t, url, "poison")
	for i := 1; i <= 2; i++ {
		e.clock.Advance(time.Minute)
		got := e.receive(t, url, 1)
		if len(got) != 1 || got[0].Attributes["ApproximateReceiveCount"] != strconv.Itoa(i) {
			t.Fatalf("receive %d: %+v", i, got)
		}
	}
	e.clock.Advance(time.Minute)
	if got := e.receive(t, url, 1); len(got) != 0 {
		t.Fatalf("receive past maxReceiveCount returned %+v", got)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessages); n != "0" {
		t.Fatalf("source still holds %s messages", n)
	}
	got := e.receive(t, dlq, 1)
	if len(got) != 1 || *got[0].MessageId != id || *got[0].Body != "poison" {
		t.Fatalf("dead-letter queue: %+v", got)
	}
	if ts := got[0].Attributes["SentTimestamp"]; ts != strconv.FormatInt(t0.UnixMilli(), 10) {
		t.Fatalf("SentTimestamp in the dead-letter queue = %s, want the original %d", ts, t0.UnixMilli())
	}
	if st, _ := e.srv.Stats("src"); st != (QueueStats{Sent: 1, MovedOut: 1}) {
		t.Fatalf("source stats = %+v", st)
	}
	if st, _ := e.srv.Stats("dlq"); st != (QueueStats{InFlight: 1, MovedIn: 1}) {
		t.Fatalf("dead-letter queue stats = %+v", st)
	}
	if _, ok := e.srv.Stats("none"); ok {
		t.Fatal("Stats of a missing queue: ok")
	}
}

func TestRetentionDeletesSilently(t *testing.T) {
	e := newEnv(t)
	url := e.queue(t, "q", map[string]string{"MessageRetentionPeriod": "60", "VisibilityTimeout": "600"})
	e.send(t, url, "waiting")
	e.send(t, url, "inflight")
	if got := e.receive(t, url, 1); len(got) != 1 {
		t.Fatal("no message")
	}
	e.clock.Advance(59 * time.Second)
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessages); n != "1" {
		t.Fatalf("visible before expiry = %s", n)
	}
	e.clock.Advance(time.Second)
	for _, a := range []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible} {
		if n := e.attr(t, url, a); n != "0" {
			t.Fatalf("%s after the retention period = %s", a, n)
		}
	}
	if got := e.receive(t, url, 10); len(got) != 0 {
		t.Fatalf("received expired messages %+v", got)
	}
	if st, _ := e.srv.Stats("q"); st != (QueueStats{Sent: 2, Expired: 2}) {
		t.Fatalf("stats = %+v, want 2 sent, 2 expired", st)
	}
}

// waitFor polls cond until it holds: it waits for an event (a long poll
// registering), it does not stand for one.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *env) waiters(name string) int {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	return e.srv.queues[name].waiters
}

func TestLongPollReturnsWhenMessageArrives(t *testing.T) {
	e := newEnvClock(t, RealClock{}, nil)
	url := e.queue(t, "q", nil)
	type result struct {
		msgs []types.Message
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := e.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20})
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{msgs: out.Messages}
	}()
	waitFor(t, "the long poll to wait", func() bool { return e.waiters("q") == 1 })
	e.send(t, url, "arrived")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.msgs) != 1 || *r.msgs[0].Body != "arrived" {
		t.Fatalf("long poll returned %+v", r.msgs)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("long poll took %v, want well under its 20 s wait", el)
	}
}

func TestLongPollFollowsClock(t *testing.T) {
	e := newEnv(t)
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "10", "ReceiveMessageWaitTimeSeconds": "20"})
	poll := func() <-chan []types.Message {
		ch := make(chan []types.Message, 1)
		go func() {
			out, err := e.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
			if err != nil {
				t.Error(err)
				ch <- nil
				return
			}
			ch <- out.Messages
		}()
		return ch
	}
	// The queue's ReceiveMessageWaitTimeSeconds applies: nothing arrives, so
	// the poll ends when the clock passes 20 s.
	ch := poll()
	waitFor(t, "the long poll to wait", func() bool { return e.waiters("q") == 1 && e.clock.Timers() == 1 })
	e.clock.Advance(19 * time.Second)
	select {
	case got := <-ch:
		t.Fatalf("long poll returned %+v before its wait time", got)
	default:
	}
	e.clock.Advance(time.Second)
	if got := <-ch; len(got) != 0 {
		t.Fatalf("empty long poll returned %+v", got)
	}

	// A message whose visibility timeout runs out during the poll is returned.
	e.send(t, url, "m")
	if got := e.receive(t, url, 1); len(got) != 1 {
		t.Fatal("no message")
	}
	ch = poll()
	waitFor(t, "the long poll to wait", func() bool { return e.waiters("q") == 1 && e.clock.Timers() == 1 })
	e.clock.Advance(10 * time.Second)
	if got := <-ch; len(got) != 1 || got[0].Attributes != nil && got[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("long poll over a visibility timeout returned %+v", got)
	}
}

func TestConcurrentReceiversNeverShareAMessage(t *testing.T) {
	e := newEnvClock(t, RealClock{}, nil)
	ctx := context.Background()
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "600"})
	const n = 200
	for i := 0; i < n; i += 10 {
		var es []types.SendMessageBatchRequestEntry
		for j := range 10 {
			es = append(es, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(fmt.Sprint(i + j))})
		}
		if _, err := e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: es}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0 // receipts, duplicates included: bounds the test if visibility is broken
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				done := total >= n
				mu.Unlock()
				if done {
					return
				}
				out, err := e.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
				if err != nil {
					t.Error(err)
					return
				}
				if len(out.Messages) == 0 {
					return
				}
				mu.Lock()
				for _, m := range out.Messages {
					seen[*m.MessageId]++
					total++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("received %d distinct messages, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("message %s received %d times while invisible", id, c)
		}
	}
}

func TestUsageCountsBillingChunks(t *testing.T) {
	e := newEnv(t)
	// Exact counts: a receive of 128 KiB lost to aws/aws-sdk-go-v2#2737
	// would be retried and counted twice.
	e.c = sqs.New(sqs.Options{Region: "eu-west-1", BaseEndpoint: aws.String(e.srv.URL()), HTTPClient: HTTPClient(), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	e.send(t, url, strings.Repeat("x", 64<<10))   // one chunk
	e.send(t, url, strings.Repeat("x", 64<<10+1)) // two
	e.receive(t, url, 10)                         // 128 KiB + 1: three
	e.receive(t, url, 10)                         // empty: one
	es := []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String(strings.Repeat("x", 100<<10))},
		{Id: aws.String("b"), MessageBody: aws.String(strings.Repeat("x", 100<<10))},
	}
	if _, err := e.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: es}); err != nil {
		t.Fatal(err)
	}
	e.c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	u := e.srv.Usage()
	want := map[UsageKey]Usage{
		{"CreateQueue", "q"}:      {1, 1},
		{"SendMessage", "q"}:      {2, 3},
		{"ReceiveMessage", "q"}:   {2, 4},
		{"SendMessageBatch", "q"}: {1, 4},
		{"GetQueueUrl", ""}:       {1, 1},
	}
	for k, v := range want {
		if u[k] != v {
			t.Errorf("%v = %+v, want %+v", k, u[k], v)
		}
	}
	if len(u) != len(want) {
		t.Errorf("usage = %v", u)
	}
	e.srv.ResetUsage()
	if len(e.srv.Usage()) != 0 {
		t.Fatal("ResetUsage left counters")
	}
}

func TestPurgeAndDeleteBatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	e.send(t, url, "a")
	e.send(t, url, "b")
	msgs := e.receive(t, url, 10)
	out, err := e.c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: msgs[0].ReceiptHandle},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("garbage")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Successful) != 1 || len(out.Failed) != 1 || *out.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("delete batch = %+v %+v", out.Successful, out.Failed)
	}
	_, err = e.c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: msgs[0].ReceiptHandle}, {Id: aws.String("a"), ReceiptHandle: msgs[1].ReceiptHandle},
	}})
	wantCode(t, err, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
	if _, err := e.c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible); n != "0" {
		t.Fatalf("after purge: %s", n)
	}
	if st, _ := e.srv.Stats("q"); st != (QueueStats{Sent: 2, Deleted: 1, Purged: 1}) {
		t.Fatalf("stats = %+v", st)
	}
}

func TestDelaySeconds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", map[string]string{"DelaySeconds": "5"})
	e.send(t, url, "late")
	if n := e.attr(t, url, types.QueueAttributeNameApproximateNumberOfMessagesDelayed); n != "1" {
		t.Fatalf("delayed = %s", n)
	}
	if got := e.receive(t, url, 1); len(got) != 0 {
		t.Fatal("received a delayed message")
	}
	e.clock.Advance(5 * time.Second)
	if got := e.receive(t, url, 1); len(got) != 1 {
		t.Fatal("delayed message not received after its delay")
	}
	_, err := e.c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x"), DelaySeconds: 901})
	wantCode(t, err, "InvalidParameterValue")
}

func TestScaledClock(t *testing.T) {
	c := NewScaledClock(3600)
	start := c.Now()
	tc, stop := c.Timer(time.Hour)
	defer stop()
	<-tc
	if d := c.Now().Sub(start); d < time.Hour {
		t.Fatalf("an hour timer fired after %v of scaled time", d)
	}
}

func TestMessageAttributeSelection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url := e.queue(t, "q", nil)
	str := types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("v")}
	_, err := e.c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("m"),
		MessageAttributes: map[string]types.MessageAttributeValue{"a.x": str, "a.y": str, "b": str}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MessageAttributeNames: []string{"a.*"}, VisibilityTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := out.Messages[0]
	if len(m.MessageAttributes) != 2 || m.Attributes != nil {
		t.Fatalf("a.* selected %v (system attributes %v)", m.MessageAttributes, m.Attributes)
	}
	// The checksum covers the attributes returned.
	enc := "\x00\x00\x00\x03a.x\x00\x00\x00\x06String\x01\x00\x00\x00\x01v" +
		"\x00\x00\x00\x03a.y\x00\x00\x00\x06String\x01\x00\x00\x00\x01v"
	sum := md5.Sum([]byte(enc))
	if aws.ToString(m.MD5OfMessageAttributes) != hex.EncodeToString(sum[:]) {
		t.Fatalf("MD5OfMessageAttributes = %s, want %x", aws.ToString(m.MD5OfMessageAttributes), sum)
	}
	e.clock.Advance(time.Second)
	out, err = e.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameSentTimestamp}})
	if err != nil {
		t.Fatal(err)
	}
	m = out.Messages[0]
	if m.MessageAttributes != nil || m.MD5OfMessageAttributes != nil || len(m.Attributes) != 1 || m.Attributes["SentTimestamp"] == "" {
		t.Fatalf("no attribute names: %v %v", m.MessageAttributes, m.Attributes)
	}
}

// TestWireFormat checks the JSON protocol as bytes, including the requests
// the SDK never sends (it validates required members itself).
func TestWireFormat(t *testing.T) {
	e := newEnv(t)
	e.queue(t, "q", nil)
	post := func(target, body string) (int, http.Header, map[string]string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.srv.URL()+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	for _, tc := range []struct {
		target, body string
		status       int
		typ, query   string
	}{
		{"AmazonSQS.GetQueueUrl", `{"QueueName":"none"}`, 400, "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue;Sender"},
		{"AmazonSQS.SendMessage", `{"MessageBody":"x"}`, 400, "com.amazonaws.sqs#MissingParameter", "MissingParameter;Sender"},
		{"AmazonSQS.SendMessage", `{"QueueUrl":"http://h/123456789012/q"}`, 400, "com.amazonaws.sqs#MissingParameter", "MissingParameter;Sender"},
		{"AmazonSQS.DeleteMessage", `{"QueueUrl":"http://h/123456789012/q","ReceiptHandle":"bad"}`, 404, "com.amazonaws.sqs#ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid;Sender"},
		{"AmazonSQS.ChangeMessageVisibility", `{"QueueUrl":"http://h/123456789012/q","ReceiptHandle":"bad"}`, 400, "com.amazonaws.sqs#MissingParameter", "MissingParameter;Sender"},
		{"AmazonSQS.SendMessage", `{"QueueUrl":`, 400, "com.amazonaws.sqs#SerializationException", "MalformedInput;Sender"},
		{"AmazonSQS.DeleteQueue", `{}`, 400, "com.amazonaws.sqs#UnknownOperationException", "InvalidAction;Sender"},
		{"", `{}`, 400, "com.amazonaws.sqs#UnknownOperationException", "InvalidAction;Sender"},
	} {
		status, h, out := post(tc.target, tc.body)
		if status != tc.status || out["__type"] != tc.typ || h.Get("x-amzn-query-error") != tc.query || out["message"] == "" ||
			h.Get("Content-Type") != "application/x-amz-json-1.0" {
			t.Errorf("%s %s: %d %v %q, want %d %s %s", tc.target, tc.body, status, out, h.Get("x-amzn-query-error"), tc.status, tc.typ, tc.query)
		}
	}
	// A queue URL is found by its last path segment, whatever host the
	// client used.
	status, _, out := post("AmazonSQS.SendMessage", `{"QueueUrl":"http://localhost:1/123456789012/q","MessageBody":"x"}`)
	if status != 200 || out["MessageId"] == "" || out["MD5OfMessageBody"] != "9dd4e461268c8034f5c8564e155c67a6" {
		t.Fatalf("send: %d %v", status, out)
	}
}

func TestCloseEndsLongPolls(t *testing.T) {
	e := newEnvClock(t, RealClock{}, nil)
	url := e.queue(t, "q", nil)
	done := make(chan error, 1)
	go func() {
		_, err := e.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 20}, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
		done <- err
	}()
	waitFor(t, "the long poll to wait", func() bool { return e.waiters("q") == 1 })
	start := time.Now()
	e.srv.Close()
	if err := <-done; err == nil {
		t.Fatal("long poll succeeded on a closed server")
	}
	waitFor(t, "the long poll to end on the server", func() bool { return e.waiters("q") == 0 })
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Close took %v to end a long poll", el)
	}
}

// BenchmarkBatchRoundTrip is ten messages sent, received and deleted in
// batches through the SDK: the stand-in's cost per job on the common path.
func BenchmarkBatchRoundTrip(b *testing.B) {
	s := New(Options{})
	if err := s.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()), HTTPClient: HTTPClient(),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
	ctx := context.Background()
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	url := out.QueueUrl
	body := strings.Repeat("x", 10<<10)
	var send []types.SendMessageBatchRequestEntry
	for i := range 10 {
		send = append(send, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: &body})
	}
	b.ResetTimer()
	for range b.N {
		if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: send}); err != nil {
			b.Fatal(err)
		}
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10})
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Messages) != 10 {
			b.Fatalf("received %d messages, want 10", len(r.Messages))
		}
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range r.Messages {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: del}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHTTPClientKeepsLargeReceives: with the SDK's default client about 7 in
// 1000 receives of 100 KiB fail with a closed connection here (measured
// 2026-12-06); with HTTPClient none may.
func TestHTTPClientKeepsLargeReceives(t *testing.T) {
	e := newEnvClock(t, RealClock{}, nil)
	url := e.queue(t, "q", map[string]string{"VisibilityTimeout": "0"})
	body := strings.Repeat("x", 10<<10)
	for range 10 {
		e.send(t, url, body)
	}
	receives := func(hc aws.HTTPClient, n int) (failed int) {
		c := sqs.New(sqs.Options{Region: "eu-west-1", BaseEndpoint: aws.String(e.srv.URL()), HTTPClient: hc, RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
		for range n {
			out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
			if err != nil || len(out.Messages) != 10 {
				failed++
			}
		}
		return failed
	}
	if f := receives(HTTPClient(), 300); f != 0 {
		t.Fatalf("%d of 300 receives failed with HTTPClient", f)
	}
}

// FuzzServeHTTP feeds arbitrary request bodies to every action: the server
// answers each with a JSON reply, 200 or a 4xx error, and never panics.
func FuzzServeHTTP(f *testing.F) {
	actions := []string{"CreateQueue", "GetQueueUrl", "GetQueueAttributes", "SendMessage", "SendMessageBatch",
		"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "PurgeQueue"}
	for i, body := range []string{
		`{"QueueName":"q","Attributes":{"RedrivePolicy":"{\"deadLetterTargetArn\":\"arn:aws:sqs:us-east-1:000000000000:dlq\",\"maxReceiveCount\":\"1\"}"}}`,
		`{"QueueName":"q"}`,
		`{"QueueUrl":"/q","AttributeNames":["All"]}`,
		`{"QueueUrl":"/q","MessageBody":"x","MessageAttributes":{"a":{"DataType":"Binary.x","BinaryValue":"AQI="}}}`,
		`{"QueueUrl":"/q","Entries":[{"Id":"a","MessageBody":"x","DelaySeconds":1}]}`,
		`{"QueueUrl":"/q","MaxNumberOfMessages":10,"MessageAttributeNames":["a.*"],"AttributeNames":["All"]}`,
		`{"QueueUrl":"/q","ReceiptHandle":"x"}`,
		`{"QueueUrl":"/q","Entries":[{"Id":"a","ReceiptHandle":"x"}]}`,
		`{"QueueUrl":"/q","ReceiptHandle":"x","VisibilityTimeout":5}`,
		`{"QueueUrl":"/q","Entries":[{"Id":"a","ReceiptHandle":"x","VisibilityTimeout":5}]}`,
		`{"QueueUrl":"/q"}`,
	} {
		f.Add(uint8(i), body)
	}
	clk := NewFakeClock(t0)
	s := New(Options{Clock: clk})
	if _, err := s.CreateQueue("dlq", nil); err != nil {
		f.Fatal(err)
	}
	if _, err := s.CreateQueue("q", nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, action uint8, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("X-Amz-Target", "AmazonSQS."+actions[int(action)%len(actions)])
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != 200 && (w.Code < 400 || w.Code > 499) {
			t.Fatalf("status %d", w.Code)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("reply is not JSON: %q", w.Body.String())
		}
		clk.Advance(time.Second)
	})
}
