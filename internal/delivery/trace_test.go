package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/emf"
)

// An attempt continues the job's trace: the webhook request carries a
// traceparent of the trace the queue message's traceparent attribute
// names (SQS), else the job's own (the local queue, a redriven dead
// letter); and the EMF line of the attempt names that trace.
func TestAttemptContinuesTheJobsTrace(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	defer srv.Close()
	h := newHarness(t, routes(srv.URL, ""))
	var lines bytes.Buffer
	h.h.Metrics = delivery.NewEMFMetrics(emf.New(&lines, "letterbox"))
	const (
		inJob  = "00-11111111111111111111111111111111-1111111111111111-01"
		inAttr = "00-22222222222222222222222222222222-2222222222222222-01"
	)
	for _, tc := range []struct {
		name, attr, wantTrace string
	}{
		{"attribute", inAttr, "22222222222222222222222222222222"},
		{"job", "", "11111111111111111111111111111111"},
	} {
		j := job("01JTRACE" + strings.ToUpper(tc.name))
		j.Traceparent = inJob
		ev := sqsRecord(t, j, 1, time.Now())
		if tc.attr != "" {
			ev.Records[0].MessageAttributes = map[string]events.SQSMessageAttribute{
				"traceparent": {DataType: "String", StringValue: ptr(tc.attr)},
			}
		}
		lines.Reset()
		if resp, err := h.h.Handle(context.Background(), ev); err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("%s: Handle = %+v, %v", tc.name, resp, err)
		}
		tp := <-got
		if p := strings.Split(tp, "-"); len(p) != 4 || p[1] != tc.wantTrace {
			t.Fatalf("%s: webhook traceparent %q, want trace %s", tc.name, tp, tc.wantTrace)
		}
		var line map[string]any
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			t.Fatalf("%s: EMF line %q: %v", tc.name, lines.String(), err)
		}
		if line["trace_id"] != tc.wantTrace || line["DeliveryAttempts"] != 1.0 || line["Outcome"] != "delivered" || line["Kind"] != "webhook" || line["job_id"] != j.ID {
			t.Fatalf("%s: EMF line %s", tc.name, lines.String())
		}
	}
}

func ptr(s string) *string { return &s }
