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

// Daemon is a scanner process a test (or a benchmark) started.
type Daemon struct {
	// Addr is where it listens: HOST:PORT, or a unix socket's path.
	Addr string
	// Dir holds its configuration and logs.
	Dir string

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

func (d *Daemon) start(name string, args ...string) error {
	d.out = &Buffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.done) }()
	return nil
}

// wait polls ready until it succeeds; on failure it stops the process.
func (d *Daemon) wait(what string, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("%s exited before it was ready: %v\n%s", what, last, d.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return fmt.Errorf("%s not ready after %v: %v\n%s", what, timeout, last, d.out.String())
		}
	}
}

// started registers a daemon a test started: it stops when the test ends,
// and its output is logged when the test failed.
func started(tb testing.TB, name string, d *Daemon, err error) *Daemon {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Stop()
		if tb.Failed() {
			tb.Logf("%s output:\n%s", name, d.Output())
		}
	})
	return d
}

// RspamdOptions configures StartRspamd. The zero value is ready to use.
type RspamdOptions struct {
	// MaxMessage is rspamd's max_message in bytes (rspamd's default, 50
	// MiB, when zero).
	MaxMessage int64
}

// StartRspamd runs rspamd (LaunchRspamd) in a temporary directory for a
// test and stops it when the test ends. Without rspamd the test skips
// (locally) or fails (CI).
func StartRspamd(tb testing.TB, opts RspamdOptions) *Daemon {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts rspamd; skipped in -short mode")
	}
	bin := Require(tb, "rspamd", RspamdInstall)
	if _, err := os.Stat("/etc/rspamd/common.conf"); err != nil {
		Missing(tb, "rspamd's configuration /etc/rspamd/common.conf is missing; "+RspamdInstall)
	}
	d, err := launchRspamd(bin, tb.TempDir(), opts)
	return started(tb, "rspamd", d, err)
}

// LaunchRspamd runs rspamd's normal worker in the foreground on a free
// loopback port with its own configuration under dir (Debian's, with
// logging to the console and no controller or proxy) and waits until
// /checkv2 answers (about 10 s). Network checks (DNS blocklists, fuzzy
// hashes) fail fast without network and add a few points at most. The
// caller stops it.
func LaunchRspamd(dir string, opts RspamdOptions) (*Daemon, error) {
	bin, err := LookPath("rspamd")
	if err != nil {
		return nil, fmt.Errorf("%w; install it with: %s", err, RspamdInstall)
	}
	return launchRspamd(bin, dir, opts)
}

func launchRspamd(bin, dir string, opts RspamdOptions) (*Daemon, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
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
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	d := &Daemon{Addr: addr, Dir: dir}
	args := []string{"-f", "-c", file,
		"--var=RUNDIR=" + filepath.Join(dir, "run"), "--var=DBDIR=" + filepath.Join(dir, "db"),
		"--var=LOGDIR=" + filepath.Join(dir, "log"), "--var=LOCAL_CONFDIR=" + filepath.Join(dir, "local")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root", "-g", "root")
	}
	if err := d.start(bin, args...); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = d.wait("rspamd", 90*time.Second, func() error {
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
	return d, err
}

// URL is the rspamd worker's base URL, for --rspamd.
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

// StartClamd runs clamd (LaunchClamd) in a temporary directory for a test
// and stops it when the test ends. Without clamd the test skips (locally)
// or fails (CI).
func StartClamd(tb testing.TB, opts ClamdOptions) *Daemon {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts clamd; skipped in -short mode")
	}
	bin := Require(tb, "clamd", ClamdInstall)
	d, err := launchClamd(bin, tb.TempDir(), opts)
	return started(tb, "clamd", d, err)
}

// LaunchClamd runs clamd in the foreground on a free loopback port (or a
// unix socket) with a signature database written under dir (EICAR and
// TestVirus as .ndb body signatures, which match inside decoded MIME parts:
// the signature mirror is not reachable from here) and waits until PING
// answers PONG (about a second). The caller stops it.
func LaunchClamd(dir string, opts ClamdOptions) (*Daemon, error) {
	bin, err := LookPath("clamd")
	if err != nil {
		return nil, fmt.Errorf("%w; install it with: %s", err, ClamdInstall)
	}
	return launchClamd(bin, dir, opts)
}

func launchClamd(bin, dir string, opts ClamdOptions) (*Daemon, error) {
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return nil, err
	}
	ndb := "Eicar-Test-Signature:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n" +
		"Letterbox-Test-Signature:0:*:" + hex.EncodeToString([]byte(TestVirus)) + "\n"
	if err := os.WriteFile(filepath.Join(db, "letterbox-test.ndb"), []byte(ndb), 0o644); err != nil {
		return nil, err
	}
	var listen, network, addr string
	if opts.Unix {
		addr = filepath.Join(dir, "clamd.sock")
		network, listen = "unix", "LocalSocket "+addr+"\n"
	} else {
		a, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
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
		return nil, err
	}
	d := &Daemon{Addr: addr, Dir: dir}
	if err := d.start(bin, "-c", file); err != nil {
		return nil, err
	}
	err := d.wait("clamd", 60*time.Second, func() error {
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
	return d, err
}

// ClamdAddr is the address for --clamd: tcp://HOST:PORT or unix:///PATH.
func (d *Daemon) ClamdAddr() string {
	if strings.HasPrefix(d.Addr, "/") {
		return "unix://" + d.Addr
	}
	return "tcp://" + d.Addr
}

// StalledListener listens on loopback, accepts every connection and never
// reads from or writes to it: a peer that hangs, for deadline tests. It
// returns the listener's address; everything closes when the test ends.
func StalledListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}
