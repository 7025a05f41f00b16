package routing_test

import (
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/routing"
)

func TestPublishConfigErrors(t *testing.T) {
	tests := []struct {
		name, action, want string
	}{
		{"lambda without function", "lambda: {}", "routes.yaml:6: routes[0].actions[0].lambda.function: required: a function name or ARN"},
		{"lambda bad name", "lambda: {function: \"my function\"}", "lambda.function: \"my function\" is not a function name or ARN"},
		{"lambda name too long", "lambda: {function: " + strings.Repeat("f", 65) + "}", "lambda.function: \"fff"},
		{"lambda wrong service ARN", "lambda: {function: \"arn:aws:sqs:eu-west-1:123456789012:function:f\"}", "lambda.function: \"arn:aws:sqs:"},
		{"lambda unknown field", "lambda: {function: f, qualifier: live}", "routes[0].actions[0].lambda.qualifier: unknown field"},
		{"sqs without url", "sqs: {}", "routes.yaml:6: routes[0].actions[0].sqs.queue_url: required"},
		{"sqs not a url", "sqs: {queue_url: queue-1}", "sqs.queue_url: \"queue-1\" must be a queue URL"},
		{"sqs ftp", "sqs: {queue_url: \"ftp://sqs.eu-west-1.amazonaws.com/123456789012/q\"}", "sqs.queue_url: \"ftp://"},
		{"sqs bad queue name", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/123456789012/my queue\"}", "sqs.queue_url: \"https://sqs.eu-west-1.amazonaws.com/123456789012/my queue\" must end in a queue name"},
		{"sqs queue name too long", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/1/" + strings.Repeat("q", 81) + "\"}", "must end in a queue name"},
		{"sqs group id too long", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/1/q.fifo\", message_group_id: " + strings.Repeat("g", 129) + "}", "sqs.message_group_id: \"ggg"},
		{"sqs group id with space", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/1/q.fifo\", message_group_id: \"a b\"}", "sqs.message_group_id: \"a b\" must be 1 to 128"},
		{"sns without arn", "sns: {}", "routes.yaml:6: routes[0].actions[0].sns.topic_arn: required"},
		{"sns not an arn", "sns: {topic_arn: my-topic}", "sns.topic_arn: \"my-topic\" is not a topic ARN"},
		{"sns short account", "sns: {topic_arn: \"arn:aws:sns:eu-west-1:1234:t\"}", "sns.topic_arn: \"arn:aws:sns:eu-west-1:1234:t\" is not a topic ARN"},
		{"sns group id", "sns: {topic_arn: \"arn:aws:sns:eu-west-1:123456789012:t.fifo\", message_group_id: \"\\u00e9\"}", "sns.message_group_id"},
		{"eventbridge bad bus", "eventbridge: {bus: \"my bus\"}", "routes.yaml:6: routes[0].actions[0].eventbridge.bus: \"my bus\" is not an event bus name or ARN"},
		{"eventbridge reserved source", "eventbridge: {source: aws.s3}", "eventbridge.source: \"aws.s3\": sources starting with \"aws.\" are reserved"},
		{"eventbridge long detail type", "eventbridge: {detail_type: " + strings.Repeat("d", 129) + "}", "eventbridge.detail_type: \"ddd"},
		{"eventbridge unknown field", "eventbridge: {bus: b, detailtype: x}", "eventbridge.detailtype: unknown field"},
		{"two kinds", "{lambda: {function: f}, sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/1/q\"}}",
			"routes.yaml:6: routes[0].actions[0]: needs exactly one of webhook, forward, lambda, sqs, sns, eventbridge, store: true or drop: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, oneAction(tt.action), tt.want)
		})
	}
}

func TestPublishConfigValid(t *testing.T) {
	tests := []struct {
		name, action, kind string
		check              func(t *testing.T, a *routing.Action)
	}{
		{"lambda name", "lambda: {function: inbound}", "lambda", nil},
		{"lambda alias", "lambda: {function: \"inbound:live\"}", "lambda", nil},
		{"lambda latest", "lambda: {function: \"inbound:$LATEST\"}", "lambda", nil},
		{"lambda partial ARN", "lambda: {function: \"123456789012:function:inbound\"}", "lambda", nil},
		{"lambda ARN", "lambda: {function: \"arn:aws:lambda:eu-west-1:123456789012:function:inbound:3\"}", "lambda", nil},
		{"lambda GovCloud ARN", "lambda: {function: \"arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:inbound\"}", "lambda", nil},
		{"lambda capture", "lambda: {function: \"inbound-${team}\"}", "lambda", func(t *testing.T, a *routing.Action) {
			if a.Lambda.Function != "inbound-${team}" {
				t.Fatalf("function = %q", a.Lambda.Function)
			}
		}},
		{"sqs standard", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/123456789012/inbound\"}", "sqs", func(t *testing.T, a *routing.Action) {
			if a.SQS.MessageGroupID != "" {
				t.Fatalf("group id = %q, want none (the publisher picks the default)", a.SQS.MessageGroupID)
			}
		}},
		{"sqs fifo with group", "sqs: {queue_url: \"https://sqs.eu-west-1.amazonaws.com/123456789012/inbound.fifo\", message_group_id: \"${user}\"}", "sqs", func(t *testing.T, a *routing.Action) {
			if a.SQS.MessageGroupID != "${user}" {
				t.Fatalf("group id = %q", a.SQS.MessageGroupID)
			}
		}},
		{"sqs local", "sqs: {queue_url: \"http://localhost:4566/000000000000/inbound\"}", "sqs", nil},
		{"sns", "sns: {topic_arn: \"arn:aws:sns:eu-west-1:123456789012:inbound\"}", "sns", nil},
		{"sns fifo", "sns: {topic_arn: \"arn:aws:sns:eu-west-1:123456789012:inbound.fifo\", message_group_id: tenant-1}", "sns", nil},
		{"eventbridge defaults", "eventbridge: {}", "eventbridge", func(t *testing.T, a *routing.Action) {
			e := a.EventBridge
			if e.Bus != "" || e.Source != "letterbox" || e.DetailType != "message.received" {
				t.Fatalf("eventbridge = %+v, want the default bus, source letterbox, detail-type message.received", e)
			}
		}},
		{"eventbridge custom", "eventbridge: {bus: mail, source: com.example.mail, detail_type: Inbound}", "eventbridge", func(t *testing.T, a *routing.Action) {
			e := a.EventBridge
			if e.Bus != "mail" || e.Source != "com.example.mail" || e.DetailType != "Inbound" {
				t.Fatalf("eventbridge = %+v", e)
			}
		}},
		{"eventbridge bus ARN", "eventbridge: {bus: \"arn:aws:events:eu-west-1:123456789012:event-bus/mail\"}", "eventbridge", nil},
		{"with retry", "{sns: {topic_arn: \"arn:aws:sns:eu-west-1:123456789012:t\"}, retry: {attempts: 3, initial: 1s, max: 1m}}", "sns", func(t *testing.T, a *routing.Action) {
			if a.Retry == nil || a.Retry.Attempts != 3 {
				t.Fatalf("retry = %+v", a.Retry)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := parseOneAction(t, tt.action)
			if a.Kind() != tt.kind {
				t.Fatalf("Kind() = %q, want %q", a.Kind(), tt.kind)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}
