// Package events_test invokes every function's handler with its sample
// event, through aws-lambda-go as Lambda does.
package events_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func routes(t *testing.T, url string) *routing.Live {
	cfg, err := routing.Parse("routes.yaml", []byte(`
domains: [example.test]
routes:
  - name: support
    match: {recipient: support@example.test}
    actions:
      - webhook: {url: "`+url+`", secret: "`+secret+`"}
`))
	if err != nil {
		t.Fatal(err)
	}
	return routing.Static(cfg)
}

func sample(t *testing.T, name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const rawMessage = "From: Alice <alice@example.org>\r\nTo: support@example.test\r\nSubject: Printer on fire\r\nMessage-ID: <cafe.1@example.org>\r\nDate: Sun, 22 Nov 2026 16:40:10 +0000\r\n\r\nIt is on fire.\r\n"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestIngestSamples(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The gateway's object, with its envelope, and an SES-written object
	// without one.
	env := message.Envelope{MailFrom: "alice@example.org", RcptTo: []string{"support@example.test"}, ClientIP: "192.0.2.10", HELO: "mail.example.org", ReceivedAt: time.Now().UTC(), Source: "gateway"}
	if _, err := store.PutRaw(ctx, st, "01JDQ7ZK3M8X9V2N4B6C8D0E1F", env, strings.NewReader(rawMessage)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "raw/o3vsgeg5dq2hd7sps2pptmf2nd4nb0bn1vt7m4g1", strings.NewReader(rawMessage), nil); err != nil {
		t.Fatal(err)
	}
	q := localqueue.Memory("deliveries")
	h := &ingest.Handler{Store: st, Routes: routes(t, "https://hooks.example.test/in"), Queue: localqueue.Deliveries{Queue: q},
		Journal: delivery.Journal{Store: st}, Log: quiet()}

	out, err := lambda.NewHandler(h.Handle).Invoke(ctx, sample(t, "ingest-sqs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.BatchItemFailures == nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("response %s: want no batch item failures", out)
	}
	if q.Len() != 2 {
		t.Fatalf("%d jobs queued, want 2 (gateway message and SES message; the test event makes none)", q.Len())
	}

	// The direct S3 invocation of the same object is a duplicate: the job
	// is already queued under the same id.
	if _, err := lambda.NewHandler(h.Handle).Invoke(ctx, sample(t, "ingest-s3.json")); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 2 {
		t.Fatalf("duplicate S3 event created a job: %d queued", q.Len())
	}
}

func TestIngestSampleReportsMissingObjectAsBatchFailure(t *testing.T) {
	st, _ := filestore.New(t.TempDir())
	defer st.Close()
	h := &ingest.Handler{Store: st, Routes: routes(t, "https://hooks.example.test/in"), Queue: localqueue.Deliveries{Queue: localqueue.Memory("d")},
		Journal: delivery.Journal{Store: st}, Log: quiet()}
	out, err := lambda.NewHandler(h.Handle).Invoke(context.Background(), sample(t, "ingest-sqs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var resp events.SQSEventResponse
	json.Unmarshal(out, &resp)
	if len(resp.BatchItemFailures) != 2 || resp.BatchItemFailures[0].ItemIdentifier == "2e1424d4-f796-459a-8184-9c92662be6da" {
		t.Fatalf("batch item failures = %+v, want the two object records, not the test event", resp.BatchItemFailures)
	}
}

func TestDeliverSample(t *testing.T) {
	v, _ := webhook.NewVerifier(secret)
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ev, err := v.ReadEvent(r)
		if err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(401)
			return
		}
		got <- id + " " + ev.Data.Subject
	}))
	defer srv.Close()
	st, _ := filestore.New(t.TempDir())
	defer st.Close()
	q := localqueue.Memory("deliveries")
	h := &delivery.Handler{Store: st, Routes: routes(t, srv.URL), Queue: localqueue.Deliveries{Queue: q}, Journal: delivery.Journal{Store: st},
		Webhooks: delivery.NewWebhooks(egress.Policy{AllowLoopback: true}, nil), Log: quiet()}
	out, err := lambda.NewHandler(h.Handle).Invoke(context.Background(), sample(t, "deliver-sqs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"batchItemFailures":[]}` {
		t.Fatalf("response = %s", out)
	}
	if g := <-got; g != "01JDQ7ZK3M8X9V2N4B6C8D0E1F.support.0 Printer on fire" {
		t.Fatalf("receiver got %q", g)
	}
}

// A store under a prefix: S3 events name the full key.
func TestIngestPrefixedKeys(t *testing.T) {
	st, _ := filestore.New(t.TempDir())
	defer st.Close()
	ctx := context.Background()
	env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"support@example.test"}, ReceivedAt: time.Now().UTC()}
	store.PutRaw(ctx, st, "01JDQ7ZK3M8X9V2N4B6C8D0E1F", env, strings.NewReader(rawMessage))
	q := localqueue.Memory("deliveries")
	h := &ingest.Handler{Store: st, Routes: routes(t, "https://hooks.example.test/in"), Queue: localqueue.Deliveries{Queue: q},
		Journal: delivery.Journal{Store: st}, Log: quiet(), KeyPrefix: "mail/in/"}
	ev := strings.Replace(string(sample(t, "ingest-s3.json")), `"raw/01JDQ7ZK3M8X9V2N4B6C8D0E1F.eml"`, `"mail/in/raw/01JDQ7ZK3M8X9V2N4B6C8D0E1F.eml"`, 1)
	if _, err := lambda.NewHandler(h.Handle).Invoke(ctx, []byte(ev)); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 1 {
		t.Fatalf("%d jobs for a prefixed key, want 1", q.Len())
	}
}
