package smtpgw

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// testRoutes: example.test accepts every recipient; other.example is a
// domain of ours with no route (550 5.1.1); spammer@bad.test is refused by
// a reject rule.
const testRoutes = `version: 1
domains: [example.test, other.example]
routes:
  - name: blocked-sender
    match: {sender: "spammer@bad.test"}
    reject: {code: 550, enhanced_code: "5.7.1", message: "Sender blocked by policy"}
  - name: everyone
    match: {recipient: "*@example.test"}
    actions:
      - store: true
`

// safety bounds every read of a test client, so a broken gateway fails a
// test instead of hanging it. It is not an assertion about speed.
const safety = 20 * time.Second

type harness struct {
	t      testing.TB
	g      *Gateway
	st     store.Store
	dir    string
	addr   string
	reg    *prometheus.Registry
	logs   *testenv.Buffer
	cancel context.CancelFunc
	served chan error
}

// startGateway runs a gateway on 127.0.0.1:0 over a real file store in a
// temporary directory.
func startGateway(t testing.TB, cfg Config) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := filestore.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return startGatewayWith(t, cfg, st, testRoutes)
}

func startGatewayWith(t testing.TB, cfg Config, st store.Store, routes string) *harness {
	t.Helper()
	rc, err := routing.Parse("routes.yaml", []byte(routes))
	if err != nil {
		t.Fatal(err)
	}
	return startGatewayLive(t, cfg, st, routing.Static(rc))
}

func startGatewayLive(t testing.TB, cfg Config, st store.Store, routes *routing.Live) *harness {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	h := &harness{t: t, st: st, dir: t.TempDir(), reg: prometheus.NewRegistry(), logs: &testenv.Buffer{}}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, err := New(cfg, st, routes, log, h.reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	h.g, h.addr = g, g.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.served = cancel, make(chan error, 1)
	go func() { h.served <- g.ListenAndServe(ctx) }()
	t.Cleanup(func() {
		cancel()
		ctx, c := context.WithTimeout(context.Background(), safety)
		defer c()
		_ = g.Shutdown(ctx)
		<-h.served
		if t.Failed() {
			t.Logf("gateway log:\n%s", h.logs.String())
		}
	})
	return h
}

// with returns the harness for use in a subtest.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// rawKeys lists the raw messages in the store.
func (h *harness) rawKeys() []string {
	h.t.Helper()
	var keys []string
	if err := h.st.List(context.Background(), store.RawPrefix, "", func(o store.Object) bool {
		keys = append(keys, o.Key)
		return true
	}); err != nil {
		h.t.Fatal(err)
	}
	return keys
}

// stored reads a stored message and its envelope.
func (h *harness) stored(id string) ([]byte, *message.Envelope) {
	h.t.Helper()
	ctx := context.Background()
	rc, obj, err := h.st.Get(ctx, store.RawKey(id))
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := store.Envelope(ctx, h.st, obj)
	if err != nil || env == nil {
		h.t.Fatalf("envelope of %s: %v %v", id, env, err)
	}
	return body, env
}

// logLines returns the gateway's JSON log lines.
func (h *harness) logLines() []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(h.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			h.t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// waitLog waits until a log line with msg and the given key/values appears
// (log lines are written as sessions end, after the client saw the reply).
func (h *harness) waitLog(msg string, kv ...any) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(safety)
	for {
		for _, m := range h.logLines() {
			if m["msg"] != msg {
				continue
			}
			ok := true
			for i := 0; i+1 < len(kv); i += 2 {
				if fmt.Sprint(m[kv[i].(string)]) != fmt.Sprint(kv[i+1]) {
					ok = false
				}
			}
			if ok {
				return m
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no log line %q with %v", msg, kv)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric reads a counter, gauge or histogram count from the gateway's
// registry, for the series with the given label pairs.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// rawClient speaks SMTP byte by byte, for tests that need exact control of
// what goes on the wire.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

// dialRaw connects and reads the greeting.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c := dialRawNoGreeting(t, addr)
	c.expect(220, "")
	return c
}

func dialRawNoGreeting(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(safety))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one (possibly multi-line) reply.
func (c *rawClient) reply() (code int, text string, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(safety))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, line, fmt.Errorf("short reply line %q", line)
		}
		n, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("bad reply line %q", line)
		}
		lines = append(lines, line)
		if len(line) == 3 || line[3] == ' ' {
			return n, strings.Join(lines, "\n"), nil
		}
	}
}

// expect reads a reply and checks its code and, when not empty, that its
// last line starts with "code enhanced".
func (c *rawClient) expect(code int, enhanced string) string {
	c.t.Helper()
	got, text, err := c.reply()
	if err != nil {
		c.t.Fatalf("want %d %s, got error %v (%q)", code, enhanced, err, text)
	}
	if got != code {
		c.t.Fatalf("want %d %s, got %q", code, enhanced, text)
	}
	if enhanced != "" {
		last := text[strings.LastIndexByte(text, '\n')+1:]
		if !strings.HasPrefix(last, fmt.Sprintf("%d %s ", code, enhanced)) {
			c.t.Fatalf("want %d %s, got %q", code, enhanced, text)
		}
	}
	return text
}

// cmd sends a command line and checks the reply.
func (c *rawClient) cmd(line string, code int, enhanced string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code, enhanced)
}

// expectClosed checks that the server closed the connection.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(safety))
	b, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("connection still open; read %q", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", safety)
	}
}

// hello sends EHLO and returns the extension lines.
func (c *rawClient) hello(name string) string {
	c.t.Helper()
	return c.cmd("EHLO "+name, 250, "")
}

// envelope sends MAIL and RCPT commands that must succeed.
func (c *rawClient) envelope(from string, to ...string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250, "2.0.0")
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", 250, "2.0.0")
	}
}

// queuedID extracts the message id from "250 2.0.0 OK: queued as <id>".
func queuedID(t testing.TB, reply string) string {
	t.Helper()
	_, id, ok := strings.Cut(reply, "OK: queued as ")
	if !ok || len(id) != 26 {
		t.Fatalf("reply %q does not name a message id", reply)
	}
	return id
}

// testMessage returns a small RFC 5322 message with CRLF line endings.
func testMessage(subject string) string {
	return "From: Sender <sender@remote.test>\r\n" +
		"To: rcpt@example.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + subject + "@remote.test>\r\n" +
		"\r\n" +
		"Hello.\r\n" +
		"..A line that starts with a dot.\r\n"
}

// peerName says STARTTLS at addr and returns the common name of the
// certificate the gateway presents.
func peerName(t testing.TB, addr string) string {
	return testenv.PeerName(t, addr)
}

// writeCert writes a self-signed certificate for name and returns the
// certificate and key paths.
func writeCert(t testing.TB, dir, name string) (string, string) {
	return testenv.WriteCert(t, dir, name)
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
