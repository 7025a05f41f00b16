package sqsqueue_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/sqsqueue"
	"github.com/letterboxmail/letterbox/message"
)

// call is one SQS API request as the real SDK serialised it (JSON protocol).
type call struct {
	Target string
	Body   map[string]any
}

// sqsServer answers SQS JSON-protocol requests: the thin fake that stands
// in for SQS, which cannot run here.
func sqsServer(t *testing.T, failBatch bool) (*sqs.Client, func() []call) {
	var mu sync.Mutex
	var calls []call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		target := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
		mu.Lock()
		calls = append(calls, call{target, body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		switch target {
		case "SendMessageBatch":
			entries := body["Entries"].([]any)
			// SQS's limits (API Reference, SendMessageBatch): ten entries,
			// 1 MiB per message and for all of them together.
			total := 0
			for _, e := range entries {
				n := len(e.(map[string]any)["MessageBody"].(string))
				if n > 1<<20 {
					sqsError(w, "InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.")
					return
				}
				total += n
			}
			if len(entries) > 10 {
				sqsError(w, "TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10.")
				return
			}
			if total > 1<<20 {
				sqsError(w, "BatchRequestTooLong", "Batch requests cannot be longer than 1048576 bytes.")
				return
			}
			var ok, failed []map[string]any
			for _, e := range entries {
				id := e.(map[string]any)["Id"]
				sum := md5.Sum([]byte(e.(map[string]any)["MessageBody"].(string)))
				if failBatch {
					failed = append(failed, map[string]any{"Id": id, "Code": "InternalError", "Message": "try again", "SenderFault": false})
				} else {
					ok = append(ok, map[string]any{"Id": id, "MessageId": "m-" + id.(string), "MD5OfMessageBody": hex.EncodeToString(sum[:])})
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": failed})
		case "SendMessage":
			sum := md5.Sum([]byte(body["MessageBody"].(string)))
			json.NewEncoder(w).Encode(map[string]any{"MessageId": "dead-1", "MD5OfMessageBody": hex.EncodeToString(sum[:])})
		case "ChangeMessageVisibility":
			io.WriteString(w, `{}`)
		default:
			w.WriteHeader(400)
			io.WriteString(w, `{"__type":"InvalidAction","message":"unexpected"}`)
		}
	}))
	t.Cleanup(srv.Close)
	client := sqs.New(sqs.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	}, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	return client, func() []call { mu.Lock(); defer mu.Unlock(); return append([]call(nil), calls...) }
}

func sqsError(w http.ResponseWriter, code, msg string) {
	w.WriteHeader(400)
	json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": msg})
}

// bigJob is a job whose body is about n bytes.
func bigJob(id string, n int) delivery.Job {
	return delivery.Job{ID: id, MessageID: "m", Message: &message.Message{Text: strings.Repeat("x", n)}}
}

func TestSendSplitsBatchesBySize(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.example/1/q"}
	// Seven jobs of 300 KiB: three fit in 1 MiB, so batches of 3, 3, 1.
	var jobs []delivery.Job
	for i := 0; i < 7; i++ {
		jobs = append(jobs, bigJob(fmt.Sprintf("j%d", i), 300<<10))
	}
	if err := q.Send(context.Background(), jobs); err != nil {
		t.Fatalf("Send = %v", err)
	}
	var sizes []int
	seen := 0
	for _, c := range calls() {
		entries := c.Body["Entries"].([]any)
		sizes = append(sizes, len(entries))
		for _, e := range entries {
			var j delivery.Job
			json.Unmarshal([]byte(e.(map[string]any)["MessageBody"].(string)), &j)
			if want := fmt.Sprintf("j%d", seen); j.ID != want {
				t.Fatalf("job %d is %q, want %q", seen, j.ID, want)
			}
			seen++
		}
	}
	if fmt.Sprint(sizes) != "[3 3 1]" || seen != 7 {
		t.Fatalf("batch sizes = %v (%d jobs)", sizes, seen)
	}
}

func TestSendExactlyAtTheLimit(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.example/1/q"}
	// Two jobs whose bodies add up to exactly 1 MiB share a batch; one
	// byte more splits them.
	overhead := len(mustJSON(t, bigJob("a", 0)))
	half := delivery.MaxQueueMessage/2 - overhead
	if err := q.Send(context.Background(), []delivery.Job{bigJob("a", half), bigJob("b", half)}); err != nil {
		t.Fatal(err)
	}
	if err := q.Send(context.Background(), []delivery.Job{bigJob("a", half), bigJob("b", half+1)}); err != nil {
		t.Fatal(err)
	}
	cs := calls()
	if len(cs) != 3 || len(cs[0].Body["Entries"].([]any)) != 2 {
		t.Fatalf("%d calls, first with %d entries", len(cs), len(cs[0].Body["Entries"].([]any)))
	}
}

func TestSendRefusesAJobOverTheLimit(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.example/1/q"}
	huge := bigJob("huge", delivery.MaxQueueMessage)
	want := fmt.Sprintf("sqs: job huge is %d bytes, over the queue's 1048576", len(mustJSON(t, huge)))
	err := q.Send(context.Background(), []delivery.Job{huge})
	if err == nil || fault.IsTemporary(err) || err.Error() != want {
		t.Fatalf("Send = %v", err)
	}
	if len(calls()) != 0 {
		t.Fatalf("calls = %d", len(calls()))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSendBatchesOfTen(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.eu-west-1.amazonaws.com/1/deliveries", DeadLetterURL: "https://sqs.eu-west-1.amazonaws.com/1/dead"}
	var jobs []delivery.Job
	for i := 0; i < 23; i++ {
		jobs = append(jobs, delivery.Job{ID: "j" + string(rune('a'+i)), MessageID: "m"})
	}
	if err := q.Send(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	cs := calls()
	if len(cs) != 3 || cs[0].Target != "SendMessageBatch" || cs[0].Body["QueueUrl"] != q.URL {
		t.Fatalf("calls = %+v", cs)
	}
	sizes := []int{len(cs[0].Body["Entries"].([]any)), len(cs[1].Body["Entries"].([]any)), len(cs[2].Body["Entries"].([]any))}
	if sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 3 {
		t.Fatalf("batch sizes = %v", sizes)
	}
	var j delivery.Job
	json.Unmarshal([]byte(cs[2].Body["Entries"].([]any)[2].(map[string]any)["MessageBody"].(string)), &j)
	if j.ID != "jw" {
		t.Fatalf("last job = %+v", j)
	}
}

func TestPartialBatchFailureIsTemporary(t *testing.T) {
	client, _ := sqsServer(t, true)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.example/1/q"}
	err := q.Send(context.Background(), []delivery.Job{{ID: "a"}})
	if err == nil || !fault.IsTemporary(err) || !strings.Contains(err.Error(), "1 of 1 jobs not sent: InternalError") {
		t.Fatalf("Send = %v", err)
	}
}

func TestRetryAndDeadLetter(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.example/1/q", DeadLetterURL: "https://sqs.example/1/dead"}
	if err := q.Retry(context.Background(), "rh-1", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := q.Retry(context.Background(), "rh-2", 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(context.Background(), delivery.Job{ID: "j1"}); err != nil {
		t.Fatal(err)
	}
	cs := calls()
	if cs[0].Target != "ChangeMessageVisibility" || cs[0].Body["ReceiptHandle"] != "rh-1" || cs[0].Body["VisibilityTimeout"] != float64(90) {
		t.Fatalf("first call = %+v", cs[0])
	}
	if cs[1].Body["VisibilityTimeout"] != float64(delivery.MaxDelay/time.Second) {
		t.Fatalf("delay not capped at delivery.MaxDelay (SQS's 12h visibility maximum less the attempt): %+v", cs[1])
	}
	if cs[2].Target != "SendMessage" || cs[2].Body["QueueUrl"] != q.DeadLetterURL || !strings.Contains(cs[2].Body["MessageBody"].(string), `"id":"j1"`) {
		t.Fatalf("dead-letter call = %+v", cs[2])
	}
}

// A traced job carries its traceparent as the traceparent message
// attribute (a String), and in its body.
func TestSendCarriesTraceparent(t *testing.T) {
	client, calls := sqsServer(t, false)
	q := &sqsqueue.Queue{API: client, URL: "https://sqs.eu-west-1.amazonaws.com/1/deliveries"}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := q.Send(context.Background(), []delivery.Job{{ID: "a", MessageID: "m", Traceparent: tp}, {ID: "b", MessageID: "m"}}); err != nil {
		t.Fatal(err)
	}
	entries := calls()[0].Body["Entries"].([]any)
	attrs, _ := entries[0].(map[string]any)["MessageAttributes"].(map[string]any)
	want := map[string]any{"DataType": "String", "StringValue": tp}
	if fmt.Sprint(attrs["traceparent"]) != fmt.Sprint(want) {
		t.Fatalf("MessageAttributes = %v, want traceparent %v", attrs, want)
	}
	if !strings.Contains(entries[0].(map[string]any)["MessageBody"].(string), `"traceparent":"`+tp+`"`) {
		t.Fatal("the body lost the traceparent (a dead letter keeps only the body)")
	}
	if _, has := entries[1].(map[string]any)["MessageAttributes"]; has {
		t.Fatalf("an untraced job has attributes: %v", entries[1])
	}
}
