package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// TestPutRawTraceparent: a traced write puts its traceparent beside the
// envelope, and the metadata stays within S3's 2 KiB even when the
// envelope is as large as it may be inline.
func TestPutRawTraceparent(t *testing.T) {
	st, err := filestore.New(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "smtp.data")
	defer span.End()

	// Grow the recipients until the envelope is about to leave the
	// metadata: the largest inline envelope.
	var largest map[string]string
	for n := 1; ; n++ {
		env := message.Envelope{MailFrom: "a@remote.test", ClientIP: "192.0.2.1", HELO: "mx.remote.test", Source: "gateway"}
		for i := range n {
			env.RcptTo = append(env.RcptTo, fmt.Sprintf("user%03d@example.test", i))
		}
		id := fmt.Sprintf("01JDQ7ZK3M8X9V2N4B6C8D%04d", n)
		obj, err := store.PutRaw(ctx, st, id, env, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := st.Get(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		tpv := got.Meta[store.MetaTraceparent]
		if !strings.HasPrefix(tpv, "00-"+span.SpanContext().TraceID().String()+"-") || len(tpv) != 55 {
			t.Fatalf("traceparent %q, want one of trace %s", tpv, span.SpanContext().TraceID())
		}
		if got.Meta[store.MetaEnvelope] == "" {
			break
		}
		largest = got.Meta
	}
	total := 0
	for k, v := range largest {
		total += len(k) + len(v)
	}
	if total > store.MaxRawMeta {
		t.Fatalf("metadata of the largest inline envelope with its traceparent is %d bytes, over S3's %d", total, store.MaxRawMeta)
	}
	t.Logf("largest inline metadata: %d bytes", total)

	// Untraced, nothing is added.
	obj, err := store.PutRaw(context.Background(), st, "01JDQ7ZK3M8X9V2N4B6C8D0ZZZ", message.Envelope{MailFrom: "a@b.test", RcptTo: []string{"c@example.test"}}, strings.NewReader("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, got, _ := st.Get(ctx, obj.Key); got.Meta[store.MetaTraceparent] != "" {
		t.Fatalf("untraced write has traceparent %q", got.Meta[store.MetaTraceparent])
	}
}
