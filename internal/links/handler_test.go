package links_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

var pdf = []byte("%PDF-1.4\n% an attachment\n")

func put(t *testing.T, st store.Store, key string, body []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(body), map[string]string{"content-type": "application/pdf"}); err != nil {
		t.Fatal(err)
	}
}

// do sends method to u with a plain client that does not follow redirects.
func do(t *testing.T, method, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// The handler as `letterbox dev` mounts it: it streams the object, and
// answers each refusal with its own code. Its log names keys, never tokens.
func TestHandlerStreams(t *testing.T) {
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	put(t, st, attKey, pdf)
	put(t, st, "raw/01JF8ZQ3V2M9N4X7C5B6A0D1EF.eml", []byte("From: a@example.org\r\n\r\nsecret mail\r\n"))
	kr := keyring(t, secret('a'))
	now := t0
	var logs testenv.Buffer
	h := &links.Handler{Keys: kr, Store: st, Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	mux := http.NewServeMux()
	mux.Handle("/dev/links/", http.StripPrefix("/dev/links", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s := &links.Signer{Base: srv.URL + "/dev/links", Keys: kr, Now: func() time.Time { return t0 }}
	link := func(key string, ttl time.Duration) string {
		u, err := s.PresignGet(context.Background(), key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	good := link(attKey, time.Hour)

	resp, body := do(t, "GET", good)
	if resp.StatusCode != 200 || !bytes.Equal(body, pdf) || resp.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = do(t, "HEAD", good)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(pdf)) {
		t.Fatalf("HEAD: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}

	gone := link("attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/9/gone.pdf", time.Hour)
	rawLink := srv.URL + "/dev/links/" + kr.Token("raw/01JF8ZQ3V2M9N4X7C5B6A0D1EF.eml", t0.Add(time.Hour))
	for _, c := range []struct {
		name, method, url string
		want              int
	}{
		{"tampered", "GET", strings.Replace(good, "v1.", "v1.x", 1), http.StatusForbidden},
		{"garbage", "GET", srv.URL + "/dev/links/nonsense", http.StatusForbidden},
		{"extra path", "GET", good + "/order.pdf", http.StatusForbidden},
		{"signed raw/ key", "GET", rawLink, http.StatusForbidden},
		{"missing object", "GET", gone, http.StatusNotFound},
		{"missing object, HEAD", "HEAD", gone, http.StatusNotFound},
		{"POST", "POST", good, http.StatusMethodNotAllowed},
		{"DELETE", "DELETE", good, http.StatusMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, c.method, c.url)
			if resp.StatusCode != c.want {
				t.Fatalf("%s: %d %q, want %d", c.method, resp.StatusCode, body, c.want)
			}
			if c.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow: %q", resp.Header.Get("Allow"))
			}
			if bytes.Contains(body, []byte("secret mail")) {
				t.Errorf("the raw message leaked: %q", body)
			}
		})
	}

	now = t0.Add(time.Hour)
	if resp, body := do(t, "GET", good); resp.StatusCode != http.StatusGone {
		t.Fatalf("expired: %d %q, want 410", resp.StatusCode, body)
	}
	tok := good[strings.LastIndexByte(good, '/')+1:]
	if l := logs.String(); strings.Contains(l, tok) || strings.Contains(l, kr.Token("raw/01JF8ZQ3V2M9N4X7C5B6A0D1EF.eml", t0.Add(time.Hour))) ||
		strings.Contains(l, string(secret('a'))) || !strings.Contains(l, attKey) {
		t.Errorf("log has a token or key material, or lacks the object key:\n%s", l)
	}
}

// functionURL stands in for a Lambda function URL: it turns each request
// into the event Lambda would pass and writes the function's answer.
func functionURL(t *testing.T, h http.Handler) *httptest.Server {
	fn := links.FunctionURL(h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := events.LambdaFunctionURLRequest{Version: "2.0", RawPath: r.URL.EscapedPath(), RawQueryString: r.URL.RawQuery, Headers: map[string]string{}}
		in.RequestContext.HTTP.Method = r.Method
		in.RequestContext.HTTP.Path = r.URL.Path
		for k := range r.Header {
			in.Headers[strings.ToLower(k)] = r.Header.Get(k)
		}
		out, err := fn(r.Context(), in)
		if err != nil {
			t.Errorf("function error: %v", err)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		for k, v := range out.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(out.StatusCode)
		body := []byte(out.Body)
		if out.IsBase64Encoded {
			body, _ = base64.StdEncoding.DecodeString(out.Body)
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The link function against S3 (versitygw): a 7-day link, followed near
// the end of its life, long after any credentials the deliver function
// had when it made the link would have expired, still redirects to a URL
// presigned now, for minutes, and a plain client following it gets the
// attachment's bytes.
func TestFunctionRedirectsToFreshPresignedURL(t *testing.T) {
	v := testenv.StartVersity(t, testenv.VersityOptions{})
	v.SetEnv(t)
	st, err := s3store.New(context.Background(), v.StoreURL("mail"))
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, attKey, pdf)
	kr := keyring(t, secret('b'), secret('a'))
	signedAt := time.Now()
	clock := signedAt.Add(links.MaxTTL - time.Minute)
	h := &links.Handler{Keys: kr, Store: st, Redirect: st, Now: func() time.Time { return clock }}
	srv := functionURL(t, h)
	s := &links.Signer{Base: srv.URL + "/", Keys: kr, Now: func() time.Time { return signedAt }}
	link, err := s.PresignGet(context.Background(), attKey, links.MaxTTL)
	if err != nil {
		t.Fatal(err)
	}

	resp, body := do(t, "GET", link)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET: %d %v %q, want 302, no-store", resp.StatusCode, resp.Header, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), v.Endpoint+"/") {
		t.Fatalf("Location %q is not on the S3 endpoint %s", loc, v.Endpoint)
	}
	q := loc.Query()
	date, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil || time.Since(date) > time.Minute || q.Get("X-Amz-Expires") != "300" {
		t.Errorf("presigned at %s for %ss; want now, for 300s", q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"))
	}
	followed, err := http.Get(link) // a plain client follows the redirect
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(followed.Body)
	followed.Body.Close()
	if followed.StatusCode != 200 || !bytes.Equal(got, pdf) {
		t.Fatalf("following the link: %d %q", followed.StatusCode, got)
	}

	if resp, _ := do(t, "HEAD", link); resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "25" {
		t.Errorf("HEAD: %d, Content-Length %q; want 200, 25", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	gone, _ := s.PresignGet(context.Background(), "attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/9/gone.pdf", time.Hour)
	clock = signedAt
	if resp, body := do(t, "GET", gone); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing object: %d %q, want 404", resp.StatusCode, body)
	}
	if resp, _ := do(t, "POST", link); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
	clock = signedAt.Add(links.MaxTTL)
	if resp, body := do(t, "GET", link); resp.StatusCode != http.StatusGone {
		t.Errorf("after 7 days: %d %q, want 410", resp.StatusCode, body)
	}
	// Rotated twice since: refused.
	clock = signedAt
	h.Keys = keyring(t, secret('c'), secret('d'))
	if resp, body := do(t, "GET", link); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after rotation: %d %q, want 403", resp.StatusCode, body)
	}
}
