package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
)

func TestWithEventsEmitsS3RecordsForRawOnly(t *testing.T) {
	fs, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	var got []events.S3EventRecord
	s := store.WithEvents(fs, "mail-bucket", func(_ context.Context, r events.S3EventRecord) { got = append(got, r) })
	ctx := context.Background()
	if _, err := s.Put(ctx, "raw/01J0 X.eml", strings.NewReader("hello"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "parsed/01J0.json", strings.NewReader("{}"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "../bad", strings.NewReader("x"), nil); err == nil {
		t.Fatal("bad key accepted")
	}
	if len(got) != 1 {
		t.Fatalf("got %d records, want 1", len(got))
	}
	r := got[0]
	if r.EventSource != "aws:s3" || r.EventName != "ObjectCreated:Put" || r.S3.Object.Key != "raw/01J0+X.eml" ||
		r.S3.Object.URLDecodedKey != "raw/01J0 X.eml" || r.S3.Object.Size != 5 || r.S3.Bucket.Name != "mail-bucket" {
		t.Fatalf("record = %+v", r)
	}
}
