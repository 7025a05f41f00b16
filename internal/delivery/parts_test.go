package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/webhook"
)

// TestTruncatedPartLinks parses a message whose text body is over the
// parser's limit into an S3 store (versitygw), delivers it, and follows
// the link the webhook body carries to the whole part.
func TestTruncatedPartLinks(t *testing.T) {
	v := testenv.StartVersity(t, testenv.VersityOptions{})
	v.SetEnv(t)
	ctx := context.Background()
	st, err := s3store.New(ctx, "s3://"+v.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("a line of a long plain text body\r\n", 2000) // 68,000 bytes
	raw := "From: a@example.org\r\nTo: support@example.test\r\nSubject: long\r\n\r\n" + body
	m, err := parser.Parse(ctx, strings.NewReader(raw), parser.Options{ID: "01JK", Store: st, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || m.Parts[0].Key == "" {
		t.Fatalf("not truncated: %+v", m.Parts)
	}
	got := make(chan []byte, 1)
	vf, _ := webhook.NewVerifier(secret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := vf.Verify(r.Header, b); err != nil {
			t.Errorf("signature: %v", err)
		}
		got <- b
	}))
	t.Cleanup(srv.Close)
	w := delivery.NewWebhooks(egress.Policy{AllowLoopback: true}, nil)
	w.Store, w.Links = st, st
	j := &delivery.Job{ID: "01JK.support.0", MessageID: "01JK", Route: "support", CreatedAt: time.Now().UTC(), Message: m}

	if res := w.Post(ctx, j, m, action(srv.URL, ``), id); res.Err != nil {
		t.Fatal(res.Err)
	}
	var ev webhook.Event
	if err := json.Unmarshal(<-got, &ev); err != nil {
		t.Fatal(err)
	}
	p := ev.Data.Parts[0]
	if !p.Truncated || p.URL == "" || p.URLExpiresAt == nil || time.Until(*p.URLExpiresAt) < 23*time.Hour || !ev.Data.Truncated {
		t.Fatalf("part in the webhook = %+v", p)
	}
	if m.Parts[0].URL != "" {
		t.Fatal("the job's message was modified")
	}
	resp, err := http.Get(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(whole) != body || int64(len(whole)) != p.Size {
		t.Fatalf("GET link: %d, %d bytes (want %d)", resp.StatusCode, len(whole), len(body))
	}

	// attachments: metadata gives no links, the part keeps its key.
	if res := w.Post(ctx, j, m, action(srv.URL, `, attachments: metadata`), id); res.Err != nil {
		t.Fatal(res.Err)
	}
	ev = webhook.Event{}
	json.Unmarshal(<-got, &ev)
	if p := ev.Data.Parts[0]; p.URL != "" || p.Key != m.Parts[0].Key || !p.Truncated {
		t.Fatalf("metadata part = %+v", p)
	}
}
