package testenv

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How to install the scanners when they are missing.
const (
	RspamdInstall = "apt-get install rspamd (or .ci/install-tools)"
	ClamdInstall  = "apt-get install clamav-daemon (or .ci/install-tools)"
)

// GTUBE is rspamd's (and SpamAssassin's) test pattern: a message holding
// it is scored as spam with action "reject".
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// EICAR is the antivirus test file (eicar.org); StartClamd's signature
// database names it Eicar-Test-Signature.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// TestVirus is a second pattern StartClamd's database knows, as
// Letterbox-Test-Signature, so tests do not depend on EICAR alone.
const TestVirus = "LETTERBOX-TEST-VIRUS-7f3a1c"

// Daemon is a scanner process a test started.
type Daemon struct {
	// Addr is where it listens: HOST:PORT.
	Addr string
	// Dir holds its configuration and logs.
	Dir string

	tb   testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *Buffer
	done chan struct{}
}

// Output returns what the process wrote.
func (d *Daemon) Output() string { return d.out.String() }

// Stop ends the process (SIGTERM, then SIGKILL) and waits for it; the
// address then refuses connections. It is safe to call twice.
func (d *Daemon) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	d.cmd = nil
}

func (d *Daemon) start(name string, args ...string) {
	d.tb.Helper()
	d.out = &Buffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.tb.Fatalf("%s: %v", name, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.done) }()
	d.tb.Cleanup(func() {
		d.Stop()
		if d.tb.Failed() {
			d.tb.Logf("%s output:\n%s", name, d.out.String())
		}
	})
}

func (d *Daemon) wait(what string, timeout time.Duration, ready func() error) {
	d.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return
		}
		select {
		case <-d.done:
			d.tb.Fatalf("%s exited before it was ready: %v\n%s", what, last, d.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.tb.Fatalf("%s not ready after %v: %v\n%s", what, timeout, last, d.out.String())
		}
	}
}

// RspamdOptions configures StartRspamd. The zero value is ready to use.
type RspamdOptions struct {
	// MaxMessage is rspamd's max_message in bytes (rspamd's default, 50
	// MiB, when zero).
	MaxMessage int64
}

// StartRspamd runs rspamd's normal worker in the foreground on a free
// loopback port with its own configuration (Debian's, with logging to
// the console and no controller or proxy), waits until /checkv2 answers
// (about 10 s) and stops it when the test ends. Network checks (DNS
// blocklists, fuzzy hashes) fail fast here and add nothing to scores.
func StartRspamd(tb testing.TB, opts RspamdOptions) *Daemon {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts rspamd; skipped in -short mode")
	}
	bin := Require(tb, "rspamd", RspamdInstall)
	if _, err := os.Stat("/etc/rspamd/common.conf"); err != nil {
		Missing(tb, "rspamd's configuration /etc/rspamd/common.conf is missing; "+RspamdInstall)
	}
	dir := tb.TempDir()
	addr, err := freeLoopbackAddr()
	if err != nil {
		tb.Fatal(err)
	}
	worker := ""
	if opts.MaxMessage > 0 {
		worker = fmt.Sprintf("    max_message = %d;\n", opts.MaxMessage)
	}
	conf := `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns { timeout = 0.2s; retransmits = 1; }
}
logging { type = "console"; level = "error"; }
worker "normal" {
    bind_socket = "` + addr + `";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
` + worker + `}
`
	file := filepath.Join(dir, "rspamd.conf")
	for _, sub := range []string{"run", "db", "log", "local"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	d := &Daemon{Addr: addr, Dir: dir, tb: tb}
	args := []string{"-f", "-c", file,
		"--var=RUNDIR=" + filepath.Join(dir, "run"), "--var=DBDIR=" + filepath.Join(dir, "db"),
		"--var=LOGDIR=" + filepath.Join(dir, "log"), "--var=LOCAL_CONFDIR=" + filepath.Join(dir, "local")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root", "-g", "root")
	}
	d.start(bin, args...)
	client := &http.Client{Timeout: 2 * time.Second}
	d.wait("rspamd", 90*time.Second, func() error {
		resp, err := client.Post("http://"+addr+"/checkv2", "message/rfc822", strings.NewReader("Subject: ping\r\n\r\nping\r\n"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/checkv2: %s", resp.Status)
		}
		return nil
	})
	return d
}

// URL is the rspamd worker's base URL.
func (d *Daemon) URL() string { return "http://" + d.Addr }

// ClamdOptions configures StartClamd. The zero value is ready to use.
type ClamdOptions struct {
	// StreamMaxLength is clamd's INSTREAM limit in bytes (clamd's default,
	// 25 MiB, when zero).
	StreamMaxLength int64
	// Unix makes clamd listen on a unix socket (Daemon.Addr is its path)
	// instead of TCP.
	Unix bool
}

// StartClamd runs clamd in the foreground on a free loopback port with a
// signature database the test writes (EICAR and TestVirus as .ndb body
// signatures, which match inside decoded MIME parts: the signature mirror
// is not reachable from here), waits until PING answers PONG (about a
// second) and stops it when the test ends.
func StartClamd(tb testing.TB, opts ClamdOptions) *Daemon {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts clamd; skipped in -short mode")
	}
	bin := Require(tb, "clamd", ClamdInstall)
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		tb.Fatal(err)
	}
	ndb := "Eicar-Test-Signature:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n" +
		"Letterbox-Test-Signature:0:*:" + hex.EncodeToString([]byte(TestVirus)) + "\n"
	if err := os.WriteFile(filepath.Join(db, "letterbox-test.ndb"), []byte(ndb), 0o644); err != nil {
		tb.Fatal(err)
	}
	var listen, network, addr string
	if opts.Unix {
		addr = filepath.Join(dir, "clamd.sock")
		network, listen = "unix", "LocalSocket "+addr+"\n"
	} else {
		a, err := freeLoopbackAddr()
		if err != nil {
			tb.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(a)
		addr, network, listen = a, "tcp", "TCPSocket "+port+"\nTCPAddr "+host+"\n"
	}
	conf := "Foreground yes\n" + listen +
		"DatabaseDirectory " + db + "\n" +
		"LogSyslog no\nLogFile " + filepath.Join(dir, "clamd.log") + "\n" +
		"PidFile " + filepath.Join(dir, "clamd.pid") + "\n"
	if opts.StreamMaxLength > 0 {
		conf += fmt.Sprintf("StreamMaxLength %d\nMaxScanSize %d\nMaxFileSize %d\n", opts.StreamMaxLength, 2*opts.StreamMaxLength, opts.StreamMaxLength)
	}
	if os.Geteuid() == 0 {
		conf += "User root\n"
	}
	file := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	d := &Daemon{Addr: addr, Dir: dir, tb: tb}
	d.start(bin, "-c", file)
	d.wait("clamd", 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var dl net.Dialer
		c, err := dl.DialContext(ctx, network, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("zPING\x00")); err != nil {
			return err
		}
		rep, err := bufio.NewReader(c).ReadString(0)
		if err != nil {
			return err
		}
		if rep != "PONG\x00" {
			return fmt.Errorf("PING answered %q", rep)
		}
		return nil
	})
	return d
}

// ClamdAddr is the address for --clamd: tcp://HOST:PORT or unix:///PATH.
func (d *Daemon) ClamdAddr() string {
	if strings.HasPrefix(d.Addr, "/") {
		return "unix://" + d.Addr
	}
	return "tcp://" + d.Addr
}
