package localserve_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/localserve"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type hook struct {
	srv    *httptest.Server
	events chan *webhook.Event
	ids    chan string
	fail   func() bool
}

func newHook(t *testing.T) *hook {
	h := &hook{events: make(chan *webhook.Event, 100), ids: make(chan string, 100), fail: func() bool { return false }}
	v, _ := webhook.NewVerifier(secret)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ev, err := v.ReadEvent(r)
		if err != nil {
			t.Errorf("hook: %v", err)
			w.WriteHeader(401)
			return
		}
		if h.fail() {
			w.WriteHeader(503)
			return
		}
		h.ids <- id
		h.events <- ev
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func start(t *testing.T, dir, hookURL string) *localserve.Server {
	t.Helper()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(fmt.Sprintf(`
domains: [example.test]
routes:
  - name: support
    match: {recipient: "support@example.test"}
    actions:
      - webhook: {url: "%s/support", secret: "%s"}
        retry: {attempts: 20, initial: 100ms, max: 400ms}
`, hookURL, secret)), 0o644)
	srv, err := localserve.Start(context.Background(), localserve.Config{
		HTTPAddr: "127.0.0.1:0", StoreURL: "file://" + filepath.Join(dir, "store"), RoutesPath: routes,
		Gateway: smtpgw.Config{Addr: "127.0.0.1:0", Hostname: "mx.test"}, NoAuth: true,
		Logger: slog.New(slog.NewTextHandler(testLog, nil)), Out: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

const msg = "From: =?UTF-8?B?w4lsb2RpZQ==?= <elodie@example.org>\r\n" +
	"To: Support <support@example.test>\r\n" +
	"Subject: =?UTF-8?Q?Caf=C3=A9_order?=\r\n" +
	"Message-ID: <m1@example.org>\r\n" +
	"Date: Sun, 22 Nov 2026 16:40:10 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
	"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n" +
	"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTwo coffees, please.\r\n" +
	"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Two coffees, please.</p>\r\n" +
	"--alt--\r\n" +
	"--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"order.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
	"--outer--\r\n"

func send(t *testing.T, addr, from string, to []string, body string) (string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	io.WriteString(w, body)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	c.Quit()
	return resp.StatusText, nil
}

func TestMailArrivesAsSignedWebhook(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	srv := start(t, dir, h.srv.URL)
	defer srv.Shutdown(context.Background())

	reply, err := send(t, srv.SMTPAddr(), "elodie@example.org", []string{"support@example.test"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	var ev *webhook.Event
	select {
	case ev = <-h.events:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook within 20s")
	}
	m := ev.Data
	if !strings.Contains(reply, m.ID) {
		t.Fatalf("250 reply %q does not name the message id %s", reply, m.ID)
	}
	if m.Subject != "Café order" || m.From.Name != "Élodie" || m.From.Address != "elodie@example.org" ||
		len(m.To) != 1 || m.To[0].Address != "support@example.test" ||
		strings.TrimSpace(m.Text) != "Two coffees, please." || !strings.Contains(m.HTML, "<p>Two coffees") ||
		len(m.Attachments) != 1 || m.Attachments[0].Filename != "order.pdf" || m.Attachments[0].Size != 9 ||
		m.Envelope.MailFrom != "elodie@example.org" || m.Envelope.HELO != "client.test" || m.Envelope.ClientIP != "127.0.0.1" {
		b, _ := json.MarshalIndent(m, "", "  ")
		t.Fatalf("parsed message:\n%s", b)
	}
	// The attachment travels as a time-limited link the dev server serves.
	att := m.Attachments[0]
	if att.URL == "" || att.URLExpiresAt == nil {
		t.Fatalf("attachment has no link: %+v", att)
	}
	resp, err := http.Get(att.URL)
	if err != nil {
		t.Fatal(err)
	}
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(pdf) != "%PDF-1.4\n" {
		t.Fatalf("GET attachment link: %d %q", resp.StatusCode, pdf)
	}
	if !strings.Contains(att.URL, "/dev/links/v1.") {
		t.Errorf("link %s is not in the deployed stack's format (/dev/links/v1.…)", att.URL)
	}
	i := len(att.URL) - 10 // inside the MAC
	tampered := att.URL[:i] + map[bool]string{true: "B", false: "A"}[att.URL[i] == 'A'] + att.URL[i+1:]
	if resp, _ := http.Get(tampered); resp.StatusCode != 403 {
		t.Fatalf("tampered link: %d, want 403", resp.StatusCode)
	}
	st := srv.Store()
	raw, _ := store.ReadAll(context.Background(), st, m.RawKey)
	if !bytes.HasSuffix(raw, []byte(msg)) || !bytes.HasPrefix(raw, []byte("Received: ")) {
		t.Fatalf("stored raw message is not the message with a Received header:\n%s", raw)
	}
	if _, err := st.Stat(context.Background(), store.ParsedKey(m.ID)); err != nil {
		t.Fatalf("parsed JSON not stored: %v", err)
	}
	// The record is written once the receiver has answered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := delivery.Journal{Store: st}.List(context.Background(), m.ID)
		if err == nil && len(recs) == 1 && recs[0].Status == delivery.StatusDelivered && len(recs[0].Attempts) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery records = %+v, %v", recs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestForeignRecipientIsRefusedAtRCPT(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir, newHook(t).srv.URL)
	defer srv.Shutdown(context.Background())
	_, err := send(t, srv.SMTPAddr(), "a@example.org", []string{"victim@elsewhere.test"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("RCPT to a foreign domain: %v, want 550 5.7.1", err)
	}
}

// Deliveries pending when the pipeline stops resume when it starts again.
func TestPendingRetriesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	failing := true
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	refused := make(chan struct{}, 64) // one per attempt the receiver failed
	h.fail = func() bool {
		<-mu
		defer func() { mu <- struct{}{} }()
		if failing {
			select {
			case refused <- struct{}{}:
			default:
			}
		}
		return failing
	}
	srv := start(t, dir, h.srv.URL)
	if _, err := send(t, srv.SMTPAddr(), "a@example.org", []string{"support@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	// Stop once the delivery has failed, so it is pending a retry.
	select {
	case <-refused:
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery attempt reached the receiver")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-mu
	failing = false
	mu <- struct{}{}
	srv2 := start(t, dir, h.srv.URL)
	defer srv2.Shutdown(context.Background())
	select {
	case <-h.events:
	case <-time.After(20 * time.Second):
		t.Fatal("pending delivery did not resume after restart")
	}
}

var testLog io.Writer = io.Discard

func init() {
	if os.Getenv("LETTERBOX_TEST_LOG") != "" {
		testLog = os.Stderr
	}
}

// A real S3 server's bucket notifications drive the pipeline, and a
// duplicate notification does not deliver twice.
func TestS3NotificationsAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	srv := start(t, dir, h.srv.URL)
	defer srv.Shutdown(context.Background())
	if _, err := send(t, srv.SMTPAddr(), "a@example.org", []string{"support@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	ev := <-h.events
	first := <-h.ids
	// versitygw-shaped duplicate: "s3:" prefix and an empty glacier time.
	body := `{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","eventName":"s3:ObjectCreated:Put","eventTime":"2026-11-22T16:40:12Z",` +
		`"s3":{"bucket":{"name":"store"},"object":{"key":"` + ev.Data.RawKey + `","size":1}},"glacierEventData":{"restoreEventData":{"lifecycleRestorationExpiryTime":""}}}]}`
	for i := 0; i < 2; i++ {
		resp, err := http.Post("http://"+srv.HTTPAddr()+"/dev/s3-events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"queued":1}` {
			t.Fatalf("POST /dev/s3-events = %d %s", resp.StatusCode, b)
		}
	}
	select {
	case id := <-h.ids:
		t.Fatalf("duplicate notification delivered %s again (first: %s)", id, first)
	case <-time.After(time.Second):
	}
	resp, _ := http.Post("http://"+srv.HTTPAddr()+"/dev/s3-events", "application/json", strings.NewReader("nope"))
	if resp.StatusCode != 400 {
		t.Fatalf("garbage event: %d", resp.StatusCode)
	}
}

func TestMetricsCountDeliveries(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	srv := start(t, dir, h.srv.URL)
	defer srv.Shutdown(context.Background())
	if _, err := send(t, srv.SMTPAddr(), "a@example.org", []string{"support@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	<-h.events
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + srv.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `letterbox_delivery_attempts_total{kind="webhook",outcome="delivered"} 1`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack the delivery:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sink is a real SMTP server (go-smtp) that records what it receives.
type sink struct {
	got chan [2]string // MAIL FROM, data
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s    *sink
	from string
}

func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }
func (x *sinkSession) Rcpt(string, *smtp.RcptOptions) error        { return nil }
func (x *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	x.s.got <- [2]string{x.from, string(b)}
	return err
}
func (x *sinkSession) Reset()        {}
func (x *sinkSession) Logout() error { return nil }

func TestForwardThroughSmartHost(t *testing.T) {
	forwardThroughSmartHost(t, &forward.Config{SRSDomain: "fwd.example.test", SRSSecret: "0123456789abcdef-secret"}, "fwd.example.test")
}

// With no forwarding configuration, `letterbox dev` forwards all the same:
// SRS for the routes file's first domain, with a secret it generates into
// the store and keeps across restarts (issue 12 item 8).
func TestForwardWithNoSetup(t *testing.T) {
	dir := forwardThroughSmartHost(t, nil, "example.test")
	st, err := filestore.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := store.ReadAll(context.Background(), st, localserve.SRSSecretKey)
	if err != nil || len(key) != 64 {
		t.Fatalf("SRS secret in the store: %q, %v", key, err)
	}
}

// forwardThroughSmartHost runs a forward action to a real SMTP server with
// the given forwarding configuration, checks that the message went out
// byte for byte with an SRS sender in wantDomain, and returns the
// pipeline's directory.
func forwardThroughSmartHost(t *testing.T, fc *forward.Config, wantDomain string) string {
	t.Helper()
	sk := &sink{got: make(chan [2]string, 1)}
	srv := smtp.NewServer(sk)
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(`
domains: [example.test]
routes:
  - name: fwd
    match: {recipient: "alias@example.test"}
    actions:
      - forward: {to: ["owner@elsewhere.test"], smarthost: "`+l.Addr().String()+`", starttls: false, allow_private_network: true}
        retry: {attempts: 3, initial: 50ms, max: 100ms}
`), 0o644)
	ls, err := localserve.Start(context.Background(), localserve.Config{
		HTTPAddr: "127.0.0.1:0", StoreURL: "file://" + filepath.Join(dir, "store"), RoutesPath: routes,
		Gateway: smtpgw.Config{Addr: "127.0.0.1:0", Hostname: "mx.test"}, NoAuth: true,
		Forward: fc,
		Logger:  slog.New(slog.NewTextHandler(testLog, nil)), Out: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Shutdown(context.Background())
	if _, err := send(t, ls.SMTPAddr(), "alice@example.org", []string{"alias@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	var got [2]string
	select {
	case got = <-sk.got:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing forwarded")
	}
	if !strings.HasPrefix(got[0], "SRS0=") || !strings.HasSuffix(got[0], "@"+wantDomain) {
		t.Fatalf("MAIL FROM %q is not SRS-rewritten", got[0])
	}
	var raw []byte
	ls.Store().List(context.Background(), store.RawPrefix, "", func(o store.Object) bool {
		raw, _ = store.ReadAll(context.Background(), ls.Store(), o.Key)
		return false
	})
	if got[1] != string(raw) {
		t.Fatalf("forwarded bytes differ from the stored message:\n--- stored\n%s\n--- forwarded\n%s", raw, got[1])
	}
	ls.Shutdown(context.Background())
	return dir
}

// A crash after ingest wrote parsed/ but before it queued the jobs: the
// storage event is still in the (on-disk) raw queue, so the restarted
// pipeline delivers the message.
func TestCrashBetweenParseAndQueueLosesNothing(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	storeDir := filepath.Join(dir, "store")
	st, err := filestore.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "01JDQ7ZK3M8X9V2N4B6C8D0E1H"
	env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"support@example.test"}, ReceivedAt: time.Now().UTC()}
	obj, err := store.PutRaw(ctx, st, id, env, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	store.PutJSON(ctx, st, store.ParsedKey(id), &message.Message{ID: id})
	st.Close()
	q, err := localqueue.Open(ctx, filepath.Join(storeDir, ".queue-raw"), "letterbox-raw")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(events.S3Event{Records: []events.S3EventRecord{store.EventRecord("store", obj)}})
	q.Send(ctx, id, body, 0)
	q.Close()

	srv := start(t, dir, h.srv.URL)
	defer srv.Shutdown(context.Background())
	select {
	case ev := <-h.events:
		if ev.Data.ID != id {
			t.Fatalf("delivered %s", ev.Data.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the message was never delivered after the restart")
	}
}

// ARC sealing is opt-in per forward action, and `letterbox dev` refuses
// arc_seal when it has no ARC key (LETTERBOX_ARC_KEY), naming the file,
// line and field, instead of forwarding unsealed.
func TestARCSealNeedsAKey(t *testing.T) {
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(`domains: [example.test]
routes:
  - name: fwd
    match: {recipient: "alias@example.test"}
    actions:
      - forward: {to: ["owner@elsewhere.test"], arc_seal: true}
`), 0o644)
	cfg := localserve.Config{
		HTTPAddr: "127.0.0.1:0", StoreURL: "file://" + filepath.Join(dir, "store"), RoutesPath: routes,
		Gateway: smtpgw.Config{Addr: "127.0.0.1:0", Hostname: "mx.test"}, NoAuth: true,
		Logger: slog.New(slog.NewTextHandler(testLog, nil)), Out: io.Discard,
	}
	want := routes + ":6: routes[0].actions[0].forward.arc_seal: no ARC key is configured"
	if _, err := localserve.Start(context.Background(), cfg); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Start without a key = %v, want %q", err, want)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Forward = &forward.Config{SRSDomain: "fwd.example.test", SRSSecret: "0123456789abcdef-secret",
		ARC: &forward.ARCKey{Signer: priv, Selector: "arc", Domain: "fwd.example.test"}}
	srv, err := localserve.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start with a key: %v", err)
	}
	srv.Shutdown(context.Background())
}
