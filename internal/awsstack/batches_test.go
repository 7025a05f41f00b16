//go:build awsstack

package awsstack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/e2e"
	"github.com/letterboxmail/letterbox/internal/sqslocal"
)

// batchRoutes: wide@ goes to ten webhooks, big@ to five.
func batchRoutes(url string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ndomains: [example.test]\nroutes:\n")
	for _, r := range []struct {
		name string
		n    int
	}{{"wide", 10}, {"big", 5}} {
		fmt.Fprintf(&b, "  - name: %s\n    match: {recipient: \"%s@example.test\"}\n    actions:\n", r.name, r.name)
		for i := range r.n {
			fmt.Fprintf(&b, "      - webhook: {url: %q, secret: %q, allow_private_network: true}\n", fmt.Sprintf("%s/%s/%d", url, r.name, i), hookSecret)
		}
		b.WriteString("    stop: true\n")
	}
	return []byte(b.String())
}

// TestLargeMessageManyActions sends messages whose parsed JSON is large to
// routes with many webhook actions (issue 12, item 6): ingest's
// SendMessageBatch calls go to sqslocal, which refuses a batch of more than
// 10 entries or 1 MiB of bodies (BatchRequestTooLong), as SQS does.
//
//   - wide: 39 KiB of text to 10 webhooks. The parsed JSON holds the text
//     three times (text, stripped_text, parts), so each job is about 118 KiB
//     and carries the parsed message (two 64 KiB chunks: delivery.CarryInline);
//     the ten together are over 1 MiB, so one batch of ten would be refused
//     on every try and the message would end in the raw dead-letter queue.
//     Ingest must split them into two batches.
//   - big: 200 KiB of text to 5 webhooks: jobs of about 600 KiB, each under
//     the 1 MiB limit, but carrying the message five times costs more than
//     one parsed/ PUT, so the jobs name parsed/<id>.json and go in one
//     batch.
//
// Every webhook must receive its message exactly once, ingest must succeed
// on the first receive, and nothing may reach the raw dead-letter queue.
func TestLargeMessageManyActions(t *testing.T) {
	recv, err := e2e.NewReceiver("hooks", hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	st, raw, jobs := driven(t, nil, batchRoutes(recv.URL()))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	jobsQ, rawQ, rawDLQ := StackName+"-DeliveryQueue", StackName+"-RawQueue", StackName+"-RawDeadLetterQueue"

	cases := []struct {
		name, rcpt string
		size       int64
		actions    int
		inline     bool
		batches    int64
	}{
		{"wide", "wide@example.test", 39 * KiB, 10, true, 2},
		{"big", "big@example.test", 200 * KiB, 5, false, 1},
	}
	var summary strings.Builder
	for _, c := range cases {
		st.ResetCounters()
		before := len(recv.Requests())
		sendSMTP(t, st.Gateway.SMTPAddr, c.rcpt, shape{Name: c.name, Size: c.size, Kind: "text"}, "b-"+c.name)
		visible(t, st, raw, 1)
		inv, err := raw.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Err != nil || inv.Failed > 0 || inv.Records != 1 {
			t.Fatalf("%s: ingest: %v, %d of %d records failed: the jobs were not queued", c.name, inv.Err, inv.Failed, inv.Records)
		}
		batches := st.SQS.Usage()[sqslocal.UsageKey{Action: "SendMessageBatch", Queue: jobsQ}]
		if batches.Requests != c.batches {
			t.Errorf("%s: %d SendMessageBatch requests for %d jobs, want %d", c.name, batches.Requests, c.actions, c.batches)
		}

		// The deliver function, until every job ran.
		var bodies []string
		for len(bodies) < c.actions {
			visible(t, st, jobs, 1)
			inv, err := jobs.Once(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Err != nil || inv.Failed > 0 {
				t.Fatalf("%s: deliver: %v, %d failed", c.name, inv.Err, inv.Failed)
			}
			bodies = append(bodies, inv.Bodies...)
		}
		if len(bodies) != c.actions {
			t.Errorf("%s: %d jobs, want %d", c.name, len(bodies), c.actions)
		}
		total := 0
		for _, b := range bodies {
			var j struct {
				Message    json.RawMessage `json:"message"`
				MessageKey string          `json:"message_key"`
			}
			if err := json.Unmarshal([]byte(b), &j); err != nil {
				t.Fatal(err)
			}
			if inline := len(j.Message) > 0 && j.MessageKey == ""; inline != c.inline {
				t.Errorf("%s: job carries the message inline: %v, want %v (message_key %q, %d bytes)", c.name, inline, c.inline, j.MessageKey, len(b))
			}
			total += len(b)
		}
		if c.inline && total <= delivery.MaxQueueMessage {
			t.Errorf("%s: the jobs' bodies total %d bytes, not over SQS's %d per batch: the case does not test the split", c.name, total, delivery.MaxQueueMessage)
		}

		// Every webhook exactly once.
		waitFor(t, time.Minute, fmt.Sprintf("%d webhooks of %s", c.actions, c.name), func() bool { return len(recv.Requests())-before >= c.actions })
		got := map[string]int{}
		for _, r := range recv.Requests()[before:] {
			if !r.Delivered() {
				t.Errorf("%s: webhook request not delivered: %+v", c.name, r)
			}
			got[r.WebhookID]++
		}
		if len(got) != c.actions {
			t.Errorf("%s: webhooks for %d jobs, want %d: %v", c.name, len(got), c.actions, got)
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("%s: job %s delivered %d times", c.name, id, n)
			}
		}
		fmt.Fprintf(&summary, "%s: %d KiB message to %d webhooks, jobs %d bytes in all (inline %v), %d SendMessageBatch; %s; S3 %v\n",
			c.name, c.size/KiB, c.actions, total, c.inline, batches.Requests, sqsUsage(st), st.S3.Counts())
	}
	for _, q := range []string{rawQ, rawDLQ, jobsQ} {
		s, _ := st.SQS.Stats(q)
		if n := s.Visible + s.InFlight + s.Delayed; n != 0 || s.MovedOut != 0 || s.MovedIn != 0 || s.Sent != 0 && q == rawDLQ {
			t.Errorf("%s: %d messages left, %d moved out, %d moved in, %d sent", q, n, s.MovedOut, s.MovedIn, s.Sent)
		}
	}
	fmt.Print("\nlarge messages, many actions:\n" + summary.String())
}
