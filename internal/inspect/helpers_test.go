package inspect_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/localserve"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a webhook receiver that counts the requests for each
// webhook-id (job) it gets.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []string // webhook-ids, in order
	c   chan string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{c: make(chan string, 100)}
	v, _ := webhook.NewVerifier(secret)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _, err := v.ReadEvent(r)
		if err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(401)
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, id)
		rc.mu.Unlock()
		rc.c <- id
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// wait returns the next webhook-id received, or fails after d.
func (rc *receiver) wait(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case id := <-rc.c:
		return id
	case <-time.After(d):
		t.Fatalf("no webhook within %s", d)
		return ""
	}
}

const routesYAML = `
domains: [example.test]
routes:
  - name: support
    match: {recipient: "support@example.test"}
    actions:
      - webhook: {url: "%s/support", secret: "%s"}
        retry: {attempts: 3, initial: 100ms, max: 400ms}
`

var logOut io.Writer = io.Discard

func init() {
	if os.Getenv("LETTERBOX_TEST_LOG") != "" {
		logOut = os.Stderr
	}
}

// startDev starts `letterbox dev`'s pipeline in-process on storeURL, with a
// route for support@example.test to rc.
func startDev(t *testing.T, storeURL string, rc *receiver, token string) *localserve.Server {
	t.Helper()
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, fmt.Appendf(nil, routesYAML, rc.srv.URL, secret), 0o644)
	if storeURL == "" {
		storeURL = "file://" + filepath.Join(dir, "store")
	}
	srv, err := localserve.Start(context.Background(), localserve.Config{
		HTTPAddr: "127.0.0.1:0", StoreURL: storeURL, RoutesPath: routes, QueueDir: filepath.Join(dir, "queue"),
		Gateway: smtpgw.Config{Addr: "127.0.0.1:0", Hostname: "mx.test"}, NoAuth: true,
		Logger: slog.New(slog.NewTextHandler(logOut, nil)), Out: io.Discard, InspectToken: token,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

const htmlMsg = "From: Elodie <elodie@example.org>\r\n" +
	"To: Support <support@example.test>\r\n" +
	"Subject: %s\r\n" +
	"Message-ID: <%s@example.org>\r\n" +
	"Date: Sun, 06 Dec 2026 16:40:10 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
	"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n" +
	"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTwo coffees, please.\r\n" +
	"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
	"<p id=\"order\">Two <b>coffees</b>, please.</p><img src=\"https://tracker.example/pixel.gif\" alt=\"pixel\">" +
	"<script>window.top.pwned = 1; parent.document.title = 'pwned';</script>" +
	"<img src=x onerror=\"window.top.pwned = 2\">\r\n" +
	"--alt--\r\n" +
	"--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"order.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
	"--outer--\r\n"

var ulidRe = regexp.MustCompile(`[0-9A-HJKMNP-TV-Z]{26}`)

// send sends a message over SMTP and returns the id in the 250 reply.
func send(t *testing.T, addr, subject string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("elodie@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("support@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, htmlMsg, subject, strings.ReplaceAll(subject, " ", "."))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	id := ulidRe.FindString(resp.StatusText)
	if id == "" {
		t.Fatalf("no id in the reply %q", resp.StatusText)
	}
	return id
}

// getJSON GETs url into v and returns the status code.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond until it holds, or fails after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sse reads server-sent events' data lines from url into a channel.
func sse(t *testing.T, url string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	c := make(chan string, 100)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case c <- d:
				default:
				}
			}
		}
	}()
	return c
}
