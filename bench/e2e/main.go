// Command e2e measures letterbox's end-to-end latency: from the moment a
// sender reads "250 OK: queued as <id>" to the moment the webhook for that
// message reaches its receiver, through `letterbox dev` (gateway → file
// store → ingest → delivery queue → webhook) running as its own process.
//
// An open-loop generator offers messages at a fixed rate (a message is due
// at start + i/rate, whatever happened to the ones before it, and gets a
// new SMTP session when every open one is busy), so a slow pipeline shows
// as latency and backlog instead of a lower offered rate.
//
// It measures p50/p95/p99 at fixed rates (50 and 200 msg/s for 60 s by
// default, three runs, medians), then steps the rate up to find the
// highest one sustained without a growing backlog (backlog = messages
// acknowledged minus messages received, sampled every 250 ms; it grows when
// its least-squares slope over the second half of a step exceeds 2 % of
// the rate). It writes its section of docs/benchmarks.md and
// docs/e2e-latency.csv.
//
//	make bench-e2e E2E_FLAGS="[-runs 3] [-duration 60s] [-rates 50,200]"
//
// With -cpuprofile FILE one run at the first rate uses bench/e2e/devprof —
// the same pipeline in-process with a CPU profile — and prints the top of
// the profile.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	results "github.com/letterboxmail/letterbox/bench/report"
	"github.com/letterboxmail/letterbox/internal/e2e"
)

const secret = "whsec_YmVuY2gtZTJlLXJlY2VpdmVyLXNlY3JldC0wMTIzNDU2"

type config struct {
	bin           string
	rates         []float64
	duration      time.Duration
	warmup        time.Duration
	runs          int
	stepRates     []float64
	stepDuration  time.Duration
	size          int
	maxSessions   int
	perSession    int
	cpuprofile    string
	docs          bool
	root          string
	logLevel      string
	skipSteps     bool
	stepThreshold float64
	verbose       bool
	pipelineLog   string
	stores        []storeDir
	commit        string // of the checkout the binary was built from
}

// storeDir is where a run keeps the pipeline's file store and queue.
type storeDir struct{ Name, Dir string }

func (s storeDir) String() string { return s.Name + " (" + s.Dir + ")" }

// result is one measured phase: a fixed-rate run or one step of the search.
type result struct {
	Phase        string // "fixed" or "step"
	Store        string // storeDir.Name
	Rate         float64
	Run          int
	Duration     time.Duration
	Offered      int
	Accepted     int
	Delivered    int
	Errors       int
	FirstErr     string
	Achieved     float64 // acknowledged per second in the measured window
	P50, P95     float64 // ms
	P99, Max     float64
	LateP99      float64 // generator lateness, ms
	Slope        float64 // backlog growth, messages per second
	BacklogEnd   int
	PeakSessions int
	Drain        time.Duration
	Sustained    bool
	Load         string // /proc/loadavg's 1-minute figure at the end
}

func main() {
	if err := run(); err != nil {
		fatal(err)
	}
}

func run() error {
	var cfg config
	var rates, steps, stores string
	flag.StringVar(&cfg.bin, "bin", "", "letterbox binary (default: build the checkout's ./cmd/letterbox)")
	flag.StringVar(&rates, "rates", "50,200", "fixed rates in messages per second")
	flag.DurationVar(&cfg.duration, "duration", 60*time.Second, "measured time per fixed-rate run")
	flag.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "unmeasured load before each measurement")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of everything; results are medians")
	flag.StringVar(&steps, "steps", "50,100,150,200,300,400,600,800,1000,1200,1600,2000", "rates of the sustained-rate search, ascending")
	flag.DurationVar(&cfg.stepDuration, "step-duration", 15*time.Second, "measured time per step")
	flag.StringVar(&stores, "stores", defaultStores(), "comma-separated NAME=DIR: run everything with the file store in each DIR")
	flag.Float64Var(&cfg.stepThreshold, "growth", 0.02, "a backlog growing faster than this fraction of the rate per second is not sustained")
	flag.BoolVar(&cfg.skipSteps, "no-steps", false, "skip the sustained-rate search")
	flag.IntVar(&cfg.size, "size", 3000, "message size in bytes")
	flag.IntVar(&cfg.maxSessions, "max-sessions", 1000, "most concurrent SMTP sessions")
	flag.IntVar(&cfg.perSession, "per-session", 20, "messages per SMTP session before QUIT")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "profile the pipeline in-process during one run at the first rate and write the CPU profile here")
	flag.BoolVar(&cfg.docs, "docs", false, "write the results to docs/benchmarks.md and docs/e2e-latency.csv")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "the pipeline's --log-level")
	flag.BoolVar(&cfg.verbose, "v", false, "print the backlog every second")
	flag.StringVar(&cfg.pipelineLog, "pipeline-log", "", "append the pipeline's output to this file")
	flag.Parse()
	var err error
	if cfg.rates, err = parseRates(rates); err != nil {
		return err
	}
	if cfg.stepRates, err = parseRates(steps); err != nil {
		return err
	}
	if cfg.stores, err = parseStores(stores); err != nil {
		return err
	}
	if cfg.root, err = results.Root(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "letterbox-bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg.commit = describe(cfg.root)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(tmp, "letterbox")
		if err := build(cfg.root, cfg.bin, "./cmd/letterbox"); err != nil {
			return err
		}
	}
	if cfg.cpuprofile != "" {
		return profile(ctx, cfg, tmp)
	}

	started := time.Now()
	fmt.Printf("e2e: %s, %s; %d runs; stores %v; fixed rates %v msg/s for %v (+%v warm-up); steps %v for %v; %d-byte messages\n",
		machine(), cfg.commit, cfg.runs, cfg.stores, cfg.rates, cfg.duration, cfg.warmup, cfg.stepRates, cfg.stepDuration, cfg.size)
	var all []result
	maxRates := map[string][]float64{}
	for run := 1; run <= cfg.runs; run++ {
		for _, st := range cfg.stores {
			for _, rate := range cfg.rates {
				r, err := measure(ctx, cfg, cfg.bin, st, "fixed", run, rate, cfg.duration)
				if err != nil {
					return err
				}
				report(r)
				all = append(all, r)
			}
			if cfg.skipSteps {
				continue
			}
			best, steps, err := search(ctx, cfg, st, run)
			if err != nil {
				return err
			}
			all = append(all, steps...)
			maxRates[st.Name] = append(maxRates[st.Name], best)
			fmt.Printf("run %d, %s: highest rate sustained without a growing backlog: %.0f msg/s\n", run, st.Name, best)
		}
	}
	sum := summarize(cfg, all, maxRates)
	fmt.Print("\n" + sum.text())
	fmt.Printf("(%v in all)\n", time.Since(started).Round(time.Second))
	if cfg.docs {
		return writeDocs(cfg, sum, all, started)
	}
	return nil
}

// search steps the rate up until a step is not sustained, then tries the
// midpoint once.
func search(ctx context.Context, cfg config, st storeDir, run int) (float64, []result, error) {
	var out []result
	best, failed := 0.0, 0.0
	for _, rate := range cfg.stepRates {
		r, err := measure(ctx, cfg, cfg.bin, st, "step", run, rate, cfg.stepDuration)
		if err != nil {
			return 0, nil, err
		}
		report(r)
		out = append(out, r)
		if !r.Sustained {
			failed = rate
			break
		}
		best = rate
	}
	if failed > 0 && best > 0 && failed-best > 50 {
		mid := math.Round((best+failed)/2/25) * 25
		r, err := measure(ctx, cfg, cfg.bin, st, "step", run, mid, cfg.stepDuration)
		if err != nil {
			return 0, nil, err
		}
		report(r)
		out = append(out, r)
		if r.Sustained {
			best = mid
		}
	}
	return best, out, nil
}

// measure runs one phase on a fresh pipeline.
func measure(ctx context.Context, cfg config, bin string, st storeDir, phase string, run int, rate float64, dur time.Duration) (result, error) {
	res := result{Phase: phase, Store: st.Name, Rate: rate, Run: run, Duration: dur}
	dir, err := os.MkdirTemp(st.Dir, "letterbox-e2e-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	recv, err := newReceiver(secret)
	if err != nil {
		return res, err
	}
	defer recv.close()
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte(fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: inbound
    catch_all: true
    actions:
      - webhook: {url: %q, secret: %q}
`, recv.url, secret)), 0o644); err != nil {
		return res, err
	}
	pipe, err := e2e.NewPipeline(bin, "--store", "file://"+filepath.Join(dir, "store"), "--routes", routes,
		"--no-auth", "--hostname", "mx.bench.test", "--log-level", cfg.logLevel,
		"--max-connections", strconv.Itoa(cfg.maxSessions+100), "--max-connections-per-ip", strconv.Itoa(cfg.maxSessions+100))
	if err != nil {
		return res, err
	}
	out := &tailBuffer{}
	pipe.Log = out
	if cfg.pipelineLog != "" {
		f, err := os.OpenFile(cfg.pipelineLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return res, err
		}
		defer f.Close()
		pipe.Log = io.MultiWriter(out, f)
	}
	if err := pipe.Start(ctx, 60*time.Second); err != nil {
		return res, err
	}
	defer pipe.Stop(10 * time.Second)

	warm := cfg.warmup
	if phase == "step" {
		warm = min(warm, 3*time.Second)
	}
	n := int(rate * (warm + dur).Seconds())
	var acked atomic.Int64
	l := &load{addr: pipe.SMTPAddr, rate: rate, maxSessions: cfg.maxSessions, perSession: cfg.perSession,
		from: "load@bench.example",
		rcpt: func(i int) string { return fmt.Sprintf("user%d@example.test", i%100) },
		body: func(i int) []byte {
			return e2e.Compose("load@bench.example", []string{fmt.Sprintf("user%d@example.test", i%100)}, fmt.Sprintf("s0-m%d-a1", i), cfg.size, uint64(i%50))
		},
		onAck: func(int, sent) { acked.Add(1) }}
	t0 := time.Now().Add(100 * time.Millisecond)
	mStart, mEnd := t0.Add(warm), t0.Add(warm+dur)

	// Backlog samples: acknowledged minus received.
	type sample struct {
		t       time.Time
		backlog int
	}
	var samples []sample
	sampDone := make(chan struct{})
	sampStop := make(chan struct{})
	go func() {
		defer close(sampDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampStop:
				return
			case now := <-tick.C:
				samples = append(samples, sample{now, int(acked.Load()) - recv.count()})
				if cfg.verbose && len(samples)%4 == 0 {
					fmt.Printf("  %5.1fs acked %d received %d backlog %d sessions %d\n", now.Sub(t0).Seconds(), acked.Load(), recv.count(), samples[len(samples)-1].backlog, l.openSessions())
				}
			}
		}
	}()
	sents := l.run(ctx, t0, n)
	loadEnd := time.Now()

	// Drain: wait for every acknowledged message, up to 30 s.
	drainUntil := time.Now().Add(30 * time.Second)
	for recv.count() < int(acked.Load()) && time.Now().Before(drainUntil) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	res.Drain = time.Since(loadEnd)
	close(sampStop)
	<-sampDone
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	var lat, late []float64
	for _, s := range sents {
		if s.due.Before(mStart) || !s.due.Before(mEnd) {
			continue
		}
		res.Offered++
		if !s.start.IsZero() {
			late = append(late, float64(s.start.Sub(s.due).Microseconds())/1000)
		}
		if s.err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = s.err.Error()
			}
			continue
		}
		res.Accepted++
		if got, ok := recv.got(s.id); ok {
			res.Delivered++
			lat = append(lat, float64(got.Sub(s.acked).Microseconds())/1000)
		}
	}
	sort.Float64s(lat)
	sort.Float64s(late)
	res.P50, res.P95, res.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.LateP99 = percentile(late, 99)
	res.Achieved = float64(res.Accepted) / dur.Seconds()
	var xs, ys []float64
	half := mStart.Add(dur / 2)
	for _, s := range samples {
		if s.t.After(half) && s.t.Before(mEnd) {
			xs = append(xs, s.t.Sub(half).Seconds())
			ys = append(ys, float64(s.backlog))
		}
		if s.t.Before(mEnd) {
			res.BacklogEnd = s.backlog
		}
	}
	res.Slope = slope(xs, ys)
	res.PeakSessions = l.peakSessions()
	// Sustained: everything acknowledged and delivered, the offered rate
	// kept, the backlog not growing over the second half and, at the end,
	// under one second of traffic (a backlog still draining a stall is
	// not keeping up).
	res.Sustained = res.Errors == 0 && res.Delivered == res.Accepted && res.Achieved >= 0.95*rate &&
		res.Slope <= cfg.stepThreshold*rate && float64(res.BacklogEnd) <= rate
	res.Load = loadAvg()
	if !pipe.Running() {
		return res, fmt.Errorf("the pipeline died during the run:\n%s", out.String())
	}
	return res, nil
}

func report(r result) {
	verdict := "sustained"
	if !r.Sustained {
		verdict = "NOT sustained"
	}
	fmt.Printf("%-5s %-5s run %d  %5.0f msg/s: p50 %7.1f ms  p95 %7.1f  p99 %7.1f  max %7.1f | acked %d/%d delivered %d errors %d | achieved %.0f/s, backlog %+.1f/s (end %d), late p99 %.1f ms, sessions %d, drain %v | %s\n",
		r.Phase, r.Store, r.Run, r.Rate, r.P50, r.P95, r.P99, r.Max, r.Accepted, r.Offered, r.Delivered, r.Errors,
		r.Achieved, r.Slope, r.BacklogEnd, r.LateP99, r.PeakSessions, r.Drain.Round(time.Millisecond), verdict+", load "+r.Load)
	if r.FirstErr != "" {
		fmt.Printf("      first error: %s\n", r.FirstErr)
	}
}

// profile runs the pipeline in-process (bench/e2e/devprof) with a CPU
// profile during one run at the first rate.
func profile(ctx context.Context, cfg config, tmp string) error {
	bin := filepath.Join(tmp, "devprof")
	if err := build(filepath.Join(cfg.root, "bench"), bin, "./e2e/devprof"); err != nil {
		return err
	}
	prof, err := filepath.Abs(cfg.cpuprofile)
	if err != nil {
		return err
	}
	wrapper := filepath.Join(tmp, "devprof.sh")
	script := fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --cpuprofile %q\n", bin, prof)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return err
	}
	r, err := measure(ctx, cfg, wrapper, cfg.stores[0], "fixed", 1, cfg.rates[0], cfg.duration)
	if err != nil {
		return err
	}
	report(r)
	// measure stopped the pipeline (SIGTERM): the profile is written.
	fmt.Printf("\nCPU profile of the pipeline: %s\n", prof)
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", bin, prof)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	cmd = exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=35", bin, prof)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// defaultStores is the machine's temporary directory (its disk) and, when
// there is one, /dev/shm (memory: no disk latency, the pipeline's own cost).
func defaultStores() string {
	s := "disk=" + os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		s += ",tmpfs=/dev/shm"
	}
	return s
}

func parseStores(s string) ([]storeDir, error) {
	var out []storeDir
	for _, f := range strings.Split(s, ",") {
		name, dir, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("bad store %q: want NAME=DIR", f)
		}
		out = append(out, storeDir{name, dir})
	}
	if len(out) == 0 {
		return nil, errors.New("no stores")
	}
	return out, nil
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no rates")
	}
	return out, nil
}

// describe names the checkout: its commit, and whether files differ.
func describe(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return "unknown commit"
	}
	d := strings.TrimSpace(string(b))
	if strings.HasSuffix(d, "-dirty") {
		return "commit " + strings.TrimSuffix(d, "-dirty") + " with uncommitted changes in the tree (other sessions work in it)"
	}
	return "commit " + d
}

func build(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// machine describes the CPU, core count and Go version.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	nproc := runtime.NumCPU()
	if b, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			nproc = n
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB RAM", (kb+1<<19)>>20)
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, nproc %d%s%s, %s %s/%s", model, nproc, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// loadAvg returns the 1-minute load average, to show how busy the shared
// machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "e2e:", err)
	os.Exit(1)
}

// tailBuffer keeps the last 64 KiB of the pipeline's output.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 64<<10 {
		t.buf = t.buf[len(t.buf)-64<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
