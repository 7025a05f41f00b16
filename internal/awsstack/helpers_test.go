//go:build awsstack

package awsstack

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// The artefacts: `make test-aws` builds them with make build's recipes
// for the host's architecture and names the directory here.
const binEnv = "LETTERBOX_AWS_BIN"

func artefacts(tb testing.TB) (bin, emulator string) {
	tb.Helper()
	bin = os.Getenv(binEnv)
	if bin == "" {
		tb.Fatalf("%s is not set: run make test-aws, which builds the artefacts", binEnv)
	}
	for _, p := range []string{"IngestFunction/bootstrap", "DeliverFunction/bootstrap", "LinkFunction/bootstrap", "smtpgw"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			tb.Fatalf("%s: %v (make test-aws builds it)", p, err)
		}
	}
	emulator = testenv.Require(tb, "aws-lambda-rie", "make tools (or: go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d)")
	return bin, emulator
}

// templatePath is the repository's template.yaml.
func templatePath(tb testing.TB) string {
	root, err := testenv.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(root, "template.yaml")
}

// endpoint is a thin local stand-in for an AWS API that records requests
// and answers every one with the same success.
type endpoint struct {
	*httptest.Server
	mu   sync.Mutex
	reqs [][]byte
	got  chan struct{}
}

func newEndpoint(tb testing.TB, status int, contentType, answer string) *endpoint {
	e := &endpoint{got: make(chan struct{}, 1000)}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.reqs = append(e.reqs, body)
		e.mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, answer)
		e.got <- struct{}{}
	}))
	tb.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.reqs...)
}

// Lambda's asynchronous Invoke, SNS's Publish (Query protocol) and
// EventBridge's PutEvents, answered as the services do.
func lambdaEndpoint(tb testing.TB) *endpoint {
	return newEndpoint(tb, http.StatusAccepted, "application/json", "")
}

func snsEndpoint(tb testing.TB) *endpoint {
	return newEndpoint(tb, http.StatusOK, "text/xml", `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>94f20ce6-13c5-43a0-9a9e-ca52d816e90b</MessageId></PublishResult><ResponseMetadata><RequestId>f187a3c1-376f-11df-8963-01868b7c937a</RequestId></ResponseMetadata></PublishResponse>`)
}

func eventsEndpoint(tb testing.TB) *endpoint {
	return newEndpoint(tb, http.StatusOK, "application/x-amz-json-1.1", `{"FailedEntryCount":0,"Entries":[{"EventId":"11710aed-b79e-4468-a20b-bb3c0c3b4860"}]}`)
}

// sink is a go-smtp server on loopback that accepts everything: the
// forward action's destination.
type sink struct {
	Addr string
	mu   sync.Mutex
	msgs [][]byte
	rcpt []string
}

func startSink(tb testing.TB) *sink {
	s := &sink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	srv.MaxMessageBytes = 200 << 20
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.msgs...)
}

type sinkSession struct {
	s  *sink
	to []string
}

func (x *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, b)
	x.s.rcpt = append(x.s.rcpt, x.to...)
	x.s.mu.Unlock()
	return nil
}
func (x *sinkSession) Reset()        { x.to = nil }
func (x *sinkSession) Logout() error { return nil }

// waitFor polls cond until it holds or the deadline passes: the stack's
// stages run in other processes, so there is no event to wait on but the
// state they leave.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLog collects the stack's output and shows it when the test fails.
type testLog struct {
	testenv.Buffer
}

func newTestLog(t *testing.T, name string) *testLog {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			out := l.String()
			if len(out) > 200<<10 {
				out = "…" + out[len(out)-200<<10:]
			}
			t.Logf("%s output:\n%s", name, out)
		}
		if dir := os.Getenv("LETTERBOX_AWS_ARTIFACTS"); dir != "" {
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log"), []byte(l.String()), 0o644)
		}
	})
	return l
}

var getenv = os.Getenv

// newDNS starts a DNS server with no records for the functions' and the
// gateway's lookups (the template's DnsResolver): answers come at once.
func newDNS(t *testing.T) string {
	return testenv.StartDNS(t).Addr
}

// writeArtifact keeps a result under make test-aws's artifacts directory.
func writeArtifact(name, text string) {
	if dir := os.Getenv("LETTERBOX_AWS_ARTIFACTS"); dir != "" {
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
}
