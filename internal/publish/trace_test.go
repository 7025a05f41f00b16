package publish_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/letterboxmail/letterbox/internal/publish"
	"github.com/letterboxmail/letterbox/internal/routing"
)

// A traced attempt hands its trace on: the traceparent message attribute
// on SQS and SNS, the X-Ray trace header (same trace id) on EventBridge.
func TestPublishCarriesTheTrace(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "delivery.sqs")
	defer span.End()
	sc := span.SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	publishWith := func(p *publish.Publisher, a *routing.Action) {
		t.Helper()
		j := testJob()
		if res := p.Publish(ctx, j, testMessage("hello"), a, expand(j)); res.Err != nil {
			t.Fatal(res.Err)
		}
	}

	f := newFake(t, sqsSent)
	publishWith(publisher(publish.Endpoints{SQS: f.URL}), &routing.Action{SQS: &routing.SQSAction{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}})
	attr, _ := f.requests()[0].JSON(t)["MessageAttributes"].(map[string]any)["traceparent"].(map[string]any)
	if attr["DataType"] != "String" || attr["StringValue"] != want {
		t.Errorf("SQS traceparent attribute = %v, want %s", attr, want)
	}

	f = newFake(t, snsPublished)
	publishWith(publisher(publish.Endpoints{SNS: f.URL}), &routing.Action{SNS: &routing.SNSAction{TopicARN: "arn:aws:sns:eu-west-1:1:t"}})
	in := f.requests()[0].Form(t)
	found := false
	for _, n := range []string{"1", "2"} {
		if in.Get("MessageAttributes.entry."+n+".Name") == "traceparent" {
			found = in.Get("MessageAttributes.entry."+n+".Value.StringValue") == want && in.Get("MessageAttributes.entry."+n+".Value.DataType") == "String"
		}
	}
	if !found {
		t.Errorf("SNS message attributes %v lack traceparent %s", in, want)
	}

	f = newFake(t, eventsPut("", ""))
	publishWith(publisher(publish.Endpoints{EventBridge: f.URL}), &routing.Action{EventBridge: &routing.EventBridgeAction{Source: "letterbox", DetailType: "message.received"}})
	e := f.requests()[0].JSON(t)["Entries"].([]any)[0].(map[string]any)
	id := sc.TraceID().String()
	if h := "Root=1-" + id[:8] + "-" + id[8:] + ";Parent=" + sc.SpanID().String() + ";Sampled=1"; e["TraceHeader"] != h {
		t.Errorf("TraceHeader = %v, want %s", e["TraceHeader"], h)
	}
}
