// Package faults breaks a running letterbox pipeline on purpose and checks
// that no acknowledged message is lost: it runs the real `letterbox dev`
// binary as a child process (Pipeline), sends mail the way a real MTA does,
// retrying on 4xx and on connection errors and recording every reply
// (Sender), receives webhooks that verify signatures and can be told to
// fail, hang or refuse connections (Receiver), relays an S3 server's bucket
// notifications to the pipeline with duplicates (Relay), and compares what
// the senders were told with what the store holds and the receivers got
// (Check). The pieces both fault scenarios share (this directory's and
// internal/awsstack's TestFaults) are here too: the scenario routes'
// Expect, Acknowledged, Pending and AwaitDelivered, the senders' Backoff
// and the receiver fault windows (ScheduleReceiverFaults).
//
// The tests in this directory run the scenarios (make test-faults);
// bench/e2e reuses Pipeline to measure latency. docs/reliability.md has the
// scenario list and the latest summary.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// Pipeline is `letterbox dev` running as a child process on fixed
// addresses, so that it can be killed and started again where senders,
// receivers and the S3 server's notifications expect it.
type Pipeline struct {
	// Bin is the letterbox binary.
	Bin string
	// Args follow "dev"; Pipeline adds --smtp and --http.
	Args []string
	// Env is added to the test's environment.
	Env []string
	// SMTPAddr and HTTPAddr are chosen by NewPipeline and kept across
	// restarts.
	SMTPAddr, HTTPAddr string
	// Log receives the output of every run, each run introduced by a line
	// naming it; nil discards it.
	Log io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	runs   int
	kills  int
	output *lineLog
}

// NewPipeline returns a stopped pipeline on two free loopback ports.
func NewPipeline(bin string, args ...string) (*Pipeline, error) {
	smtpAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	return &Pipeline{Bin: bin, Args: args, SMTPAddr: smtpAddr, HTTPAddr: httpAddr}, nil
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// readyLine is what `letterbox dev` prints once every stage is running and
// the restart scan has queued what it found.
const readyLine = "letterbox dev: SMTP on "

// ErrExited is returned by Start when the process ends before it is ready
// (for example because the store is unreachable).
var ErrExited = errors.New("letterbox dev exited before it was ready")

// Start runs the pipeline and waits until it says it is ready and answers
// /healthz. A process that exits first yields ErrExited and its last lines.
func (p *Pipeline) Start(ctx context.Context, timeout time.Duration) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New("faults: pipeline already running")
	}
	p.runs++
	run := p.runs
	args := append([]string{"dev", "--smtp", p.SMTPAddr, "--http", p.HTTPAddr}, p.Args...)
	cmd := exec.Command(p.Bin, args...)
	cmd.Env = append(os.Environ(), p.Env...)
	// The child must not outlive the test, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ready := make(chan struct{})
	out := &lineLog{w: p.Log, prefix: fmt.Sprintf("[run %d] ", run), watch: readyLine, ready: ready}
	if p.Log != nil {
		fmt.Fprintf(p.Log, "=== run %d: %s %s\n", run, p.Bin, strings.Join(args, " "))
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go out.copy(pr)
	go func() {
		cmd.Wait()
		pw.Close()
		close(done)
	}()
	p.cmd, p.done, p.output = cmd, done, out
	p.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-done:
		p.reap(cmd)
		return fmt.Errorf("%w:\n%s", ErrExited, out.tail())
	case <-t.C:
		p.Kill()
		return fmt.Errorf("letterbox dev not ready after %v:\n%s", timeout, out.tail())
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	}
	if err := testenv.WaitHTTP(ctx, "http://"+p.HTTPAddr+"/healthz", done, timeout); err != nil {
		p.Kill()
		if errors.Is(err, testenv.ErrExited) {
			return ErrExited
		}
		return err
	}
	return nil
}

// reap forgets a process that exited by itself.
func (p *Pipeline) reap(cmd *exec.Cmd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == cmd {
		p.cmd = nil
	}
}

// Kill sends SIGKILL and waits for the process to end: a crash, with no
// chance to finish anything. Killing a stopped pipeline does nothing.
func (p *Pipeline) Kill() {
	p.signal(syscall.SIGKILL, 0)
}

// Stop sends SIGTERM and waits up to grace for a clean shutdown, then
// kills.
func (p *Pipeline) Stop(grace time.Duration) {
	p.signal(syscall.SIGTERM, grace)
}

func (p *Pipeline) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	if cmd != nil && sig == syscall.SIGKILL {
		p.kills++
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Running reports whether the process is running.
func (p *Pipeline) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current run ends, or nil when
// the pipeline is not running.
func (p *Pipeline) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.done
}

// Pid returns the running process's id, or 0.
func (p *Pipeline) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Runs returns how many times the pipeline was started.
func (p *Pipeline) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Kills returns how many times the pipeline was killed with SIGKILL.
func (p *Pipeline) Kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

// lineLog copies a child's output line by line to w with a prefix, keeps
// the last lines for error messages and signals when a line starts with
// watch.
type lineLog struct {
	w      io.Writer
	prefix string
	watch  string
	ready  chan struct{}

	mu   sync.Mutex
	last []string
	seen bool
}

func (l *lineLog) copy(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.last = append(l.last, line)
		if len(l.last) > 20 {
			l.last = l.last[len(l.last)-20:]
		}
		if !l.seen && strings.HasPrefix(line, l.watch) {
			l.seen = true
			close(l.ready)
		}
		if l.w != nil {
			fmt.Fprintf(l.w, "%s%s\n", l.prefix, line)
		}
		l.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}
