package store

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// EventRecord returns the S3 event notification record S3 sends when an
// object is created (the "ObjectCreated:Put" event, schema 2.1), with the
// key URL-encoded as S3 encodes it (form encoding, "/" left as is).
func EventRecord(bucket string, obj Object) events.S3EventRecord {
	t := obj.ModTime
	if t.IsZero() {
		t = time.Now()
	}
	return events.S3EventRecord{
		EventVersion: "2.1",
		EventSource:  "aws:s3",
		AWSRegion:    "local",
		EventTime:    t.UTC(),
		EventName:    "ObjectCreated:Put",
		S3: events.S3Entity{
			SchemaVersion:   "1.0",
			ConfigurationID: "letterbox-raw",
			Bucket:          events.S3Bucket{Name: bucket, Arn: "arn:aws:s3:::" + bucket},
			Object: events.S3Object{
				Key:           strings.ReplaceAll(url.QueryEscape(obj.Key), "%2F", "/"),
				URLDecodedKey: obj.Key,
				Size:          obj.Size,
				Sequencer:     fmt.Sprintf("%016X", t.UnixNano()),
			},
		},
	}
}

// notifying wraps a Store to emit event records after raw objects commit.
type notifying struct {
	Store
	bucket string
	fn     func(context.Context, events.S3EventRecord)
}

// WithEvents returns a Store that calls fn, after each successful Put under
// raw/, with the record S3 would send to its event notification
// destination: what `letterbox dev` uses in place of S3 → SQS. fn runs on
// the writer's goroutine, after the write is durable; it must not block.
func WithEvents(s Store, bucket string, fn func(context.Context, events.S3EventRecord)) Store {
	return &notifying{Store: s, bucket: bucket, fn: fn}
}

func (n *notifying) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (Object, error) {
	obj, err := n.Store.Put(ctx, key, body, meta)
	if err == nil && strings.HasPrefix(key, RawPrefix) {
		n.fn(ctx, EventRecord(n.bucket, obj))
	}
	return obj, err
}

// Unwrap returns the wrapped store.
func (n *notifying) Unwrap() Store { return n.Store }
