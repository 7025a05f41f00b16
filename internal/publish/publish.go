// Package publish runs the lambda, sqs, sns and eventbridge actions: it
// hands the webhook v1 body of a delivery job to an AWS service instead of
// an HTTP endpoint. It implements delivery.Publisher.
//
// Every target receives the same body as a webhook request (delivery.Body):
//
//   - lambda: Invoke with InvocationType Event (asynchronous; 202 is
//     success), the event as the payload;
//   - sqs: SendMessage, the event as the body;
//   - sns: Publish, the event as the message;
//   - eventbridge: PutEvents, the event as the detail, the job's
//     created_at as the time.
//
// The job id (the webhook-id of webhooks) travels with each publish for
// de-duplication: as the webhook-id message attribute (SQS, SNS), as the
// MessageDeduplicationId of FIFO queues and topics, and as the event's only
// resource (EventBridge). Lambda's asynchronous invocation carries nothing
// beside the payload, which stays identical to the webhook body: functions
// de-duplicate on data.id.
//
// Each service has a size limit (Limits). A body over it, or one the
// service refuses as too large, is replaced by a reduced event with
// truncated: true (webhook.Event.Truncated) whose data lacks headers, text,
// html, stripped_text and parts; consumers fetch the full message from the
// store.
//
// Errors are classified for the retry policy (internal/fault): no
// response, throttling, 5xx and the services' internal errors are
// temporary; access denied, not found, validation and other 4xx errors are
// permanent.
//
// The tests run the real SDK clients against httptest servers speaking each
// service's protocol (Lambda REST-JSON, SQS JSON 1.0, SNS Query with XML
// responses, EventBridge JSON 1.1). They are thin stand-ins for services
// that cannot run here, and check what the SDK sends.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// AttributeID is the message attribute (SQS, SNS) carrying the job id, the
// same value as a webhook's webhook-id header.
const AttributeID = webhook.HeaderID

// Limits are the largest publishes, in bytes, counted as each service
// counts them.
type Limits struct {
	// Lambda: the payload of an asynchronous invocation.
	Lambda int
	// SQS and SNS: the body plus the message attributes' names, types and
	// values.
	SQS, SNS int
	// EventBridge: the PutEvents entry (time, source, detail-type, detail
	// and resources).
	EventBridge int
}

// DefaultLimits are the services' documented limits:
//
//   - Lambda: "For asynchronous invocations, the maximum payload size is
//     1 MB" (Lambda API Reference, Invoke);
//   - SQS: "The maximum size is 1 MiB or 1,048,576 bytes" (SQS API
//     Reference, SendMessage), attributes included; raised with Lambda and
//     EventBridge from 256 KB on 2026-01-29 (AWS Compute Blog, "More room
//     to build: serverless services now support payloads up to 1 MB");
//   - EventBridge: 1 MB per entry since the same change; the entry size is
//     computed as in the EventBridge User Guide, "Calculating Amazon
//     EventBridge PutEvents event entry size";
//   - SNS: "at most 256 KB in size (262,144 bytes, not 262,144
//     characters)", attributes included (SNS API Reference, Publish).
//
// A queue or topic configured smaller refuses larger bodies; the refusal is
// recognised and the reduced event is sent instead.
var DefaultLimits = Limits{Lambda: 1 << 20, SQS: 1 << 20, SNS: 256 << 10, EventBridge: 1 << 20}

// DefaultTimeout bounds one publish attempt.
const DefaultTimeout = 30 * time.Second

// Endpoints override the services' endpoints (tests, emulators); empty
// fields keep the SDK's.
type Endpoints struct {
	Lambda, SQS, SNS, EventBridge string
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithEndpoints sends each service's requests to the given base URL.
func WithEndpoints(e Endpoints) Option {
	return func(p *Publisher) { p.endpoints = e }
}

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option {
	return func(p *Publisher) { p.limits = l }
}

// WithTimeout replaces DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(p *Publisher) { p.timeout = d }
}

// Publisher runs the publish actions with clients built once.
type Publisher struct {
	lambda    *lambda.Client
	sqs       *sqs.Client
	sns       *sns.Client
	events    *eventbridge.Client
	limits    Limits
	timeout   time.Duration
	endpoints Endpoints
}

var _ delivery.Publisher = (*Publisher)(nil)

// New builds the four service clients from cfg. The clients retry as cfg
// says (the SDK's standard retryer by default) before an attempt fails.
func New(cfg aws.Config, opts ...Option) *Publisher {
	p := &Publisher{limits: DefaultLimits, timeout: DefaultTimeout}
	for _, o := range opts {
		o(p)
	}
	// An empty override keeps the endpoint the SDK resolved, e.g. from
	// AWS_ENDPOINT_URL_SNS: replacing it with nil would drop that.
	base := func(u string, resolved *string) *string {
		if u == "" {
			return resolved
		}
		return aws.String(u)
	}
	p.lambda = lambda.NewFromConfig(cfg, func(o *lambda.Options) { o.BaseEndpoint = base(p.endpoints.Lambda, o.BaseEndpoint) })
	p.sqs = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = base(p.endpoints.SQS, o.BaseEndpoint) })
	p.sns = sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = base(p.endpoints.SNS, o.BaseEndpoint) })
	p.events = eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.BaseEndpoint = base(p.endpoints.EventBridge, o.BaseEndpoint) })
	return p
}

// Publish runs one attempt of a lambda, sqs, sns or eventbridge action.
func (p *Publisher) Publish(ctx context.Context, j *delivery.Job, m *message.Message, a *routing.Action, expand func(string) string) delivery.Result {
	body, err := delivery.Body(j, m)
	if err != nil {
		return delivery.Result{Err: fault.Permanent(err)}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var (
		res  delivery.Result
		kind = a.Kind()
	)
	switch kind {
	case "lambda":
		res = p.invoke(ctx, j, m, body, expand(a.Lambda.Function))
	case "sqs":
		res = p.send(ctx, j, m, body, a.SQS, expand)
	case "sns":
		res = p.notify(ctx, j, m, body, a.SNS, expand)
	case "eventbridge":
		res = p.put(ctx, j, m, body, a.EventBridge, expand)
	default:
		return delivery.Result{Err: fault.Permanentf("publish: %s is not a publish action", kind)}
	}
	if res.Err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && fault.IsTemporary(res.Err) {
		res.Err = fault.Temporaryf("%s: no response within %s", kind, p.timeout)
	}
	return res
}

// attempt publishes body, or the reduced event when body exceeds limit
// (size gives a body's size as the service counts it) or the service
// refuses it as too large.
func attempt(j *delivery.Job, m *message.Message, body []byte, limit int, size func([]byte) int, try func([]byte) (int, error)) (int, error) {
	reduced := false
	if size(body) > limit {
		body, reduced = reduce(j, m), true
		if size(body) > limit {
			return 0, &sizeError{size: size(body), limit: limit}
		}
	}
	status, err := try(body)
	if err != nil && !reduced && tooLarge(err) {
		status, err = try(reduce(j, m))
	}
	return status, err
}

// sizeError is an event too large even when reduced.
type sizeError struct{ size, limit int }

func (e *sizeError) Error() string {
	return fmt.Sprintf("event of %d bytes exceeds the limit of %d even without the message's bodies and headers", e.size, e.limit)
}

// reduce returns the event without the message's bodies and headers.
func reduce(j *delivery.Job, m *message.Message) []byte {
	d := *m
	d.Headers, d.Text, d.HTML, d.StrippedText, d.Parts = nil, "", "", "", nil
	b, _ := json.Marshal(webhook.Event{Type: webhook.TypeMessageReceived, Timestamp: j.CreatedAt.UTC(), Data: &d, Truncated: true})
	return b
}

func (p *Publisher) invoke(ctx context.Context, j *delivery.Job, m *message.Message, body []byte, function string) delivery.Result {
	status, err := attempt(j, m, body, p.limits.Lambda, func(b []byte) int { return len(b) }, func(b []byte) (int, error) {
		out, err := p.lambda.Invoke(ctx, &lambda.InvokeInput{
			FunctionName:   aws.String(function),
			InvocationType: lambdatypes.InvocationTypeEvent,
			Payload:        b,
		})
		if err != nil {
			return 0, err
		}
		return int(out.StatusCode), nil // 202 Accepted
	})
	return result("lambda", status, err)
}

func (p *Publisher) send(ctx context.Context, j *delivery.Job, m *message.Message, body []byte, a *routing.SQSAction, expand func(string) string) delivery.Result {
	queue := expand(a.QueueURL)
	attrs := map[string]sqstypes.MessageAttributeValue{
		AttributeID: {DataType: aws.String("String"), StringValue: aws.String(j.ID)},
	}
	tp := telemetry.Traceparent(ctx)
	if tp != "" {
		attrs[telemetry.HeaderTraceparent] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(tp)}
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(queue), MessageAttributes: attrs}
	in.MessageDeduplicationId, in.MessageGroupId = fifoIDs(queue, expand(a.MessageGroupID), j, m)
	st, err := attempt(j, m, body, p.limits.SQS, withAttributes(j, tp), func(b []byte) (int, error) {
		in.MessageBody = aws.String(string(b))
		_, err := p.sqs.SendMessage(ctx, in)
		return 0, err
	})
	return result("sqs", st, err)
}

func (p *Publisher) notify(ctx context.Context, j *delivery.Job, m *message.Message, body []byte, a *routing.SNSAction, expand func(string) string) delivery.Result {
	topic := expand(a.TopicARN)
	attrs := map[string]snstypes.MessageAttributeValue{
		AttributeID: {DataType: aws.String("String"), StringValue: aws.String(j.ID)},
	}
	tp := telemetry.Traceparent(ctx)
	if tp != "" {
		attrs[telemetry.HeaderTraceparent] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(tp)}
	}
	in := &sns.PublishInput{TopicArn: aws.String(topic), MessageAttributes: attrs}
	in.MessageDeduplicationId, in.MessageGroupId = fifoIDs(topic, expand(a.MessageGroupID), j, m)
	st, err := attempt(j, m, body, p.limits.SNS, withAttributes(j, tp), func(b []byte) (int, error) {
		in.Message = aws.String(string(b))
		_, err := p.sns.Publish(ctx, in)
		return 0, err
	})
	return result("sns", st, err)
}

// fifoIDs returns the deduplication id and the message group of a
// message sent to an SQS queue or SNS topic (nil when not set). A FIFO
// target (name ending in ".fifo") deduplicates on the job id and is given
// a group: the configured one, else the message id. A standard target
// takes a configured group only (on SQS, it opts into fair queues).
func fifoIDs(target, group string, j *delivery.Job, m *message.Message) (dedup, groupID *string) {
	if strings.HasSuffix(target, ".fifo") {
		dedup = aws.String(j.ID)
		if group == "" {
			group = m.ID
		}
	}
	if group != "" {
		groupID = aws.String(group)
	}
	return dedup, groupID
}

// withAttributes returns the size SQS and SNS count for a body sent with
// the AttributeID message attribute and, when traced, the traceparent
// one: each attribute's name, type and value count towards the limit.
func withAttributes(j *delivery.Job, traceparent string) func([]byte) int {
	overhead := len(AttributeID) + len("String") + len(j.ID)
	if traceparent != "" {
		overhead += len(telemetry.HeaderTraceparent) + len("String") + len(traceparent)
	}
	return func(b []byte) int { return len(b) + overhead }
}

// xrayTraceHeader converts a W3C traceparent to the X-Ray trace header
// EventBridge carries to its targets (TraceHeader): the same trace id,
// written 1-<8 hex>-<24 hex>, and the parent span id.
func xrayTraceHeader(tp string) string {
	sc := telemetry.Remote(tp)
	if !sc.IsValid() {
		return ""
	}
	id := sc.TraceID().String()
	sampled := "0"
	if sc.IsSampled() {
		sampled = "1"
	}
	return "Root=1-" + id[:8] + "-" + id[8:] + ";Parent=" + sc.SpanID().String() + ";Sampled=" + sampled
}

func (p *Publisher) put(ctx context.Context, j *delivery.Job, m *message.Message, body []byte, a *routing.EventBridgeAction, expand func(string) string) delivery.Result {
	entry := ebtypes.PutEventsRequestEntry{
		Source:     aws.String(a.Source),
		DetailType: aws.String(a.DetailType),
		Resources:  []string{j.ID},
		Time:       aws.Time(j.CreatedAt.UTC()),
	}
	if bus := expand(a.Bus); bus != "" {
		entry.EventBusName = aws.String(bus)
	}
	if h := xrayTraceHeader(telemetry.Traceparent(ctx)); h != "" {
		entry.TraceHeader = aws.String(h)
	}
	// The entry's size as EventBridge computes it: 14 bytes for the time,
	// then source, detail-type, detail and resources.
	overhead := 14 + len(a.Source) + len(a.DetailType) + len(j.ID)
	st, err := attempt(j, m, body, p.limits.EventBridge, func(b []byte) int { return len(b) + overhead }, func(b []byte) (int, error) {
		entry.Detail = aws.String(string(b))
		out, err := p.events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{entry}})
		if err != nil {
			return 0, err
		}
		if out.FailedEntryCount > 0 || len(out.Entries) != 1 || out.Entries[0].ErrorCode != nil {
			e := &entryError{code: "UnknownError", msg: "event not accepted"}
			if len(out.Entries) == 1 {
				e.code = aws.ToString(out.Entries[0].ErrorCode)
				e.msg = aws.ToString(out.Entries[0].ErrorMessage)
			}
			return 0, e
		}
		return 0, nil
	})
	return result("eventbridge", st, err)
}

// entryError is a PutEvents entry's failure, as an API error.
type entryError struct{ code, msg string }

func (e *entryError) Error() string                 { return fmt.Sprintf("entry failed: %s: %s", e.code, e.msg) }
func (e *entryError) ErrorCode() string             { return e.code }
func (e *entryError) ErrorMessage() string          { return e.msg }
func (e *entryError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// result classifies an attempt's error and records the response's status.
func result(service string, status int, err error) delivery.Result {
	if err == nil {
		return delivery.Result{Status: status}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var se *sizeError
	switch {
	case errors.As(err, &se):
		err = fault.Permanent(fmt.Errorf("%s: %w", service, err))
	case temporary(err):
		err = fault.Temporary(fmt.Errorf("%s: %w", service, err))
	default:
		err = fault.Permanent(fmt.Errorf("%s: %w", service, err))
	}
	return delivery.Result{Status: status, Err: err}
}

// temporaryCodes are error codes that may clear by themselves, whatever
// their HTTP status: the SDK's throttling and retryable codes, plus these.
var temporaryCodes = map[string]bool{
	// Throttling not in the SDK's list.
	"Throttled": true, "KMSThrottling": true, "KMSThrottlingException": true, "KmsThrottled": true,
	"KMS.ThrottlingException": true,
	// Internal errors.
	"InternalError": true, "InternalFailure": true, "InternalErrorException": true, "InternalException": true,
	"InternalServerError": true, "ServiceUnavailable": true, "ServiceUnavailableException": true, "ServiceException": true,
	// Credentials and clocks: refreshed and corrected on the next attempt.
	"ExpiredToken": true, "ExpiredTokenException": true, "RequestExpired": true, "RequestTimeTooSkewed": true,
	"RequestInTheFuture": true, "IDPCommunicationError": true,
	// Lambda: the function is being created or updated, or its
	// environment is starting.
	"ResourceConflictException": true, "ResourceNotReadyException": true, "SnapStartNotReadyException": true,
	"SnapStartTimeoutException": true,
	// EventBridge.
	"ConcurrentModificationException": true,
}

// permanentCodes are PutEvents entry error codes that fail again as long as
// the configuration stays the same. Entries carry no HTTP status, so other
// entry codes count as temporary.
var permanentCodes = map[string]bool{
	"InvalidArgument": true, "MalformedDetail": true, "ValidationException": true,
	"AccessDeniedException": true, "NotAuthorizedForSourceException": true, "NotAuthorizedForDetailTypeException": true,
	"ResourceNotFoundException": true, "KMSAccessDeniedException": true,
}

// code returns an error's API error code, without SQS's query-protocol
// prefix ("AWS.SimpleQueueService.NonExistentQueue").
func code(err error) string {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return ""
	}
	return strings.TrimPrefix(ae.ErrorCode(), "AWS.SimpleQueueService.")
}

// temporary reports whether an AWS SDK error may clear on a later attempt:
// no response at all, a throttling or internal-error code, 408, 429 or
// 5xx. Other 4xx errors (access denied, not found, validation) are
// permanent, as are the PutEvents entry codes in permanentCodes.
func temporary(err error) bool {
	c := code(err)
	if _, ok := retry.DefaultThrottleErrorCodes[c]; ok || temporaryCodes[c] {
		return true
	}
	if _, ok := retry.DefaultRetryableErrorCodes[c]; ok {
		return true
	}
	var ee *entryError
	if errors.As(err, &ee) {
		return !permanentCodes[c]
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		// No response: a connection error or timeout, or a failure to
		// build the request (which the SDK's validation catches first
		// as a smithy.InvalidParamsError).
		var ip *smithy.InvalidParamsError
		return !errors.As(err, &ip)
	}
	s := re.HTTPStatusCode()
	return s == 408 || s == 429 || s >= 500 || s < 400
}

// tooLarge reports whether a service refused a publish for its size:
// Lambda's RequestTooLargeException (413), or the "too long" validation
// errors of SQS, SNS and EventBridge for queues and topics configured below
// the default limits.
func tooLarge(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 413 {
		return true
	}
	switch code(err) {
	case "RequestTooLargeException", "RequestEntityTooLargeException", "RequestEntityTooLarge":
		return true
	case "InvalidParameterValue", "InvalidParameter", "InvalidParameterException", "ValidationException", "InvalidArgument", "ParameterValueInvalid":
		var ae smithy.APIError
		errors.As(err, &ae)
		msg := strings.ToLower(ae.ErrorMessage())
		for _, s := range []string{"too long", "too large", "shorter than", "exceeds", "size"} {
			if strings.Contains(msg, s) {
				return true
			}
		}
	}
	return false
}
