// Command smtp benchmarks letterbox's SMTP gateway (make bench-smtp).
//
// It drives Postfix's smtp-source on loopback against several servers
// under the same load, in the same run (the targets list): the gateway
// over the embedded store (every 250 follows a durable write), a private
// Postfix instance whose queue keeps every message (held, so no delivery
// runs), Haraka with a queue plugin that writes each message to a file and
// fsyncs it before answering 250 (bench/smtp/haraka), and smtp-sink
// (accepts and discards: the ceiling). For 1, 20 and 100 sessions and 4 KiB
// and 100 KiB messages it takes the median of several runs and prints
// messages per second, MB/s and the gateway's ratio to each peer. It also measures
// the gateway's RSS with 1,000 idle sessions and its RSS growth while it
// accepts one 50 MiB message, counts the store's sync calls in one run with
// strace, and probes the disk's sync latency. With -scanners (the
// default), it also measures the gateway with rspamd and clamd on, next to
// the gateway alone in the same runs, so the cost of scanning is a ratio.
//
// Each run starts a fresh server on fresh directories, and checks that the
// server holds every message smtp-source sent.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	results "github.com/letterboxmail/letterbox/bench/report"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

var (
	runs   = flag.Int("runs", 3, "runs per measurement; the median is reported")
	quick  = flag.Bool("quick", false, "fewer messages per run (a smoke test, not a measurement)")
	out    = flag.String("out", "", "also write the Markdown report to this file")
	csvOut = flag.String("csv", "", "also write every median as CSV to this file (for bench/charts)")
	docs   = flag.String("docs", "", "replace the marked latest-run section of this Markdown file (docs/benchmarks.md) with the report")
	work   = flag.String("dir", "", "work directory on the disk to measure (default: a new directory under $TMPDIR, removed at the end; a given one is left with every run's files)")
	only   = flag.String("only", "", "comma-separated targets to run: "+targetNames()+" (default all)")
	haraka = flag.String("haraka", "", "npm prefix Haraka is installed under (DIR/node_modules/Haraka; make bench-smtp installs it into .tools/haraka); without it the Haraka peer is skipped")
	skipMe = flag.Bool("skip-memory", false, "skip the RSS measurements")
	sessF  = flag.String("sessions", "1,20,100", "comma-separated numbers of concurrent sessions to measure")
	sizesF = flag.String("sizes", "4096,102400", "comma-separated message sizes in bytes to measure")
	scanF  = flag.Bool("scanners", true, "also measure letterbox with rspamd and clamd on (20 sessions × 4 KiB), alternating with letterbox alone; needs Debian's rspamd and clamav-daemon")
)

const routesYAML = `version: 1
domains: [example.test]
routes:
  - name: all
    catch_all: true
    actions:
      - store: true
`

func main() {
	log.SetFlags(0)
	flag.Parse()
	if err := run(); err != nil {
		log.Fatalf("bench-smtp: %v", err)
	}
}

type result struct {
	target        string
	sessions, msg int
	rates         []float64 // messages per second, one per run
	cpu           []float64 // the server's CPU time per message (µs), where measured
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func (r result) median() float64 { return median(r.rates) }

func run() error {
	source, err := lookTool("smtp-source")
	if err != nil {
		return err
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "letterbox-bench-smtp-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	// Postfix's daemons run as the postfix user and must reach their
	// directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	root, err := results.Root()
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "smtpgw")
	log.Printf("building the gateway")
	build := exec.Command("go", "build", "-o", bin, "./smtpgw/cmd/smtpgw")
	build.Dir = root
	if outb, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, outb)
	}
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte(routesYAML), 0o644); err != nil {
		return err
	}
	chosen := map[string]bool{}
	for _, t := range targets {
		chosen[t.name] = true
	}
	if *only != "" {
		chosen = map[string]bool{}
		for n := range strings.SplitSeq(*only, ",") {
			n = strings.TrimSpace(n)
			if !slices.ContainsFunc(targets, func(t target) bool { return t.name == n }) {
				return fmt.Errorf("-only: no target %q (have %s)", n, targetNames())
			}
			chosen[n] = true
		}
	}
	if chosen["postfix"] && os.Geteuid() != 0 {
		log.Printf("not root: skipping the Postfix peer (its queue must be owned by the postfix user)")
		delete(chosen, "postfix")
	}
	if chosen["haraka"] && *haraka == "" {
		log.Printf("no -haraka: skipping the Haraka peer (make bench-smtp installs it)")
		delete(chosen, "haraka")
	}
	var run []target
	for _, t := range targets {
		if chosen[t.name] {
			run = append(run, t)
		}
	}
	env := &benchEnv{dir: dir, bin: bin, routes: routes, source: source, haraka: *haraka}
	var rep report
	rep.started = time.Now()
	rep.loadStart = loadavg()
	rep.disk = probeDisk(dir)
	log.Printf("disk: %s", rep.disk)

	sizes, err := ints(*sizesF)
	if err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	sessions, err := ints(*sessF)
	if err != nil {
		return fmt.Errorf("-sessions: %w", err)
	}
	for _, size := range sizes {
		for _, s := range sessions {
			n := messages(s, size)
			res := map[string]*result{}
			for r := 0; r < *runs; r++ {
				for _, tg := range run {
					rate, cpu, err := env.measure(tg, s, size, n)
					if err != nil {
						return fmt.Errorf("%s, %d sessions, %d bytes: %w", tg.name, s, size, err)
					}
					if res[tg.name] == nil {
						res[tg.name] = &result{target: tg.name, sessions: s, msg: size}
					}
					res[tg.name].rates = append(res[tg.name].rates, rate)
					if cpu > 0 {
						res[tg.name].cpu = append(res[tg.name].cpu, cpu)
					}
					log.Printf("%-9s sessions=%-3d size=%-6d messages=%-5d run %d: %7.0f msg/s, %5.0f µs CPU/msg, load %s", tg.name, s, size, n, r+1, rate, cpu, loadavg())
				}
			}
			rep.rows = append(rep.rows, row{sessions: s, size: size, n: n, res: res})
		}
	}
	if chosen["letterbox"] && *scanF {
		if rep.scan, err = env.measureScanned(); err != nil {
			return fmt.Errorf("scanners: %w", err)
		}
	}
	if chosen["letterbox"] {
		if st, err := env.straceSyncs(); err != nil {
			log.Printf("sync count: %v", err)
		} else {
			rep.syncs = st
		}
		if !*skipMe {
			if rep.idle, err = env.idleRSS(1000); err != nil {
				return fmt.Errorf("idle sessions: %w", err)
			}
			if rep.big, err = env.bigMessageRSS(50 << 20); err != nil {
				return fmt.Errorf("50 MiB message: %w", err)
			}
		}
	}
	rep.loadEnd = loadavg()
	text := rep.markdown()
	fmt.Print(text)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if *csvOut != "" {
		if err := os.WriteFile(*csvOut, []byte(rep.csv()), 0o644); err != nil {
			return err
		}
	}
	if *docs != "" {
		return results.ReplaceSection(*docs, "smtp:results", text)
	}
	return nil
}

// csv lists the medians: one row per target, sessions and size.
func (r *report) csv() string {
	var b strings.Builder
	b.WriteString("target,sessions,size_bytes,messages,runs,median_msg_s,median_cpu_us_per_msg\n")
	for _, rw := range r.rows {
		for _, tg := range targets {
			x := rw.res[tg.name]
			if x == nil {
				continue
			}
			fmt.Fprintf(&b, "%s,%d,%d,%d,%d,%.1f,%.0f\n", tg.name, rw.sessions, rw.size, rw.n, len(x.rates), x.median(), median(x.cpu))
		}
	}
	if sc := r.scan; sc != nil {
		fmt.Fprintf(&b, "letterbox+scanners,%d,%d,%d,%d,%.1f,%.0f\n", sc.sessions, sc.size, sc.n, len(sc.scanned.rates), sc.scanned.median(), median(sc.scanned.cpu))
	}
	return b.String()
}

func ints(list string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// messages per run: enough for a few seconds on each target.
func messages(sessions, size int) int {
	n := 2000
	if sessions == 1 {
		n = 500
	}
	if size > 10<<10 {
		n /= 2
	}
	if *quick {
		n /= 10
	}
	return max(n, 2*sessions)
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install Debian's postfix package (make tools)", name)
}

type benchEnv struct {
	dir, bin, routes, source string
	haraka                   string // npm prefix holding node_modules/Haraka
	seq                      int
}

// A target is one server smtp-source is run against. To add one (the
// gateway with other flags: gatewayTarget("--flag", "value"); another
// MTA: a start function), add an entry to targets: the runs, the report,
// the CSV and the charts follow. The ratios are the "letterbox" target's.
type target struct {
	name  string // for -only and the CSV
	label string // in the report
	start func(e *benchEnv, d string) (*server, error)
}

// targets in the order they run in each round and are reported; the
// gateway, the subject, comes first.
var targets = []target{
	{"letterbox", "letterbox gateway (embedded SQLite store)", gatewayTarget()},
	{"postfix", "Postfix (queue, held)", (*benchEnv).startPostfix},
	{"haraka", "Haraka " + harakaVersion + " (file per message, fsync)", (*benchEnv).startHaraka},
	{"sink", "smtp-sink (discards)", (*benchEnv).startSink},
}

func targetNames() string {
	var n []string
	for _, t := range targets {
		n = append(n, t.name)
	}
	return strings.Join(n, ", ")
}

// A server is a started target.
type server struct {
	addr string
	// pid is measured for CPU time while smtp-source runs (0: not
	// measured, e.g. for servers of several processes).
	pid int
	// stop stops the server; it may be called more than once.
	stop func()
	// count, after stop, returns how many messages the server holds (nil:
	// it keeps none); cpuAtExit, after stop, its CPU time up to its exit.
	count     func() (int, error)
	cpuAtExit func() time.Duration
}

func (e *benchEnv) fresh(name string) (string, error) {
	e.seq++
	d := filepath.Join(e.dir, fmt.Sprintf("%s-%d", name, e.seq))
	return d, os.MkdirAll(d, 0o755)
}

// measure starts a fresh target, runs smtp-source and returns accepted
// messages per second and, where measured, the server's CPU time per
// message in µs, after checking the target holds every message.
func (e *benchEnv) measure(tg target, sessions, size, n int) (float64, float64, error) {
	// The run's directory stays until the whole benchmark ends: on ext4
	// without a journal (this machine's disk), every inode freed in the
	// last half minute or so makes each new file's creation slower, so
	// deleting one run's thousands of files would tax the next run (and
	// the servers that create a file per message more than smtp-sink). A
	// server in service rarely deletes mail at that rate.
	d, err := e.fresh(tg.name)
	if err != nil {
		return 0, 0, err
	}
	srv, err := tg.start(e, d)
	if err != nil {
		return 0, 0, err
	}
	srv.stop = sync.OnceFunc(srv.stop)
	defer srv.stop()
	args := []string{"-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n), "-l", strconv.Itoa(size),
		"-f", "bench@remote.test", "-t", "rcpt@example.test", "-M", "client.bench.test", srv.addr}
	cpu0 := cpuTime(srv.pid)
	start := time.Now()
	outb, err := exec.Command(e.source, args...).CombinedOutput()
	elapsed := time.Since(start)
	cpu := cpuTime(srv.pid) - cpu0
	if err != nil {
		return 0, 0, fmt.Errorf("smtp-source %s: %v\n%s", strings.Join(args, " "), err, outb)
	}
	// Stop first, so that the count sees everything the server wrote
	// and the CPU time runs up to its exit.
	srv.stop()
	if srv.count != nil {
		got, err := srv.count()
		if err != nil {
			return 0, 0, err
		}
		if got != n {
			return 0, 0, fmt.Errorf("%s holds %d messages, smtp-source sent %d", tg.name, got, n)
		}
	}
	if srv.cpuAtExit != nil {
		if total := srv.cpuAtExit(); total > 0 {
			cpu = total - cpu0
		}
	}
	return float64(n) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(n), nil
}

// gatewayTarget runs the gateway, with extra flags, on a fresh embedded
// store.
func gatewayTarget(extra ...string) func(*benchEnv, string) (*server, error) {
	return func(e *benchEnv, d string) (*server, error) { return e.startLetterbox(d, extra...) }
}

// startLetterbox runs the gateway on a fresh embedded store in d.
func (e *benchEnv) startLetterbox(d string, extra ...string) (*server, error) {
	g, err := e.startGateway(d, nil, extra...)
	if err != nil {
		return nil, err
	}
	return &server{
		addr: g.smtp, pid: g.cmd.Process.Pid, stop: g.stop,
		count: func() (int, error) { return countRaw(filepath.Join(d, "store")) },
		cpuAtExit: func() time.Duration {
			if ps := g.cmd.ProcessState; ps != nil {
				return ps.UserTime() + ps.SystemTime()
			}
			return 0
		},
	}, nil
}

// cpuTime is a process's user and system CPU time so far (0 for pid 0).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th (fields 14 and 15 of proc(5)).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// countRaw counts the raw messages in the file store in dir.
func countRaw(dir string) (int, error) {
	st, err := filestore.New(dir)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n := 0
	err = st.List(context.Background(), store.RawPrefix, "", func(store.Object) bool { n++; return true })
	return n, err
}

func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	return n, err
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitDial(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type gateway struct {
	cmd       *exec.Cmd
	smtp, web string
	stop      func()
}

// startGateway runs the gateway binary on a fresh file store in d. wrap,
// when set, prefixes the command (strace).
func (e *benchEnv) startGateway(d string, wrap []string, extra ...string) (*gateway, error) {
	smtpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	web, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append(wrap, e.bin, "--smtp", smtpAddr, "--http", web, "--store", "file://"+filepath.Join(d, "store"),
		"--routes", e.routes, "--hostname", "mx.bench.test", "--max-connections", "5000", "--max-connections-per-ip", "5000")
	args = append(args, extra...)
	logf, err := os.Create(filepath.Join(d, "smtpgw.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	g := &gateway{cmd: cmd, smtp: smtpAddr, web: web, stop: func() {
		pid := cmd.Process.Pid
		if len(wrap) > 0 {
			// Signal the gateway, not strace, so strace writes its summary
			// when the gateway exits.
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
			if f := strings.Fields(string(b)); len(f) > 0 {
				pid, _ = strconv.Atoi(f[0])
			}
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + web + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(d, "smtpgw.log"))
			return nil, fmt.Errorf("smtpgw exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("smtpgw not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSink runs smtp-sink, which accepts every message and keeps none.
func (e *benchEnv) startSink(string) (*server, error) {
	sink, err := lookTool("smtp-sink")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-m", "1000", addr, "1000"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(sink, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { _ = cmd.Process.Kill(); <-exited }
	if err := waitDial(addr, exited); err != nil {
		stop()
		return nil, err
	}
	return &server{addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
}

// startPostfix runs a private Postfix instance in d: its own main.cf and
// master.cf, queue and data directories, no chroot, logging to a file
// (there is no syslog here). Every message is put on hold, so the queue
// manager delivers nothing and the measurement is the durable acceptance
// path: smtpd, cleanup writing and fsyncing the queue file.
func (e *benchEnv) startPostfix(d string) (*server, error) {
	postfix, err := lookTool("postfix")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(d, "conf")
	for _, sub := range []string{"conf", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := exec.Command("chown", "postfix", filepath.Join(d, "data")).Run(); err != nil {
		return nil, fmt.Errorf("chown postfix: %w", err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
relay_domains = example.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_client_restrictions = check_client_access static:HOLD
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_process_limit = 250
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_peername_lookup = no
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
biff = no
`, d)
	masterCF := addr + ` inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return nil, err
	}
	if outb, err := exec.Command(postfix, "-c", conf, "start").CombinedOutput(); err != nil {
		logb, _ := os.ReadFile(filepath.Join(d, "maillog"))
		return nil, fmt.Errorf("postfix start: %v\n%s\n%s", err, outb, logb)
	}
	stop := func() {
		_ = exec.Command(postfix, "-c", conf, "stop").Run()
		// postfix stop returns before master exits; wait for its pid file
		// to go so the next instance starts clean.
		for range 300 {
			if _, err := os.Stat(filepath.Join(d, "queue", "pid", "master.pid")); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := waitDial(addr, nil); err != nil {
		stop()
		return nil, err
	}
	return &server{addr: addr, stop: stop, count: func() (int, error) { return countFiles(filepath.Join(d, "queue", "hold")) }}, nil
}

// syncStats is what strace counted in one letterbox run.
type syncStats struct {
	messages    int
	seconds     float64
	calls       int     // syncfs + fsync + fdatasync
	usPerCall   float64 // mean time in the call, as strace measured it
	description string
}

// straceSyncs repeats the 20-session 4 KiB run under strace, counting the
// store's sync calls: how well group commit batches.
func (e *benchEnv) straceSyncs() (*syncStats, error) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		return nil, errors.New("strace not installed")
	}
	d, err := e.fresh("strace")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	summary := filepath.Join(d, "strace.txt")
	g, err := e.startGateway(d, []string{strace, "-f", "--seccomp-bpf", "-c", "-o", summary, "-e", "trace=syncfs,fsync,fdatasync"})
	if err != nil {
		return nil, err
	}
	n := messages(20, 4<<10)
	start := time.Now()
	outb, err := exec.Command(e.source, "-s", "20", "-m", strconv.Itoa(n), "-l", "4096", "-f", "bench@remote.test",
		"-t", "rcpt@example.test", "-M", "client.bench.test", g.smtp).CombinedOutput()
	secs := time.Since(start).Seconds()
	g.stop()
	if err != nil {
		return nil, fmt.Errorf("smtp-source: %v\n%s", err, outb)
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		return nil, err
	}
	st := &syncStats{messages: n, seconds: secs}
	var totalSec float64
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		// % time, seconds, usecs/call, calls, [errors], syscall
		if len(f) < 5 || !slices.Contains([]string{"syncfs", "fsync", "fdatasync"}, f[len(f)-1]) {
			continue
		}
		calls, _ := strconv.Atoi(f[3])
		sec, _ := strconv.ParseFloat(f[1], 64)
		st.calls += calls
		totalSec += sec
		st.description += fmt.Sprintf("%s %d, ", f[len(f)-1], calls)
	}
	if st.calls > 0 {
		st.usPerCall = totalSec / float64(st.calls) * 1e6
	}
	st.description = strings.TrimSuffix(st.description, ", ")
	return st, nil
}

// rss reads a process's resident set (VmRSS) and peak (VmHWM) in bytes.
func rss(pid int) (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			cur = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return cur, peak, sc.Err()
}

type idleResult struct {
	sessions     int
	before, peak int64
}

// idleRSS opens n sessions that have said EHLO and then wait, and reads
// the gateway's peak RSS.
func (e *benchEnv) idleRSS(n int) (*idleResult, error) {
	d, err := e.fresh("idle")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	g, err := e.startGateway(d, nil)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	before, _, err := rss(g.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", g.smtp)
		if err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
		conns = append(conns, c)
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "EHLO idle%d.bench.test\r\n", i)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if len(line) > 3 && line[3] == ' ' {
				break
			}
		}
	}
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	_, peak, err := rss(g.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	return &idleResult{sessions: n, before: before, peak: peak}, nil
}

type bigResult struct {
	size        int64
	before      int64
	peak        int64
	store       string
	replyMillis int64
}

// bigMessageRSS sends one message of size bytes and reads how far the
// gateway's peak RSS rose above its resident size before.
func (e *benchEnv) bigMessageRSS(size int64) (*bigResult, error) {
	d, err := e.fresh("big")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	g, err := e.startGateway(d, nil, "--max-message-bytes", strconv.FormatInt(size+(1<<20), 10))
	if err != nil {
		return nil, err
	}
	defer g.stop()
	pid := g.cmd.Process.Pid
	// Warm up with a small message, then reset the peak.
	if err := sendMessage(g.smtp, 4<<10); err != nil {
		return nil, err
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return nil, fmt.Errorf("reset peak RSS: %w", err)
	}
	before, _, err := rss(pid)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := sendMessage(g.smtp, size); err != nil {
		return nil, err
	}
	took := time.Since(start)
	_, peak, err := rss(pid)
	if err != nil {
		return nil, err
	}
	return &bigResult{size: size, before: before, peak: peak, store: "file store", replyMillis: took.Milliseconds()}, nil
}

// sendMessage sends one message of about size bytes, generated as it goes.
func sendMessage(addr string, size int64) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("bench@remote.test", &smtp.MailOptions{Size: size + 100}); err != nil {
		return err
	}
	if err := c.Rcpt("rcpt@example.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, "Subject: bench\r\n\r\n"); err != nil {
		return err
	}
	line := []byte(strings.Repeat("0123456789", 99) + "\r\n")
	for n := int64(0); n+int64(len(line)) <= size; n += int64(len(line)) {
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// probeDisk times durable 4 KiB writes (write + fdatasync) and syncfs in
// the work directory: the floor under any durable acceptance path.
func probeDisk(dir string) string {
	f, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		return "probe failed: " + err.Error()
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	const n = 200
	start := time.Now()
	for range n {
		if _, err := f.Write(buf); err != nil {
			return "probe failed: " + err.Error()
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return "probe failed: " + err.Error()
		}
	}
	fd := time.Since(start) / n
	start = time.Now()
	const m = 50
	for range m {
		if _, err := f.Write(buf); err != nil {
			return "probe failed: " + err.Error()
		}
		if err := unix.Syncfs(int(f.Fd())); err != nil {
			return "probe failed: " + err.Error()
		}
	}
	sf := time.Since(start) / m
	// Metadata: what a file-per-message store does besides syncing.
	start = time.Now()
	for i := range n {
		g, err := os.CreateTemp(dir, "probe-")
		if err != nil {
			return "probe failed: " + err.Error()
		}
		_, err = g.Write(buf)
		g.Close()
		if err == nil {
			err = os.Rename(g.Name(), filepath.Join(dir, fmt.Sprintf("probe-file-%d", i)))
		}
		if err != nil {
			return "probe failed: " + err.Error()
		}
	}
	cr := time.Since(start) / n
	for i := range n {
		os.Remove(filepath.Join(dir, fmt.Sprintf("probe-file-%d", i)))
	}
	return fmt.Sprintf("4 KiB write+fdatasync %.2f ms (%.0f/s); write+syncfs %.2f ms (%.0f/s); create+write+close+rename of a 4 KiB file, no sync, %.2f ms",
		float64(fd.Microseconds())/1000, float64(time.Second)/float64(fd), float64(sf.Microseconds())/1000, float64(time.Second)/float64(sf),
		float64(cr.Microseconds())/1000)
}

type row struct {
	sessions, size, n int
	res               map[string]*result
}

type report struct {
	started time.Time
	// loadStart and loadEnd are the 1-, 5- and 15-minute load averages:
	// on a shared machine, other work moves the numbers.
	loadStart, loadEnd string
	disk               string
	rows               []row
	syncs              *syncStats
	idle               *idleResult
	big                *bigResult
	scan               *scanResult
}

// scanResult is letterbox with rspamd and clamd on ("scanned") and alone,
// measured alternately in the same runs.
type scanResult struct {
	sessions, size, n int
	plain, scanned    result
}

// measureScanned starts rspamd and clamd on loopback (internal/testenv, as
// the tests run them) and measures the gateway with both on and without
// them, alternately, at 20 sessions × 4 KiB.
func (e *benchEnv) measureScanned() (*scanResult, error) {
	rd, err := e.fresh("rspamd")
	if err != nil {
		return nil, err
	}
	log.Printf("starting rspamd and clamd")
	rs, err := testenv.LaunchRspamd(rd, testenv.RspamdOptions{})
	if err != nil {
		return nil, err
	}
	defer rs.Stop()
	cd, err := e.fresh("clamd")
	if err != nil {
		return nil, err
	}
	cl, err := testenv.LaunchClamd(cd, testenv.ClamdOptions{})
	if err != nil {
		return nil, err
	}
	defer cl.Stop()
	plain := target{"letterbox", "letterbox gateway", gatewayTarget()}
	scanned := target{"scanned", "letterbox gateway + rspamd + clamd", gatewayTarget("--rspamd", rs.URL(), "--clamd", cl.ClamdAddr())}
	const sessions, size = 20, 4096
	res := &scanResult{sessions: sessions, size: size, n: messages(sessions, size)}
	for r := 0; r < *runs; r++ {
		for _, tg := range []target{plain, scanned} {
			rate, cpu, err := e.measure(tg, sessions, size, res.n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tg.name, err)
			}
			x := &res.plain
			if tg.name == "scanned" {
				x = &res.scanned
			}
			x.rates = append(x.rates, rate)
			if cpu > 0 {
				x.cpu = append(x.cpu, cpu)
			}
			log.Printf("%-9s sessions=%-3d size=%-6d messages=%-5d run %d: %7.0f msg/s, %5.0f µs CPU/msg, load %s", tg.name, sessions, size, res.n, r+1, rate, cpu, loadavg())
		}
	}
	return res, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	cpu := runtime.GOARCH
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s, %s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version())
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Run of %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Command: `make bench-smtp` (`bin/bench/smtp -runs %d -sessions %s -sizes %s`)\n", *runs, *sessF, *sizesF)
	fmt.Fprintf(&b, "- Machine: %s\n", machine())
	fmt.Fprintf(&b, "- Disk (work directory): %s\n", r.disk)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at the start: %s; at the end: %s\n", r.loadStart, r.loadEnd)
	fmt.Fprintf(&b, "- Load: `smtp-source -s SESSIONS -m MESSAGES -l SIZE` on loopback, a new connection per message; median of %d runs; MB/s counts the SIZE payload (10^6 bytes); CPU is the server's user+system time per message where it is one process\n\n", *runs)
	b.WriteString("| sessions | size | messages | server | msg/s | MB/s | letterbox ÷ this | CPU µs/msg |\n")
	b.WriteString("|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, rw := range r.rows {
		lb := rw.res["letterbox"]
		for _, tg := range targets {
			x := rw.res[tg.name]
			if x == nil {
				continue
			}
			ratio, cpu := "–", "–"
			if lb != nil && tg.name != "letterbox" && x.median() > 0 {
				ratio = fmt.Sprintf("%.2f×", lb.median()/x.median())
			}
			if len(x.cpu) > 0 {
				cpu = fmt.Sprintf("%.0f", median(x.cpu))
			}
			fmt.Fprintf(&b, "| %d | %d KiB | %d | %s | %.0f | %.1f | %s | %s |\n", rw.sessions, rw.size>>10, rw.n, tg.label, x.median(), x.median()*float64(rw.size)/1e6, ratio, cpu)
		}
	}
	if s := r.syncs; s != nil {
		fmt.Fprintf(&b, "\nGroup commit (one extra run of letterbox, 20 sessions × 4 KiB, under `strace -f -c`): %d messages in %.1f s made %d sync calls (%s): %.1f messages per sync call, %.0f sync calls/s, %.2f ms in each on average.\n",
			s.messages, s.seconds, s.calls, s.description, float64(s.messages)/float64(max(s.calls, 1)), float64(s.calls)/s.seconds, s.usPerCall/1000)
	}
	if i := r.idle; i != nil {
		fmt.Fprintf(&b, "\nMemory: %d idle sessions (connected, EHLO answered): peak RSS %.1f MiB (%.1f MiB before they connected).\n",
			i.sessions, float64(i.peak)/(1<<20), float64(i.before)/(1<<20))
	}
	if sc := r.scan; sc != nil {
		fmt.Fprintf(&b, "\nScanning: letterbox with `--rspamd` and `--clamd` (rspamd's normal worker, one process, and clamd with a two-signature database, both on loopback), %d sessions × %d KiB, %d messages, median of %d runs alternating with letterbox alone: %.0f msg/s, **%.0f%%** of letterbox alone in the same runs (%.0f msg/s); gateway CPU %.0f µs/msg (%.0f alone; the scanners' own CPU not counted).\n",
			sc.sessions, sc.size>>10, sc.n, len(sc.scanned.rates), sc.scanned.median(), 100*sc.scanned.median()/sc.plain.median(), sc.plain.median(), median(sc.scanned.cpu), median(sc.plain.cpu))
	}
	if g := r.big; g != nil {
		fmt.Fprintf(&b, "One %d MiB message (%s, stored in %d ms): peak RSS %.1f MiB, %.1f MiB above the %.1f MiB resident before it.\n",
			g.size>>20, g.store, g.replyMillis, float64(g.peak)/(1<<20), float64(g.peak-g.before)/(1<<20), float64(g.before)/(1<<20))
	}
	return b.String()
}
