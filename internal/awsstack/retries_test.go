//go:build awsstack

package awsstack

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/e2e"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// retryAttempts is the schedule of TestRetriesOutlastReceiveLimit: more
// attempts than the 20 receives the delivery queue used to allow (issue 12,
// item 1), at the shortest waits the deliver function can set (SQS's
// visibility is whole seconds; sqsqueue.Retry hides a job for at least 1 s).
const retryAttempts = 30

// TestRetriesOutlastReceiveLimit sends one message to a webhook that always
// answers 503, with a retry schedule of retryAttempts attempts, on the real
// SQS clock: the queue's redrive policy (template.yaml's maxReceiveCount)
// must not end the schedule early. The receiver must see every attempt,
// all with the job's webhook-id; the job must end in the delivery
// dead-letter queue, sent there by the deliver function (dead_lettered_at
// set), and its record must say failed with every attempt listed.
// With maxReceiveCount 20 SQS moves the job on its 21st receive: the
// receiver sees 20 attempts and the record says "retrying".
func TestRetriesOutlastReceiveLimit(t *testing.T) {
	recv, err := e2e.NewReceiver("failing", hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	e2e.MustMode(t, recv, e2e.Fail) // every request answered 503
	routes := fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: retry
    catch_all: true
    actions:
      - webhook:
          url: %q
          secret: %q
          allow_private_network: true
        retry: {attempts: %d, initial: 1s, max: 1s}
`, recv.URL()+"/hook", hookSecret, retryAttempts)
	bin, emu := artefacts(t)
	st := Start(t, Options{Template: templatePath(t), Params: map[string]string{"Domains": "example.test", "DnsResolver": newDNS(t)},
		Bin: bin, Emulator: emu, Routes: []byte(routes), Output: newTestLog(t, "stack")})
	st.ResetCounters()
	start := time.Now()
	sendSMTP(t, st.Gateway.SMTPAddr, "retry@example.test", shape{Name: "retry", Size: 2 * KiB, Kind: "text"}, "r1")

	dlq, jobsQ := StackName+"-DeliveryDeadLetterQueue", StackName+"-DeliveryQueue"
	waitFor(t, 5*time.Minute, "the job in the delivery dead-letter queue and the delivery queue empty", func() bool {
		d, _ := st.SQS.Stats(dlq)
		q, _ := st.SQS.Stats(jobsQ)
		return d.Sent+d.MovedIn >= 1 && q.Visible+q.InFlight+q.Delayed == 0
	})
	elapsed := time.Since(start)
	st.StopPollers()
	usage := sqsUsage(st) // before the test's own receive below

	// The receiver: every attempt, one job.
	reqs := recv.Requests()
	ids := map[string]int{}
	var messageID string
	for _, r := range reqs {
		if r.Err != "" || r.Status != 503 {
			t.Errorf("request %+v: want a verified request answered 503", r)
		}
		ids[r.WebhookID]++
		messageID = r.MessageID
	}
	if len(reqs) != retryAttempts || len(ids) != 1 {
		t.Errorf("receiver saw %d attempts with webhook-ids %v; want %d attempts of one job", len(reqs), ids, retryAttempts)
	}
	var jobID string
	for id := range ids {
		jobID = id
	}

	// The queues: the function dead-lettered the job itself, once.
	d, _ := st.SQS.Stats(dlq)
	q, _ := st.SQS.Stats(jobsQ)
	if d.Sent != 1 || d.MovedIn != 0 {
		t.Errorf("delivery dead-letter queue: %d sent by the function, %d moved by the redrive policy; want 1 and 0", d.Sent, d.MovedIn)
	}
	if q.MovedOut != 0 || q.Deleted != 1 {
		t.Errorf("delivery queue: %d moved out by the redrive policy, %d deleted; want 0 and 1", q.MovedOut, q.Deleted)
	}
	out, err := st.SQSClient.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.SQS.QueueURL(dlq)), MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("%d messages in the delivery dead-letter queue, want 1", len(out.Messages))
	}
	var dead delivery.Job
	if err := json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &dead); err != nil {
		t.Fatal(err)
	}
	if dead.ID != jobID || dead.DeadLetteredAt == nil {
		t.Errorf("dead letter: job %q dead_lettered_at %v; want job %q dead-lettered by the deliver function", dead.ID, dead.DeadLetteredAt, jobID)
	}

	// The record: failed, with every attempt.
	st.Versity.SetEnv(t)
	store, closer, err := storeurl.Open(context.Background(), st.Versity.StoreURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rec, err := delivery.Journal{Store: store}.Get(context.Background(), messageID, jobID)
	if err != nil || rec == nil {
		t.Fatalf("record of %s/%s: %v %v", messageID, jobID, rec, err)
	}
	if rec.Status != delivery.StatusFailed {
		t.Errorf("record status %q, want %q", rec.Status, delivery.StatusFailed)
	}
	if len(rec.Attempts) != retryAttempts {
		t.Errorf("record lists %d attempts, want %d", len(rec.Attempts), retryAttempts)
	}
	for i, a := range rec.Attempts {
		want := "retry"
		if i == retryAttempts-1 {
			want = delivery.StatusFailed
		}
		if a.Number != i+1 || a.Status != 503 || a.Outcome != want {
			t.Errorf("attempt %d: number %d status %d outcome %q; want %d, 503, %q", i+1, a.Number, a.Status, a.Outcome, i+1, want)
		}
	}
	fmt.Printf("\nretries: %d attempts in %v, job dead-lettered with its record; %s\n", len(reqs), elapsed.Round(100*time.Millisecond), usage)
}

// sqsUsage sums sqslocal's counters (GetQueueAttributes excepted: the
// test's own), as "N requests, M chunks (by action: …)".
func sqsUsage(st *Stack) string {
	var reqs, chunks int64
	by := map[string][2]int64{}
	for k, u := range st.SQS.Usage() {
		if k.Action == "GetQueueAttributes" {
			continue
		}
		reqs += u.Requests
		chunks += u.Chunks
		v := by[k.Action]
		by[k.Action] = [2]int64{v[0] + u.Requests, v[1] + u.Chunks}
	}
	acts := make([]string, 0, len(by))
	for a := range by {
		acts = append(acts, a)
	}
	sort.Strings(acts)
	var b strings.Builder
	fmt.Fprintf(&b, "SQS: %d requests, %d 64 KiB chunks (", reqs, chunks)
	for i, a := range acts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d/%d", a, by[a][0], by[a][1])
	}
	b.WriteString(")")
	return b.String()
}
