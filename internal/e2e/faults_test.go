package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/e2e"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

const (
	secretA = "whsec_ZmF1bHRzLXJlY2VpdmVyLUEtc2VjcmV0LTAxMjM0NTY3"
	secretB = "whsec_ZmF1bHRzLXJlY2VpdmVyLUItc2VjcmV0LTg5YWJjZGVm"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// letterbox returns the letterbox binary: $LETTERBOX_BIN, or one built
// from this checkout once per test run.
func letterbox(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LETTERBOX_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		root, err := testenv.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "letterbox-faults-bin-"); err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(buildDir, "letterbox")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/letterbox")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/letterbox: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// envDuration reads a duration from the environment.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, s, err)
		}
		return d
	}
	return def
}

// seed returns $LETTERBOX_FAULTS_SEED or a fresh seed, logged so a run can
// be repeated.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("LETTERBOX_FAULTS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LETTERBOX_FAULTS_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// writeRoutes writes the fault scenario's routes: every message goes to
// receiver A (route "all"); messages with a b-* recipient also go to
// receiver B (route "bees"). Retries are short so that recoveries show
// within the test.
func writeRoutes(t *testing.T, dir, urlA, urlB string) string {
	p := filepath.Join(dir, "routes.yaml")
	y := fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: all
    match: {recipient: "*@example.test"}
    actions:
      - webhook: {url: "%s/hook/a", secret: "%s", timeout: 1s}
        retry: {attempts: 50, initial: 50ms, max: 1s}
  - name: bees
    match: {recipient: "b-*@example.test"}
    actions:
      - webhook: {url: "%s/hook/b", secret: "%s", timeout: 1s}
        retry: {attempts: 50, initial: 50ms, max: 1s}
`, urlA, secretA, urlB, secretB)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testMessage is the seq-th message of a sender: mostly small, some medium,
// a few larger than a delivery job may carry inline (the parsed message
// then travels through the store); every third to a b-* recipient, every
// seventh to two recipients.
func testMessage(sender, seq int) e2e.Message {
	s := uint64(sender)<<32 | uint64(seq)
	rng := rand.New(rand.NewPCG(s, 42))
	to := []string{fmt.Sprintf("u%d.%d@example.test", sender, seq)}
	if seq%3 == 0 {
		to = []string{fmt.Sprintf("b-%d.%d@example.test", sender, seq)}
	}
	if seq%7 == 0 {
		to = append(to, fmt.Sprintf("b-cc%d@example.test", sender))
	}
	size := 600 + rng.IntN(1500)
	switch n := rng.IntN(100); {
	case n < 4:
		size = 260<<10 + rng.IntN(100<<10)
	case n < 25:
		size = 10<<10 + rng.IntN(40<<10)
	}
	from := fmt.Sprintf("sender%d@faults.example", sender)
	return e2e.Message{Sender: sender, Seq: seq, From: from, To: to,
		Build: func(token string) []byte { return e2e.Compose(from, to, token, size, s) }}
}

// timeline runs fault events in the test goroutine, in time order.
type timeline struct {
	t     *testing.T
	start time.Time
	log   io.Writer
	evs   []event
}

type event struct {
	at   time.Duration
	name string
	do   func()
}

func (tl *timeline) at(d time.Duration, name string, do func()) {
	tl.evs = append(tl.evs, event{d, name, do})
	sort.SliceStable(tl.evs, func(i, j int) bool { return tl.evs[i].at < tl.evs[j].at })
}

func (tl *timeline) logf(format string, args ...any) {
	fmt.Fprintf(tl.log, "%8.3fs  %s\n", time.Since(tl.start).Seconds(), fmt.Sprintf(format, args...))
}

func (tl *timeline) run() {
	for len(tl.evs) > 0 {
		ev := tl.evs[0]
		tl.evs = tl.evs[1:]
		if d := time.Until(tl.start.Add(ev.at)); d > 0 {
			time.Sleep(d)
		}
		tl.logf("%s", ev.name)
		ev.do()
	}
}

// TestNoAcknowledgedMessageIsLost is the fault scenario of
// docs/reliability.md: a stream of messages from several MTA-like senders
// into `letterbox dev` on versitygw, while the pipeline is killed and
// restarted, the S3 server goes away and comes back, receivers fail, hang
// and refuse connections, and storage events arrive twice. Then every
// message answered 250 must be stored complete and delivered everywhere,
// and nothing answered 4xx may be visible.
func TestNoAcknowledgedMessageIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("fault scenario: runs the pipeline against versitygw for a minute; skipped in -short")
	}
	stream := envDuration(t, "LETTERBOX_FAULTS_DURATION", 60*time.Second)
	sd := seed(t)
	rng := rand.New(rand.NewPCG(sd, 1))
	t.Logf("seed %d (rerun with LETTERBOX_FAULTS_SEED=%d), stream %v", sd, sd, stream)
	bin := letterbox(t)
	out := t.ArtifactDir()
	work := t.TempDir()

	pipe, err := e2e.NewPipeline(bin)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := e2e.NewRelay("http://"+pipe.HTTPAddr+"/dev/s3-events", 0.2, sd)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	v := testenv.StartVersity(t, testenv.VersityOptions{EventWebhookURL: relay.URL()})
	v.SetEnv(t)
	recvA, err := e2e.NewReceiver("A", secretA)
	if err != nil {
		t.Fatal(err)
	}
	defer recvA.Close()
	recvB, err := e2e.NewReceiver("B", secretB)
	if err != nil {
		t.Fatal(err)
	}
	defer recvB.Close()
	receivers := map[string]*e2e.Receiver{"A": recvA, "B": recvB}

	// The bucket's root, as the AWS deployment uses it (see
	// TestPrefixedStoreNotifications for a prefix).
	storeURL := v.StoreURL("")
	pipeLog := mustCreate(t, filepath.Join(out, "pipeline.log"))
	pipe.Log = pipeLog
	pipe.Args = []string{"--store", storeURL, "--routes", writeRoutes(t, work, recvA.URL(), recvB.URL()),
		"--queue", filepath.Join(work, "queue"), "--no-auth", "--external-events", "--hostname", "mx.faults.test"}
	defer pipe.Kill()
	ctx := t.Context()
	if err := pipe.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	tlog := mustCreate(t, filepath.Join(out, "faults.log"))
	tl := &timeline{t: t, start: time.Now(), log: io.MultiWriter(tlog, testWriter{t})}

	// The senders: MTA-like, retrying, every attempt logged.
	var (
		mu       sync.Mutex
		attempts []e2e.Attempt
	)
	clientLog := mustCreate(t, filepath.Join(out, "client.jsonl"))
	enc := json.NewEncoder(clientLog)
	mta := &e2e.MTA{Addr: pipe.SMTPAddr, Timeout: 10 * time.Second, Backoff: e2e.Backoff,
		Record: func(a e2e.Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			enc.Encode(a)
			mu.Unlock()
		}}
	streamEnd := tl.start.Add(stream)
	retryCtx, cancelRetries := context.WithDeadline(ctx, streamEnd.Add(60*time.Second))
	defer cancelRetries()
	const senders = 4
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for seq := 0; time.Now().Before(streamEnd); seq++ {
				mta.Deliver(retryCtx, testMessage(s, seq))
				time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
			}
		})
	}

	// Duplicate storage events all along, besides the relay's own.
	stopDup := make(chan struct{})
	var dupWG sync.WaitGroup
	dupWG.Go(func() {
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopDup:
				return
			case <-tick.C:
				relay.Replay()
			}
		}
	})

	// The faults. A supervisor restarts the pipeline whenever it is down
	// and not held down, as systemd or ECS would.
	sup := &supervisor{pipe: pipe, ctx: ctx, logf: tl.logf, stop: make(chan struct{})}
	var supWG sync.WaitGroup
	supWG.Go(sup.run)
	var supOnce sync.Once
	stopSupervisor := func() { supOnce.Do(func() { close(sup.stop); supWG.Wait() }) }
	defer stopSupervisor()
	// The S3 outage: the pipeline keeps running through its first half
	// (the gateway must answer 451), then is killed and cannot start again
	// (its store is unreachable) until the S3 server is back.
	outage := time.Duration(6000+rng.IntN(3000)) * time.Millisecond
	outageAt := e2e.Window(rng, stream, 0.3, 0.6)
	tl.at(outageAt, fmt.Sprintf("stop versitygw for %v", outage), v.Stop)
	tl.at(outageAt+outage*6/10, "SIGKILL pipeline during the S3 outage", func() { sup.kill(0) })
	tl.at(outageAt+outage, "start versitygw", v.Start)
	// Four more SIGKILLs at random moments outside the outage, and one
	// graceful stop with deliveries pending.
	kills := 0
	for kills < 4 {
		at := e2e.Window(rng, stream, 0.05, 0.9)
		if at > outageAt-time.Second && at < outageAt+outage+time.Second {
			continue
		}
		kills++
		delay := time.Duration(rng.IntN(1500)) * time.Millisecond
		tl.at(at, fmt.Sprintf("SIGKILL pipeline, restart after %v", delay), func() { sup.kill(delay) })
	}
	at := e2e.Window(rng, stream, 0.05, 0.9)
	tl.at(at, "SIGTERM pipeline (graceful stop with deliveries pending), restart 200ms after it exits", func() { go sup.term(200 * time.Millisecond) })
	e2e.ScheduleReceiverFaults(t, rng, stream, receivers, tl.at)
	tl.at(stream, "end of the stream: no new messages; every fault healed", func() {})
	tl.run()
	// Heal whatever is still broken.
	v.Start()
	for _, r := range receivers {
		e2e.MustMode(t, r, e2e.OK)
	}
	for !pipe.Running() {
		time.Sleep(100 * time.Millisecond)
	}

	wg.Wait()
	tl.logf("senders done")
	close(stopDup)
	dupWG.Wait()

	// Wait until every acknowledged message reached every receiver it
	// should, or give up and let Check name what is missing.
	mu.Lock()
	acked := e2e.Acknowledged(attempts)
	mu.Unlock()
	// Stop when nothing moved for a while: a job whose record could not be
	// read during the outage waits out the queue's 30s visibility timeout.
	deadline := time.Now().Add(envDuration(t, "LETTERBOX_FAULTS_SETTLE", 90*time.Second))
	if missing := e2e.AwaitDelivered(acked, receivers, e2e.Expect, deadline, 45*time.Second); missing == 0 {
		tl.logf("every acknowledged message delivered")
	} else {
		tl.logf("gave up waiting: %d deliveries missing", missing)
	}
	stopSupervisor()
	pipe.Stop(30 * time.Second)

	var reqs []e2e.Request
	for _, name := range []string{"A", "B"} {
		reqs = append(reqs, receivers[name].Requests()...)
	}
	writeJSONL(t, filepath.Join(out, "receivers.jsonl"), reqs)
	st, closer, err := storeurl.Open(context.Background(), storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rep, err := e2e.Check(context.Background(), st, attempts, reqs, e2e.Expect)
	if err != nil {
		t.Fatal(err)
	}
	rs := relay.Stats()
	summary := fmt.Sprintf("%s\n%s\nfaults: %d SIGKILLs, 1 SIGTERM, %d starts in all, S3 outage %v, 6 receiver windows; storage events: %d from versitygw, %d duplicates injected, %d forwards failed (pipeline down)\n",
		rep.Summary(), rep.Details(), pipe.Kills(), pipe.Runs(), outage, rs.Received, rs.Duplicates, rs.Failed)
	os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary), 0o644)
	fmt.Print(summary)
	t.Logf("artifacts (logs of the client, receivers, pipeline and faults) in %s", out)
	if rep.Accepted == 0 {
		t.Fatal("no message was accepted at all")
	}
	n := 0
	for _, p := range rep.Problems {
		if strings.HasPrefix(p, "LOST: ") {
			continue // diagnosed below
		}
		if n++; n <= 50 {
			t.Error(p)
		}
	}
	if n > 50 {
		t.Errorf("... and %d more problems", n-50)
	}
	var known []string
	for _, lm := range rep.LostMessages {
		why, isKnown := diagnose(st, filepath.Join(work, "queue"), lm)
		msg := fmt.Sprintf("LOST: message %s (attempt %s), missing at %v: %s", lm.ID, lm.Token, sortedNames(lm.Missing), why)
		if isKnown {
			known = append(known, msg)
		} else {
			t.Error(msg)
		}
	}
	if t.Failed() {
		t.Logf("pipeline log tail:\n%s", tail(filepath.Join(out, "pipeline.log"), 40))
	}
	expectFailure(t, bugParsedNotQueued, known)
}

// diagnose says what the store and the queue hold of a lost message, and
// whether that is the signature of bugParsedNotQueued: stored and parsed,
// and for each missing delivery neither a record nor a queued job.
func diagnose(st store.Store, queueDir string, lm e2e.LostMessage) (string, bool) {
	ctx := context.Background()
	if lm.NotStored {
		return "not stored complete", false
	}
	if _, err := st.Stat(ctx, store.ParsedKey(lm.ID)); err != nil {
		return "stored, not parsed (" + err.Error() + ")", false
	}
	known := true
	var parts []string
	for _, recv := range sortedNames(lm.Missing) {
		job := delivery.JobID(lm.ID, lm.Missing[recv], 0)
		var state []string
		if _, err := st.Stat(ctx, store.DeliveryKey(lm.ID, job)); err == nil {
			state, known = append(state, "has a delivery record"), false
		}
		if _, err := os.Stat(filepath.Join(queueDir, "queue", job+".json")); err == nil {
			state, known = append(state, "is still queued"), false
		}
		if len(state) == 0 {
			state = []string{"was never queued"}
		}
		parts = append(parts, "job "+job+" "+strings.Join(state, ", "))
	}
	return "stored and parsed; " + strings.Join(parts, "; "), known
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// supervisor keeps the pipeline running, except while it is held down.
type supervisor struct {
	pipe *e2e.Pipeline
	ctx  context.Context
	logf func(string, ...any)
	stop chan struct{}

	mu   sync.Mutex
	hold time.Time
}

func (s *supervisor) run() {
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		s.mu.Lock()
		held := time.Now().Before(s.hold)
		s.mu.Unlock()
		if held || s.pipe.Running() {
			continue
		}
		start := time.Now()
		if err := s.pipe.Start(s.ctx, 30*time.Second); err != nil {
			s.logf("supervisor: start failed after %v: %s", time.Since(start).Round(time.Millisecond), firstLine(err))
			continue
		}
		s.logf("supervisor: pipeline running again (pid %d, ready in %v)", s.pipe.Pid(), time.Since(start).Round(time.Millisecond))
	}
}

func (s *supervisor) holdFor(d time.Duration) {
	s.mu.Lock()
	s.hold = time.Now().Add(d)
	s.mu.Unlock()
}

// kill crashes the pipeline and keeps it down for d.
func (s *supervisor) kill(d time.Duration) {
	s.holdFor(d)
	s.pipe.Kill()
}

// term stops the pipeline gracefully and keeps it down for d after it
// exited.
func (s *supervisor) term(d time.Duration) {
	s.holdFor(time.Hour)
	start := time.Now()
	s.pipe.Stop(30 * time.Second)
	s.logf("supervisor: pipeline stopped gracefully in %v", time.Since(start).Round(time.Millisecond))
	s.holdFor(d)
}

func mustCreate(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func writeJSONL[T any](t *testing.T, path string, xs []T) {
	f := mustCreate(t, path)
	enc := json.NewEncoder(f)
	for _, x := range xs {
		enc.Encode(x)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// testWriter sends the fault timeline to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
