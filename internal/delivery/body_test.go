package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// captured is one request a verifying receiver got.
type captured struct {
	contentType string
	length      int64
	body        []byte
}

// formatFixture stores a raw message and an attachment, and returns a job
// whose message points at them, plus a receiver that verifies signatures
// over the exact bytes received.
func formatFixture(t *testing.T) (*delivery.Webhooks, *delivery.Job, *message.Message, string, chan captured) {
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	raw := "From: a@example.org\r\nTo: support@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
	st.Put(ctx, "raw/01JK.eml", strings.NewReader(raw), nil)
	st.Put(ctx, "attachments/01JK/1/report.pdf", strings.NewReader("%PDF-1.4 report"), nil)
	m := &message.Message{ID: "01JK", Subject: "hi", RawKey: "raw/01JK.eml", Text: "body\n",
		From: &message.Address{Name: "A", Address: "a@example.org"}, To: []message.Address{{Address: "support@example.test"}},
		Envelope:    message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"support@example.test"}, ClientIP: "192.0.2.1"},
		Attachments: []message.Attachment{{Filename: "report.pdf", ContentType: "application/pdf", Size: 15, Key: "attachments/01JK/1/report.pdf"}}}
	j := &delivery.Job{ID: "01JK.support.0", MessageID: "01JK", Route: "support", CreatedAt: time.Now().UTC(), Message: m}
	got := make(chan captured, 1)
	v, _ := webhook.NewVerifier(secret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, b); err != nil {
			t.Errorf("signature over the received body: %v", err)
		}
		got <- captured{r.Header.Get("Content-Type"), r.ContentLength, b}
	}))
	t.Cleanup(srv.Close)
	w := delivery.NewWebhooks(egress.Policy{AllowLoopback: true}, nil)
	w.Store = st
	return w, j, m, srv.URL, got
}

func action(url, yaml string) *routing.WebhookAction {
	cfg, err := routing.Parse("r.yaml", []byte(`
domains: [example.test]
routes:
  - name: support
    catch_all: true
    actions:
      - webhook: {url: "`+url+`", secret: "`+secret+`"`+yaml+`}
`))
	if err != nil {
		panic(err)
	}
	return cfg.Routes[0].Actions[0].Webhook
}

func id(s string) string { return s }

func TestRawFormatSendsTheStoredBytes(t *testing.T) {
	w, j, m, url, got := formatFixture(t)
	res := w.Post(context.Background(), j, m, action(url, `, format: raw`), id)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	c := <-got
	if c.contentType != "message/rfc822" || string(c.body) != "From: a@example.org\r\nTo: support@example.test\r\nSubject: hi\r\n\r\nbody\r\n" || c.length != int64(len(c.body)) {
		t.Fatalf("raw request: %q %d %q", c.contentType, c.length, c.body)
	}
}

func TestMultipartFormat(t *testing.T) {
	w, j, m, url, got := formatFixture(t)
	if res := w.Post(context.Background(), j, m, action(url, `, format: multipart`), id); res.Err != nil {
		t.Fatal(res.Err)
	}
	c := <-got
	mt, params, err := mime.ParseMediaType(c.contentType)
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("content type %q", c.contentType)
	}
	r := multipart.NewReader(bytes.NewReader(c.body), params["boundary"])
	form, err := r.ReadForm(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"id": "01JK", "subject": "hi", "from": `"A" <a@example.org>`, "to": "support@example.test",
		"text": "body\n", "sender": "a@example.org", "sender_ip": "192.0.2.1", "attachments": "1"} {
		if got := form.Value[k]; len(got) != 1 || got[0] != want {
			t.Errorf("field %s = %q, want %q", k, got, want)
		}
	}
	var ev webhook.Event
	if err := json.Unmarshal([]byte(form.Value["message"][0]), &ev); err != nil || ev.Data.ID != "01JK" {
		t.Errorf("message field: %v", err)
	}
	fh := form.File["attachment1"]
	if len(fh) != 1 || fh[0].Filename != "report.pdf" || fh[0].Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("attachment1 = %+v", fh)
	}
	f, _ := fh[0].Open()
	b, _ := io.ReadAll(f)
	if string(b) != "%PDF-1.4 report" {
		t.Fatalf("attachment1 bytes %q", b)
	}
}

func TestInlineAttachmentsAndSizeLimit(t *testing.T) {
	w, j, m, url, got := formatFixture(t)
	if res := w.Post(context.Background(), j, m, action(url, `, attachments: inline`), id); res.Err != nil {
		t.Fatal(res.Err)
	}
	var ev webhook.Event
	json.Unmarshal((<-got).body, &ev)
	a := ev.Data.Attachments[0]
	if b, _ := base64.StdEncoding.DecodeString(a.ContentBase64); string(b) != "%PDF-1.4 report" || a.URL != "" {
		t.Fatalf("inline attachment = %+v", a)
	}
	if m.Attachments[0].ContentBase64 != "" {
		t.Fatal("the job's message was modified")
	}
	// Over inline_max_bytes, and no link maker: metadata only.
	if res := w.Post(context.Background(), j, m, action(url, `, attachments: inline, inline_max_bytes: 10`), id); res.Err != nil {
		t.Fatal(res.Err)
	}
	ev = webhook.Event{}
	json.Unmarshal((<-got).body, &ev)
	if a := ev.Data.Attachments[0]; a.ContentBase64 != "" || a.Key == "" {
		t.Fatalf("oversized inline attachment = %+v", a)
	}
}

func TestRawFormatWithoutStoredMessageIsPermanent(t *testing.T) {
	w, j, m, url, _ := formatFixture(t)
	m.RawKey = "raw/missing.eml"
	res := w.Post(context.Background(), j, m, action(url, `, format: raw`), id)
	if res.Err == nil || !store.IsNotFound(res.Err) {
		t.Fatalf("Post = %v, want not found", res.Err)
	}
}
