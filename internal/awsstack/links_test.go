//go:build awsstack

package awsstack

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// eventReceiver is a webhook receiver that verifies each request with the
// webhook package and keeps the events.
type eventReceiver struct {
	URL    string
	mu     sync.Mutex
	events []*webhook.Event
	errs   []error
}

func startEventReceiver(tb testing.TB, secret string) *eventReceiver {
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		tb.Fatal(err)
	}
	e := &eventReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ev, err := v.ReadEvent(r)
		e.mu.Lock()
		defer e.mu.Unlock()
		if err != nil {
			e.errs = append(e.errs, err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		e.events = append(e.events, ev)
		w.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

func (e *eventReceiver) received() ([]*webhook.Event, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*webhook.Event(nil), e.events...), append([]error(nil), e.errs...)
}

// linkFile is a file the test sends and expects back through a link.
type linkFile struct {
	path string
	data []byte
}

// linkTestFiles writes a 300 KiB random attachment and a 1.5 MiB text
// body (over MaxBodyBytes, 1 MiB by default) of numbered lines.
func linkTestFiles(t *testing.T) (attachment, text linkFile) {
	dir := t.TempDir()
	attachment = linkFile{path: filepath.Join(dir, "blob.bin"), data: make([]byte, 300<<10)}
	if _, err := rand.Read(attachment.data); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i := 0; b.Len() < 3<<19; i++ {
		fmt.Fprintf(&b, "line %07d of a text part too large to keep whole in the parsed JSON\n", i)
	}
	text = linkFile{path: filepath.Join(dir, "body.txt"), data: b.Bytes()}
	for _, f := range []linkFile{attachment, text} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return attachment, text
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkLinks follows the links of the message sent to links@: the
// attachment's and the cut text part's, through the link function's URL
// (302 to a URL presigned for versitygw), then a tampered link, then the
// key rotated once (the link still works, signed with AWSPREVIOUS) and
// twice (refused).
func (x *stackRun) checkLinks(t *testing.T, attachment, text linkFile) {
	var ev *webhook.Event
	waitFor(t, 2*time.Minute, "the links@ webhook", func() bool {
		evs, errs := x.links.received()
		if len(errs) > 0 {
			t.Fatalf("links receiver: %v", errs)
		}
		if len(evs) > 0 {
			ev = evs[0]
		}
		return ev != nil
	})
	base := x.st.T.Attrs["LinkFunctionUrl.FunctionUrl"]
	if len(ev.Data.Attachments) != 1 {
		t.Fatalf("attachments: %+v", ev.Data.Attachments)
	}
	att := ev.Data.Attachments[0]
	if !strings.HasPrefix(att.URL, base+"v1.") || att.URLExpiresAt == nil {
		t.Fatalf("attachment url %q (expires %v), want a link under %s", att.URL, att.URLExpiresAt, base)
	}
	if att.SHA256 != sha256Hex(attachment.data) || att.Size != int64(len(attachment.data)) {
		t.Errorf("attachment: sha256 %s size %d, sent %s %d", att.SHA256, att.Size, sha256Hex(attachment.data), len(attachment.data))
	}

	// The function URL answers 302 to S3 (versitygw behind the counter).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(att.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, x.st.S3.Endpoint()+"/") {
		t.Fatalf("GET link: %d Location %q, want 302 to %s", resp.StatusCode, loc, x.st.S3.Endpoint())
	}
	got := fetchLink(t, att.URL, http.StatusOK)
	if !bytes.Equal(got, attachment.data) || sha256Hex(got) != att.SHA256 {
		t.Errorf("attachment through its link: %d bytes sha256 %s, sent %d bytes sha256 %s", len(got), sha256Hex(got), len(attachment.data), att.SHA256)
	}

	// The text part over MaxBodyBytes: cut in the JSON, whole behind url.
	var part *struct{ url, sha string }
	for _, p := range ev.Data.Parts {
		if p.ContentType == "text/plain" {
			if !p.Truncated || p.URL == "" {
				t.Fatalf("text part of %d bytes: truncated %v url %q, want a link", p.Size, p.Truncated, p.URL)
			}
			part = &struct{ url, sha string }{p.URL, p.SHA256}
		}
	}
	if part == nil {
		t.Fatalf("no text/plain part: %+v", ev.Data.Parts)
	}
	whole := fetchLink(t, part.url, http.StatusOK)
	// SMTP carries lines with CRLF; the part is stored as decoded.
	if sha256Hex(whole) != part.sha || !bytes.Equal(bytes.ReplaceAll(whole, []byte("\r\n"), []byte("\n")), text.data) {
		t.Errorf("text part through its link: %d bytes sha256 %s, JSON says %s; sent %d bytes", len(whole), sha256Hex(whole), part.sha, len(text.data))
	}

	// A tampered MAC (its first character: the last may carry only
	// padding bits): 403 from the function, no redirect.
	i := strings.LastIndexByte(att.URL, '.') + 1
	c := byte('A')
	if att.URL[i] == 'A' {
		c = 'B'
	}
	fetchLink(t, att.URL[:i]+string(c)+att.URL[i+1:], http.StatusForbidden)

	// Rotating the key once keeps the link working (the function reads
	// AWSCURRENT and AWSPREVIOUS at its next cold start); twice revokes it.
	arn := x.st.T.Refs["LinkKeySecret"]
	for i, want := range []int{http.StatusOK, http.StatusForbidden} {
		key, err := password(64)
		if err != nil {
			t.Fatal(err)
		}
		x.st.Secrets.Rotate(arn, key)
		x.st.Functions["LinkFunction"].Close()
		if got := fetchLink(t, att.URL, want); want == http.StatusOK && !bytes.Equal(got, attachment.data) {
			t.Errorf("after rotation %d: the attachment differs", i+1)
		}
	}

	n := 0
	var line strings.Builder
	for _, inv := range x.st.Invocations() {
		if inv.Mapping == "LinkFunctionUrl" {
			if inv.Err != nil {
				t.Errorf("link function: %v", inv.Err)
			}
			n++
			fmt.Fprintf(&line, " [%v init %v, peak %d MiB]", inv.Result.Duration.Round(time.Millisecond), inv.Result.Init.Round(time.Millisecond), inv.Result.PeakRSS>>20)
		}
	}
	fmt.Printf("link function (%d MB) through its URL:%s\n", x.st.Specs["LinkFunction"].MemoryMB, line.String())
	if n != 6 {
		t.Errorf("link function invoked %d times through its URL, want 6", n)
	}
}

// fetchLink GETs a link with a plain client (following the redirect) and
// checks the status.
func fetchLink(t *testing.T, u string, want int) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", u, resp.StatusCode, b, want)
	}
	return b
}
