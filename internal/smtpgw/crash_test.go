package smtpgw

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// buildGateway builds the smtpgw binary into dir.
func buildGateway(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "smtpgw")
	out, err := exec.Command("go", "build", "-o", bin, "../../smtpgw/cmd/smtpgw").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// gatewayProc is the smtpgw binary running over a store directory.
type gatewayProc struct {
	cmd       *exec.Cmd
	smtp, web string
	log       *testenv.Buffer
	exited    chan struct{}
}

func startProc(t *testing.T, bin, storeDir, routes string, extra ...string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{smtp: freeAddr(t), web: freeAddr(t), log: &testenv.Buffer{}, exited: make(chan struct{})}
	args := append([]string{"--smtp", p.smtp, "--http", p.web, "--store", "file://" + storeDir, "--routes", routes, "--hostname", "mx.test"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("smtpgw output:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(safety)
	for {
		resp, err := http.Get("http://" + p.web + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("smtpgw exited:\n%s", p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtpgw not ready: %v\n%s", err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// digestMessage makes a message whose X-Digest header is the SHA-256 of
// its body, so any stored copy can be checked for completeness.
func digestMessage(n int, size int) []byte {
	var body bytes.Buffer
	r := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	for body.Len() < size {
		for range 76 {
			body.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[r.IntN(36)])
		}
		body.WriteString("\r\n")
	}
	sum := sha256.Sum256(body.Bytes())
	return append([]byte(fmt.Sprintf("X-Digest: %s\r\nSubject: message %d\r\n\r\n", hex.EncodeToString(sum[:]), n)), body.Bytes()...)
}

var digestRE = regexp.MustCompile(`(?m)^X-Digest: ([0-9a-f]{64})\r\n`)

// checkComplete checks that a stored message is a whole message: our
// trace field followed by a message whose body matches its digest.
func checkComplete(t *testing.T, raw []byte) bool {
	t.Helper()
	m := digestRE.FindSubmatchIndex(raw)
	if m == nil || !bytes.HasPrefix(raw, []byte("Received: ")) {
		return false
	}
	i := bytes.Index(raw[m[1]:], []byte("\r\n\r\n"))
	if i < 0 {
		return false
	}
	sum := sha256.Sum256(raw[m[1]+i+4:])
	return hex.EncodeToString(sum[:]) == string(raw[m[2]:m[3]])
}

// TestCrash sends a stream of messages from several clients, kills the
// gateway with SIGKILL in the middle, and checks that every message that
// got 250 is stored complete with its envelope, that nothing partial is
// visible, and that the gateway serves again after a restart.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the gateway binary; -short")
	}
	dir := t.TempDir()
	bin := buildGateway(t, dir)
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte(testRoutes), 0o600); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(dir, "store")
	p := startProc(t, bin, storeDir, routes)

	var mu sync.Mutex
	acked := map[string]int{} // message id → message number
	killAt := 60
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			close(killed)
		})
	}
	half := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				n := w*100000 + i
				// Mostly small messages, some of up to 2 MiB, so the kill
				// finds transactions at every stage.
				size := 2048
				if i%3 == 0 {
					size = 64<<10 + (n*7919)%(2<<20)
				}
				id, err := sendOne(p.smtp, digestMessage(n, size))
				if err != nil {
					continue
				}
				mu.Lock()
				acked[id] = n
				if len(acked) >= killAt {
					<-half
					kill()
				}
				mu.Unlock()
			}
		}()
	}
	// One client is always in the middle of a large message's data when
	// the gateway dies.
	inFlight := digestMessage(-2, 8<<20)
	interrupted := make(chan error, 1)
	go func() {
		c, err := smtp.Dial(p.smtp)
		if err == nil {
			defer c.Close()
			err = c.Mail("s@remote.test", nil)
		}
		if err == nil {
			err = c.Rcpt("a@example.test", nil)
		}
		var w io.WriteCloser
		if err == nil {
			w, err = c.Data()
		}
		if err == nil {
			_, err = w.Write(inFlight[:len(inFlight)/2])
		}
		close(half)
		if err != nil {
			interrupted <- fmt.Errorf("before the kill: %w", err)
			return
		}
		<-killed
		_, err = w.Write(inFlight[len(inFlight)/2:])
		if err == nil {
			err = w.Close()
		}
		interrupted <- err
	}()
	select {
	case <-killed:
	case <-time.After(5 * safety):
		kill()
		t.Error("gateway did not acknowledge enough messages before the safety bound")
	}
	wg.Wait()
	if err := <-interrupted; err == nil || strings.Contains(err.Error(), "before the kill") {
		t.Errorf("the in-flight message: %v; want it cut off by the kill", err)
	}
	<-p.exited
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("gateway exited with %v, not by SIGKILL", p.cmd.ProcessState)
	}
	t.Logf("%d messages acknowledged before SIGKILL", len(acked))

	// Open the store as the restarted gateway will.
	st, err := filestore.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	visible := map[string]bool{}
	if err := st.List(ctx, store.RawPrefix, "", func(o store.Object) bool {
		visible[o.Key] = true
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for key := range visible {
		rc, obj, err := st.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("Subject: message -2\r\n")) {
			t.Errorf("%s: the message cut off by the kill is visible", key)
		}
		if !checkComplete(t, raw) {
			t.Errorf("%s is visible but not complete (%d bytes)", key, len(raw))
		}
		env, err := store.Envelope(ctx, st, obj)
		if err != nil || env == nil || env.MailFrom != "s@remote.test" || len(env.RcptTo) != 1 {
			t.Errorf("%s: envelope %+v, %v", key, env, err)
		}
	}
	for id := range acked {
		if !visible[store.RawKey(id)] {
			t.Errorf("message %s got 250 but is not in the store", id)
		}
	}
	t.Logf("%d messages visible after the crash (%d acknowledged; the others were complete but unacknowledged)", len(visible), len(acked))
	st.Close()

	p2 := startProc(t, bin, storeDir, routes)
	if _, err := sendOne(p2.smtp, digestMessage(-1, 100)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// sendOne sends one message and returns the id from the 250 reply.
func sendOne(addr string, msg []byte) (string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Mail("s@remote.test", nil); err != nil {
		return "", err
	}
	if err := c.Rcpt("a@example.test", nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_, id, ok := strings.Cut(resp.StatusText, "OK: queued as ")
	if !ok {
		return "", fmt.Errorf("reply %q", resp.StatusText)
	}
	_ = c.Quit()
	return id, nil
}

// TestBinarySignals runs the gateway binary with TLS: SIGHUP serves a new
// certificate, SIGTERM stops it cleanly.
func TestBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway binary; -short")
	}
	dir := t.TempDir()
	bin := buildGateway(t, dir)
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte(testRoutes), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := writeCert(t, dir, "before.test")
	p := startProc(t, bin, filepath.Join(dir, "store"), routes, "--tls-cert", cert, "--tls-key", key)
	cn := func() string { return peerName(t, p.smtp) }
	if got := cn(); got != "before.test" {
		t.Fatalf("certificate %q", got)
	}
	writeCert(t, dir, "after.test")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(safety)
	for !strings.Contains(p.log.String(), "CN=after.test") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", p.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := cn(); got != "after.test" {
		t.Errorf("after SIGHUP: certificate %q", got)
	}
	if _, err := sendOne(p.smtp, digestMessage(1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if !p.cmd.ProcessState.Success() {
		t.Errorf("exit after SIGTERM: %v", p.cmd.ProcessState)
	}
	if !strings.Contains(p.log.String(), `"msg":"SMTP stopped"`) {
		t.Errorf("no clean stop logged:\n%s", p.log.String())
	}
}
