package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "letterbox-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "letterbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the CLI and returns its stdout, stderr and exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func writeRoutes(t *testing.T, dir, url string) string {
	p := filepath.Join(dir, "routes.yaml")
	os.WriteFile(p, []byte(`
domains: [example.test]
routes:
  - name: blocked
    match: {sender: "*@spam.test"}
    reject: {code: 550, enhanced_code: "5.7.1", message: "no spam"}
  - name: support
    match: {recipient: "support@example.test"}
    actions:
      - webhook: {url: "`+url+`/support", secret: "`+secret+`"}
    stop: true
  - name: teams
    match: {recipient: "regex:^(?P<team>[a-z]+)-team@example\\.test$"}
    actions:
      - webhook: {url: "`+url+`/teams/${team}", secret: "`+secret+`"}
`), 0o644)
	return p
}

func writeMessage(t *testing.T, dir string) string {
	p := filepath.Join(dir, "m.eml")
	os.WriteFile(p, []byte("From: Alice <alice@example.org>\r\nTo: support@example.test\r\nSubject: hi\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"), 0o644)
	return p
}

func TestRoutesCheck(t *testing.T) {
	dir := t.TempDir()
	out, _, code := run(t, "routes", "check", writeRoutes(t, dir, "https://h.test"))
	if code != 0 || !strings.Contains(out, "OK: 1 domains, 3 routes") {
		t.Fatalf("check good file: %d %q", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("domains: [a.test]\nroutes:\n  - name: r\n    match: {recpient: x}\n    actions: [{store: true}]\n"), 0o644)
	_, stderr, code := run(t, "routes", "check", bad)
	if code != 1 || !strings.Contains(stderr, bad+":4: routes[0].match.recpient: unknown field") {
		t.Fatalf("check bad file: %d %q", code, stderr)
	}
	if _, _, code := run(t, "routes"); code != 2 {
		t.Fatalf("no subcommand: exit %d, want 2", code)
	}
}

// routes check validates every field of the policy: key, naming the file,
// line and field.
func TestRoutesCheckPolicy(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	os.WriteFile(good, []byte(`domains: [a.test]
routes: []
policy:
  spam: {reject_at: 15, quarantine_at: 6}
  virus: {infected: reject}
  scanners: {fail: open, timeout: 30s}
  clients:
    allow: [192.0.2.10]
    deny: [192.0.2.0/24, "2001:db8::/32"]
    rate: {per_ip: 100, per_24: 1000, per_64: 500, window: 1h}
  hook: {url: "https://policy.test/smtp", secret_env: POLICY_HOOK_SECRET, timeout: 3s, fail: closed}
`), 0o644)
	out, stderr, code := run(t, "routes", "check", good)
	if code != 0 || !strings.Contains(out, "OK: 1 domains, 0 routes; policy: spam, virus, scanners, clients, hook") {
		t.Fatalf("check good policy: %d %q %q", code, out, stderr)
	}
	for _, tt := range []struct{ policy, want string }{
		{"  spam: {reject_at: 5, quarantine_at: 9}\n", ":4: policy.spam.quarantine_at: 9 must be below reject_at (5)"},
		{"  spam: {reject_at: lots}\n", ":4: policy.spam.reject_at: \"lots\" must be a number"},
		{"  virus: {infected: drop}\n", ":4: policy.virus.infected: \"drop\": use reject, quarantine or tag"},
		{"  scanners: {fail: sometimes}\n", ":4: policy.scanners.fail: \"sometimes\""},
		{"  clients: {deny: [10.1.2.3/8]}\n", ":4: policy.clients.deny[0]: \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?"},
		{"  clients: {allow: [not-an-ip]}\n", ":4: policy.clients.allow[0]: \"not-an-ip\" is not an address or CIDR"},
		{"  clients: {rate: {per_ip: 5}}\n", ":4: policy.clients.rate.window: required with a rate"},
		{"  clients: {rate: {per_64: -3, window: 1h}}\n", ":4: policy.clients.rate.per_64: -3 must be 0 (no limit) or more"},
		{"  hook: {url: \"gopher://h.test\", secret_env: S}\n", ":4: policy.hook.url: \"gopher://h.test\" must be an absolute http or https URL"},
		{"  hook: {url: \"https://h.test\"}\n", ":4: policy.hook.secret_env: required"},
		{"  hook: {url: \"https://h.test\", secret: \"whsec_%%%\"}\n", ":4: policy.hook.secret: must be \"whsec_\" followed by base64"},
		{"  hook: {url: \"https://h.test\", secret_env: S, timeout: 2m}\n", ":4: policy.hook.timeout: 2m0s is longer than 30s"},
		{"  hook: {url: \"https://h.test\", secret_env: S, fail: shrug}\n", ":4: policy.hook.fail: \"shrug\""},
	} {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("domains: [a.test]\nroutes: []\npolicy:\n"+tt.policy), 0o644)
		_, stderr, code := run(t, "routes", "check", bad)
		if code != 1 || !strings.Contains(stderr, bad+tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", strings.TrimSpace(tt.policy), code, stderr, bad+tt.want)
		}
	}
}

func TestRoutesTest(t *testing.T) {
	dir := t.TempDir()
	routes, msg := writeRoutes(t, dir, "https://h.test"), writeMessage(t, dir)
	out, _, code := run(t, "routes", "test", routes, msg, "--rcpt", "support@example.test", "--rcpt", "ops-team@example.test", "--rcpt", "x@elsewhere.test")
	for _, want := range []string{
		"RCPT TO:<x@elsewhere.test> → refused: 550 5.7.1 Relaying denied",
		"route support (stop), for support@example.test",
		"POST https://h.test/support (json, signed with 1 secret(s))",
		"route teams, for ops-team@example.test",
		"POST https://h.test/teams/ops",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Reject rules and expectations, for routes kept under test in CI.
	out, _, _ = run(t, "routes", "test", routes, msg, "--mail-from", "bot@spam.test", "--json")
	var rep testReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Recipients[0].Accepted || rep.Recipients[0].Reply != "550 5.7.1 no spam" || len(rep.Routes) != 0 {
		t.Fatalf("json report: %v %+v", err, rep)
	}
	if _, _, code := run(t, "routes", "test", routes, msg, "--expect", "support"); code != 0 {
		t.Fatalf("--expect support: exit %d", code)
	}
	_, stderr, code := run(t, "routes", "test", routes, msg, "--expect", "teams")
	if code != 1 || !strings.Contains(stderr, "expected routes teams, got support") {
		t.Fatalf("--expect teams: exit %d %q", code, stderr)
	}
}

func TestExampleRoutesTests(t *testing.T) {
	out, err := exec.Command("sh", "../../examples/routes-tests/run.sh", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("examples/routes-tests/run.sh: %v\n%s", err, out)
	}
}

func TestDeliveriesAndReplay(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	st, err := filestore.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "01JDQ7ZK3M8X9V2N4B6C8D0E1F"
	env := message.Envelope{MailFrom: "alice@example.org", RcptTo: []string{"support@example.test"}, ReceivedAt: time.Now().UTC()}
	raw, _ := os.ReadFile(writeMessage(t, dir))
	if _, err := store.PutRaw(ctx, st, id, env, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	jl := delivery.Journal{Store: st}
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	jl.Put(ctx, &delivery.Record{Job: delivery.Job{ID: id + ".support.0", MessageID: id, Route: "support", Kind: "webhook"}, Status: delivery.StatusDelivered,
		Attempts: []delivery.Attempt{{At: at, Number: 1, Status: 503, Outcome: "retry", Error: "webhook: receiver answered 503"}, {At: at.Add(time.Minute), Number: 2, Status: 204, Outcome: "delivered"}}})
	st.Close()

	out, _, code := run(t, "deliveries", "--store", "file://"+storeDir, id)
	if code != 0 || !strings.Contains(out, "status delivered, 2 attempt(s)") || !strings.Contains(out, "receiver answered 503") {
		t.Fatalf("deliveries: %d\n%s", code, out)
	}
	if _, stderr, code := run(t, "deliveries", "--store", "file://"+storeDir, "01NOPE"); code != 1 || !strings.Contains(stderr, "no delivery records for 01NOPE") {
		t.Fatalf("deliveries of unknown id: %d %q", code, stderr)
	}

	got := make(chan string, 4)
	v, _ := webhook.NewVerifier(secret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wid, _, err := v.ReadEvent(r)
		if err != nil {
			w.WriteHeader(401)
			return
		}
		got <- wid
	}))
	defer srv.Close()
	routes := writeRoutes(t, dir, srv.URL)
	out, _, code = run(t, "replay", "--store", "file://"+storeDir, "--routes", routes, "--no-auth", "--dry-run", id)
	if code != 0 || !strings.Contains(out, "would queue job "+id+".support.0.replay-") {
		t.Fatalf("replay --dry-run: %d\n%s", code, out)
	}
	out, _, code = run(t, "replay", "--store", "file://"+storeDir, "--routes", routes, "--no-auth", "--since", "87600h")
	if code != 0 || !strings.Contains(out, "queued job "+id+".support.0.replay-") {
		t.Fatalf("replay --since: %d\n%s", code, out)
	}
	// The queued replay is delivered by the dev pipeline on the same store.
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	dev := exec.Command(bin, "dev", "--store", "file://"+storeDir, "--routes", routes, "--smtp", smtpAddr, "--http", httpAddr, "--no-auth")
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { dev.Process.Signal(os.Interrupt); dev.Wait() }()
	select {
	case wid := <-got:
		if !strings.HasPrefix(wid, id+".support.0.replay-") {
			t.Fatalf("webhook-id %s", wid)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("replayed job not delivered")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// `letterbox parse --store` prints the JSON the pipeline stored.
func TestParseStoredMessageMatchesPipeline(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "01JDQ7ZK3M8X9V2N4B6C8D0E1G"
	env := message.Envelope{MailFrom: "alice@example.org", RcptTo: []string{"support+urgent@example.test"}, ClientIP: "192.0.2.1", HELO: "mx.example.org", ReceivedAt: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	raw := "From: Alice <alice@example.org>\r\nTo: support+urgent@example.test\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=a.csv\r\n\r\na,b\r\n--b--\r\n"
	if _, err := store.PutRaw(ctx, st, id, env, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	h := &ingest.Handler{Store: st, KeepParsed: true}
	if _, err := h.Parse(ctx, store.RawKey(id)); err != nil {
		t.Fatal(err)
	}
	stored, _ := store.ReadAll(ctx, st, store.ParsedKey(id))
	st.Close()
	out, stderr, code := run(t, "parse", "--store", "file://"+dir, "--no-auth", id)
	if code != 0 {
		t.Fatalf("parse --store: %d %s", code, stderr)
	}
	var a, b any
	json.Unmarshal(stored, &a)
	json.Unmarshal([]byte(out), &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("parse --store differs from the pipeline's parsed JSON:\npipeline: %s\nparse:    %s", stored, out)
	}
}

// A matching route with drop: true ends routing for its recipients, as
// docs/routes.md says: a later catch-all does not run for them, while a
// recipient the drop route does not match still reaches it (issue 12 item 7).
func TestRoutesTestDropEndsRouting(t *testing.T) {
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(`
domains: [example.test]
routes:
  - name: spam
    match: {recipient: "spam@example.test"}
    actions: [{drop: true}]
  - name: everything
    catch_all: true
    actions: [{store: true}]
`), 0o644)
	msg := writeMessage(t, dir)
	out, stderr, code := run(t, "routes", "test", routes, msg, "--rcpt", "spam@example.test", "--expect", "spam")
	if code != 0 {
		t.Fatalf("drop route then catch-all: exit %d %q\n%s", code, stderr, out)
	}
	if !strings.Contains(out, "route spam (stop), for spam@example.test") {
		t.Errorf("the drop route is not shown as ending routing:\n%s", out)
	}
	out, stderr, code = run(t, "routes", "test", routes, msg, "--rcpt", "spam@example.test", "--rcpt", "support@example.test", "--expect", "spam,everything")
	if code != 0 || !strings.Contains(out, "route everything, for support@example.test\n") {
		t.Fatalf("a recipient the drop route does not match: exit %d %q\n%s", code, stderr, out)
	}
}
