package routing

import (
	"net/url"
	"path"
	"regexp"
	"strings"
)

// The publish actions hand the webhook v1 body to an AWS service instead of
// an HTTP endpoint (package publish). Their string fields may use ${name}
// captures.

// LambdaAction invokes a function asynchronously (InvocationType Event)
// with the webhook v1 body as its event.
type LambdaAction struct {
	Position
	// Function is a name, a name with a version or alias
	// ("my-function:live"), a partial ARN or a function ARN.
	Function string `yaml:"function"`
}

// SQSAction sends the webhook v1 body as an SQS message.
type SQSAction struct {
	Position
	QueueURL string `yaml:"queue_url"`
	// MessageGroupID orders a FIFO queue's messages (default: the message
	// id); on a standard queue it opts into fair queues.
	MessageGroupID string `yaml:"message_group_id"`
}

// SNSAction publishes the webhook v1 body to an SNS topic.
type SNSAction struct {
	Position
	TopicARN string `yaml:"topic_arn"`
	// MessageGroupID orders a FIFO topic's messages (default: the message
	// id).
	MessageGroupID string `yaml:"message_group_id"`
}

// EventBridgeAction puts the webhook v1 body on an event bus as the
// event's detail.
type EventBridgeAction struct {
	Position
	// Bus is the event bus name or ARN; empty means the account's default
	// bus.
	Bus string `yaml:"bus"`
	// Source and DetailType are the event's source and detail-type, what
	// rules match on (defaults: "letterbox", "message.received").
	Source     string `yaml:"source"`
	DetailType string `yaml:"detail_type"`
}

// Defaults of an EventBridge action.
const (
	DefaultEventSource     = "letterbox"
	DefaultEventDetailType = "message.received"
)

var (
	// Lambda: a name (64 at most), a partial ARN or an ARN, each with an
	// optional version or alias (Lambda API Reference, Invoke,
	// FunctionName).
	lambdaFunctionRE = regexp.MustCompile(`^(arn:aws[a-zA-Z-]*:lambda:[a-z]{2}[a-z0-9-]*:\d{12}:function:|\d{12}:function:)?[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?$`)
	// SQS queue names: 80 characters at most, including ".fifo".
	sqsQueueNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.fifo)?$`)
	// SNS topic ARNs; names are 256 characters at most.
	snsTopicARNRE = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:sns:[a-z]{2}[a-z0-9-]*:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)
	// EventBridge bus names and ARNs.
	eventBusRE = regexp.MustCompile(`^([/.\-_A-Za-z0-9]{1,256}|arn:aws[a-zA-Z-]*:events:[a-z]{2}[a-z0-9-]*:\d{12}:event-bus/[/.\-_A-Za-z0-9]{1,256})$`)
	// Message group ids: alphanumerics and punctuation, 128 at most.
	groupIDRE = regexp.MustCompile(`^[!-~]{1,128}$`)
	// captureRE finds ${name} captures, replaced by a sample value when a
	// field is checked before expansion.
	captureRE = regexp.MustCompile(`\$\{[^}]*\}`)
)

// sample stands in for a field's captures, for validation.
func sample(s string) string { return captureRE.ReplaceAllString(s, "x") }

// validatePublish checks the lambda, sqs, sns and eventbridge actions.
func (a *Action) validatePublish(fail func(int, string, string, ...any), p string) {
	if l := a.Lambda; l != nil {
		f := p + ".lambda.function"
		switch {
		case l.Function == "":
			fail(l.Line, f, "required: a function name or ARN")
		case !lambdaFunctionRE.MatchString(sample(l.Function)):
			fail(l.Line, f, "%q is not a function name or ARN (my-function, my-function:alias, arn:aws:lambda:REGION:ACCOUNT:function:my-function)", l.Function)
		}
	}
	if q := a.SQS; q != nil {
		f := p + ".sqs.queue_url"
		u, err := url.Parse(sample(q.QueueURL))
		switch {
		case q.QueueURL == "":
			fail(q.Line, f, "required: the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "":
			fail(q.Line, f, "%q must be a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", q.QueueURL)
		default:
			if name := path.Base(u.Path); len(name) > 80 || !sqsQueueNameRE.MatchString(name) {
				fail(q.Line, f, "%q must end in a queue name: up to 80 letters, digits, '-' or '_', with .fifo for a FIFO queue", q.QueueURL)
			}
		}
		validateGroupID(fail, q.Line, p+".sqs.message_group_id", q.MessageGroupID)
	}
	if s := a.SNS; s != nil {
		f := p + ".sns.topic_arn"
		switch {
		case s.TopicARN == "":
			fail(s.Line, f, "required: the topic's ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
		case !snsTopicARNRE.MatchString(sample(s.TopicARN)):
			fail(s.Line, f, "%q is not a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", s.TopicARN)
		}
		validateGroupID(fail, s.Line, p+".sns.message_group_id", s.MessageGroupID)
	}
	if e := a.EventBridge; e != nil {
		ep := p + ".eventbridge"
		if e.Bus != "" && !eventBusRE.MatchString(sample(e.Bus)) {
			fail(e.Line, ep+".bus", "%q is not an event bus name or ARN", e.Bus)
		}
		if e.Source == "" {
			e.Source = DefaultEventSource
		}
		switch {
		case len(e.Source) > 256 || strings.TrimSpace(e.Source) != e.Source:
			fail(e.Line, ep+".source", "%q must be 1 to 256 characters without surrounding spaces", e.Source)
		case strings.HasPrefix(strings.ToLower(e.Source), "aws."):
			fail(e.Line, ep+".source", "%q: sources starting with \"aws.\" are reserved for AWS services", e.Source)
		}
		if e.DetailType == "" {
			e.DetailType = DefaultEventDetailType
		}
		if len(e.DetailType) > 128 || strings.TrimSpace(e.DetailType) != e.DetailType {
			fail(e.Line, ep+".detail_type", "%q must be 1 to 128 characters without surrounding spaces", e.DetailType)
		}
	}
}

func validateGroupID(fail func(int, string, string, ...any), line int, field, id string) {
	if id != "" && !groupIDRE.MatchString(sample(id)) {
		fail(line, field, "%q must be 1 to 128 letters, digits or punctuation (${name} captures allowed)", id)
	}
}
