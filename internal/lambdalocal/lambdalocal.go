// Package lambdalocal runs a Lambda function's real bootstrap under the AWS
// Lambda Runtime Interface Emulator (aws-lambda-rie), so the function is
// driven through the Lambda Runtime API exactly as on AWS, and measures each
// invocation as Lambda bills and limits it: the emulator's REPORT line gives
// the duration and, on a cold start, the init duration; the bootstrap
// process's peak resident set (VmHWM in /proc/PID/status, reset before each
// invocation through /proc/PID/clear_refs) stands for "Max Memory Used".
//
// As on Lambda, an invocation whose process grows past the memory size, or
// that runs past the timeout, fails, and its execution environment is
// replaced: the next invocation is a cold start. One Function is one
// execution environment: invocations are serial (Lambda's concurrency is not
// modelled). Test support: it needs Linux's /proc and the emulator binary.
package lambdalocal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config is one function.
type Config struct {
	// Name is AWS_LAMBDA_FUNCTION_NAME.
	Name string
	// Bootstrap is the function's executable; Emulator is aws-lambda-rie.
	Bootstrap, Emulator string
	// Env is the function's environment (KEY=VALUE), as the template gives
	// it; the emulator adds the Runtime API's variables.
	Env []string
	// MemoryMB and Timeout are the template's MemorySize and Timeout.
	MemoryMB int
	Timeout  time.Duration
	// Output receives the emulator's and the function's output (optional).
	Output io.Writer
}

// Result is one invocation.
type Result struct {
	// Payload is the function's response, or its error document.
	Payload []byte
	// Duration is the emulator's REPORT Duration (without a REPORT, when
	// the environment was killed, the time until the invocation ended);
	// Init the init phase's duration on a cold start (0 on a warm one).
	Duration, Init time.Duration
	// PeakRSS is the bootstrap's peak resident set during the invocation
	// (for a cold start, since it started), in bytes.
	PeakRSS int64
	// LogBytes is what the function wrote to stdout and stderr during the
	// invocation: what CloudWatch Logs would ingest from it.
	LogBytes int
}

// Billed is Lambda's billed duration: the duration rounded up to 1 ms,
// init included (provided.al2023 bills the init phase).
func (r Result) Billed() time.Duration {
	return (r.Duration + r.Init + time.Millisecond - 1).Truncate(time.Millisecond)
}

// Errors of Invoke besides a function error.
var (
	ErrTimeout = errors.New("lambdalocal: the invocation ran past the function's timeout")
	ErrMemory  = errors.New("lambdalocal: the function's process exceeded its memory size")
	ErrCrashed = errors.New("lambdalocal: the execution environment failed")
)

// FunctionError is an error the function returned (or its runtime reported).
type FunctionError struct {
	Type, Message string
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("lambdalocal: function error %s: %s", e.Type, e.Message)
}

// Function is one execution environment of a function.
type Function struct {
	cfg Config

	invokeMu sync.Mutex // one invocation at a time

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	addr    string
	reports map[string]chan report
	logs    *logCounter
	killed  bool
}

type report struct {
	dur, init time.Duration
}

// New returns a function whose environment starts on the first Invoke.
func New(cfg Config) *Function {
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	return &Function{cfg: cfg, reports: map[string]chan report{}}
}

// Close stops the execution environment.
func (f *Function) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked()
}

// Kill ends the execution environment at once, as a crash or Lambda's
// reclaiming it would; an invocation in flight fails with ErrCrashed.
func (f *Function) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killed = true
	f.stopLocked()
}

func (f *Function) stopLocked() {
	if f.cmd == nil {
		return
	}
	killTree(f.cmd.Process.Pid)
	<-f.done
	f.cmd = nil
}

// killTree kills the emulator and the bootstrap it runs, which the
// emulator starts in a process group of its own.
func killTree(riePid int) {
	if pid := childOf(riePid); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-riePid, syscall.SIGKILL)
}

// start runs the emulator on free loopback ports; the bootstrap starts at
// the first invocation (the emulator's init phase).
func (f *Function) start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cmd != nil {
		return nil
	}
	var lastErr error
	for range 5 {
		api, err1 := freeAddr()
		rie, err2 := freeAddr()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		cmd := exec.Command(f.cfg.Emulator,
			"--runtime-interface-emulator-address", rie,
			"--runtime-api-address", api,
			"--log-level", "info",
			f.cfg.Bootstrap)
		cmd.Dir = dirOf(f.cfg.Bootstrap)
		cmd.Env = append([]string{
			"PATH=" + os.Getenv("PATH"),
			"TZ=:UTC",
			"LANG=en_US.UTF-8",
			"AWS_LAMBDA_FUNCTION_NAME=" + f.cfg.Name,
			"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(f.cfg.MemoryMB),
			"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int(f.cfg.Timeout/time.Second)),
			"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + f.cfg.Name,
			"AWS_EXECUTION_ENV=AWS_Lambda_provided.al2023",
			"LAMBDA_TASK_ROOT=" + dirOf(f.cfg.Bootstrap),
			"_HANDLER=bootstrap",
		}, f.cfg.Env...)
		// The emulator must not outlive the test; the bootstrap then ends
		// at its next Runtime API call.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan struct{})
		logs := &logCounter{}
		go f.readOutput(pr, logs)
		go func() {
			_ = cmd.Wait()
			pw.Close()
			close(done)
		}()
		if err := waitListening(rie, done, 10*time.Second); err != nil {
			killTree(cmd.Process.Pid)
			<-done
			lastErr = err
			continue
		}
		f.cmd, f.done, f.addr, f.logs = cmd, done, rie, logs
		return nil
	}
	return fmt.Errorf("lambdalocal: %s: start the emulator: %w", f.cfg.Name, lastErr)
}

var (
	reportRE = regexp.MustCompile(`^REPORT RequestId: (\S+)\t(?:Init Duration: [0-9.]+ ms\t)?Duration: ([0-9.]+) ms`)
	// The emulator's REPORT line gives an Init Duration that times only
	// the start of the init phase; its rapid log's INIT REPORT times the
	// whole phase, up to the runtime's first /next request, as Lambda's
	// Init Duration does.
	initRE  = regexp.MustCompile(`\(rapid\) INIT REPORT\((?:initType: \S+, )?durationMs: ([0-9.]+)`)
	rapidRE = regexp.MustCompile(`^\d\d \w{3} \d{4} \d\d:\d\d:\d\d,\d+ \[\w+\] \(rapid\)`)
)

// readOutput copies the output on, hands REPORT lines to the invocation
// waiting for them, and counts what the function itself writes.
func (f *Function) readOutput(r io.Reader, logs *logCounter) {
	var init time.Duration
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(f.cfg.Output, "%s: %s\n", f.cfg.Name, line)
		switch {
		case strings.HasPrefix(line, "REPORT RequestId: "):
			m := reportRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			rep := report{dur: ms(m[2]), init: init}
			init = 0
			f.mu.Lock()
			ch := f.reports[m[1]]
			f.mu.Unlock()
			if ch != nil {
				ch <- rep
			}
		case rapidRE.MatchString(line):
			if m := initRE.FindStringSubmatch(line); m != nil {
				init += ms(m[1])
			}
		case strings.HasPrefix(line, "START RequestId: "), strings.HasPrefix(line, "END RequestId: "):
		default:
			logs.add(len(line) + 1)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func ms(s string) time.Duration {
	if s == "" {
		return 0
	}
	v, _ := strconv.ParseFloat(s, 64)
	return time.Duration(v * float64(time.Millisecond))
}

type logCounter struct {
	mu sync.Mutex
	n  int
}

func (c *logCounter) add(n int) {
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
}

func (c *logCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Invoke runs one invocation with payload as the event. A function error
// is a *FunctionError with the Result; ErrTimeout, ErrMemory and ErrCrashed
// end the execution environment.
func (f *Function) Invoke(ctx context.Context, payload []byte) (Result, error) {
	f.invokeMu.Lock()
	defer f.invokeMu.Unlock()
	if err := f.start(); err != nil {
		return Result{}, err
	}
	f.mu.Lock()
	addr, riePid, logs, done := f.addr, f.cmd.Process.Pid, f.logs, f.done
	f.killed = false
	id := newID()
	ch := make(chan report, 1)
	f.reports[id] = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.reports, id)
		f.mu.Unlock()
	}()

	limit := int64(f.cfg.MemoryMB) << 20
	mon := startMonitor(riePid, limit)
	logsBefore := logs.get()

	// The emulator enforces the timeout itself; this bounds a hung emulator.
	ictx, cancel := context.WithTimeout(ctx, f.cfg.Timeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, http.MethodPost, "http://"+addr+"/2015-03-31/functions/function/invocations", bytes.NewReader(payload))
	if err != nil {
		mon.stop()
		return Result{}, err
	}
	req.Header.Set("X-Amzn-RequestId", id)
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	var body []byte
	status := 0
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	peak, over := mon.stop()
	res := Result{Payload: body, PeakRSS: peak}
	if err == nil && status == http.StatusOK {
		select {
		case rep := <-ch:
			res.Duration, res.Init = rep.dur, rep.init
		case <-time.After(5 * time.Second):
		case <-done:
		}
	}
	if res.Duration == 0 {
		// No REPORT (the environment was killed): the time until then.
		res.Duration = time.Since(began)
	}
	// Let the output of the invocation reach the counter: the emulator
	// writes END and REPORT after the function's lines.
	res.LogBytes = logs.get() - logsBefore

	f.mu.Lock()
	killed := f.killed
	f.mu.Unlock()
	switch {
	case over:
		f.Close()
		return res, fmt.Errorf("%w: %s: peak RSS %d MiB > MemorySize %d MB", ErrMemory, f.cfg.Name, peak>>20, f.cfg.MemoryMB)
	case ctx.Err() != nil:
		f.Close()
		return res, ctx.Err()
	case err != nil || killed:
		f.Close()
		return res, fmt.Errorf("%w: %s: %v", ErrCrashed, f.cfg.Name, err)
	case status == http.StatusOK && bytes.HasPrefix(body, []byte("Task timed out after")):
		f.Close()
		return res, fmt.Errorf("%w: %s: %s", ErrTimeout, f.cfg.Name, body)
	case status != http.StatusOK:
		// The emulator resets the runtime after a failed init or a runtime
		// exit; start afresh so the next invocation is a cold start.
		f.Close()
		return res, fmt.Errorf("%w: %s: emulator answered %d %s", ErrCrashed, f.cfg.Name, status, body)
	}
	var fe struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &fe) == nil && (fe.ErrorType != "" || fe.ErrorMessage != "") {
		return res, &FunctionError{Type: fe.ErrorType, Message: fe.ErrorMessage}
	}
	return res, nil
}

// monitor samples the bootstrap's resident set while an invocation runs and
// kills the environment when it passes the limit, as Lambda does.
type monitor struct {
	riePid  int
	limit   int64
	quit    chan struct{}
	stopped chan struct{}
	peak    int64
	over    bool
}

func startMonitor(riePid int, limit int64) *monitor {
	m := &monitor{riePid: riePid, limit: limit, quit: make(chan struct{}), stopped: make(chan struct{})}
	if pid := childOf(riePid); pid > 0 {
		// Reset the peak so it is this invocation's (Linux 4.0+).
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
	go m.run()
	return m
}

func (m *monitor) sample() {
	pid := childOf(m.riePid)
	if pid <= 0 {
		return
	}
	hwm, rss := memStatus(pid)
	if hwm > m.peak {
		m.peak = hwm
	}
	if rss > m.peak {
		m.peak = rss
	}
	if m.peak > m.limit && !m.over {
		m.over = true
		killTree(m.riePid)
	}
}

func (m *monitor) run() {
	defer close(m.stopped)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		m.sample()
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
	}
}

func (m *monitor) stop() (int64, bool) {
	close(m.quit)
	<-m.stopped
	m.sample()
	return m.peak, m.over
}

// childOf returns the pid of a child process of ppid (the bootstrap under
// the emulator), or 0.
func childOf(ppid int) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

// memStatus returns VmHWM and VmRSS of pid in bytes.
func memStatus(pid int) (hwm, rss int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		if k == "VmHWM" {
			hwm = n << 10
		} else {
			rss = n << 10
		}
	}
	return hwm, rss
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(addr string, done <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("the emulator exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the emulator did not listen on %s within %s", addr, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "/"
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
