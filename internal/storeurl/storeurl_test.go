package storeurl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

func TestOpenRefusesUnknownSchemes(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "gs://bucket"} {
		if _, _, err := storeurl.Open(context.Background(), u); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	if _, err := storeurl.RoutesLoader(context.Background(), "s3://bucket-only"); err == nil || !strings.Contains(err.Error(), "want s3://BUCKET/KEY") {
		t.Errorf("RoutesLoader(bucket only) = %v", err)
	}
}

func TestBucket(t *testing.T) {
	for in, want := range map[string]string{"s3://mail/prefix": "mail", "s3://mail": "mail", "file:///var/lib/letterbox/": "letterbox", ".letterbox": ".letterbox"} {
		if got := storeurl.Bucket(in); got != want {
			t.Errorf("Bucket(%q) = %q, want %q", in, got, want)
		}
	}
}

// Routes kept in S3 reload when the object changes, as the functions do.
func TestRoutesFromS3Reload(t *testing.T) {
	v := testenv.StartVersity(t, testenv.VersityOptions{})
	v.SetEnv(t)
	ctx := context.Background()
	st, _, err := storeurl.Open(ctx, v.StoreURL("config"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(s string) store.Object {
		t.Helper()
		if _, err := st.Put(ctx, "routes.yaml", strings.NewReader(s), nil); err != nil {
			t.Fatal(err)
		}
		obj, err := st.Stat(ctx, "routes.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	first := put("domains: [a.test]\nroutes: []\n")
	ref := "s3://" + v.Bucket + "/config/routes.yaml"
	l, err := storeurl.RoutesLoader(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	live, err := routing.NewLive(ctx, l, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !live.Get(ctx).HasDomain("x@a.test") {
		t.Fatal("first load")
	}
	// The loader tells versions apart by modification time and size; S3
	// times have one-second resolution, so a same-size edit within the
	// second is not a new version. Write until the server has stamped a
	// new time: the event the reload depends on.
	deadline := time.Now().Add(10 * time.Second)
	for put("domains: [b.test]\nroutes: []\n").ModTime.Equal(first.ModTime) {
		if time.Now().After(deadline) {
			t.Fatalf("the server kept modification time %s for 10s", first.ModTime)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cfg := live.Get(ctx); !cfg.HasDomain("x@b.test") || cfg.File != ref {
		t.Fatalf("not reloaded: %+v", cfg.Domains)
	}
}

func TestPrefix(t *testing.T) {
	for in, want := range map[string]string{"s3://mail/in/": "in/", "s3://mail/a/b": "a/b/", "s3://mail": "", "s3://mail/": "", "file:///x/y": "", "dir": ""} {
		if got := storeurl.Prefix(in); got != want {
			t.Errorf("Prefix(%q) = %q, want %q", in, got, want)
		}
	}
}
