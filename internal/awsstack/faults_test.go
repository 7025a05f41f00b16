//go:build awsstack

package awsstack

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/e2e"
	"github.com/letterboxmail/letterbox/internal/sqslocal"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

const (
	secretA = "whsec_c2VjcmV0LWEtZm9yLXRoZS1hd3Mtc3RhY2stZmF1bHRz"
	secretB = "whsec_c2VjcmV0LWItZm9yLXRoZS1hd3Mtc3RhY2stZmF1bHRz"
)

// faultRoutes is the fault scenario's routes file (faults/ uses the same
// shape): every message to receiver A, b-* recipients also to B. 50
// attempts, the most the delivery queue's maxReceiveCount allows
// (internal/routing's MaxAttempts), outlast the receivers' failure windows
// many times over at a 20 s backoff.
func faultRoutes(urlA, urlB string) []byte {
	return []byte(fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: all
    match: {recipient: "*@example.test"}
    actions:
      - webhook: {url: "%s/hook/a", secret: "%s", timeout: 1s, allow_private_network: true}
        retry: {attempts: 50, initial: 1s, max: 20s}
  - name: bees
    match: {recipient: "b-*@example.test"}
    actions:
      - webhook: {url: "%s/hook/b", secret: "%s", timeout: 1s, allow_private_network: true}
        retry: {attempts: 50, initial: 1s, max: 20s}
`, urlA, secretA, urlB, secretB))
}

func faultMessage(sender, seq int) e2e.Message {
	s := uint64(sender)<<32 | uint64(seq)
	rng := rand.New(rand.NewPCG(s, 42))
	to := []string{fmt.Sprintf("u%d.%d@example.test", sender, seq)}
	if seq%3 == 0 {
		to = []string{fmt.Sprintf("b-%d.%d@example.test", sender, seq)}
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

// SQS time runs this much faster than the wall clock in the fault
// scenario, so that the queues' visibility timeouts (361 s raw, 721 s
// delivery) and the deliver function's backoff pass within the test.
const faultClockFactor = 20

// TestFaults is make test-faults' scenario on the deployed stack's stand-in:
// MTA-like senders stream mail into the gateway while the function
// processes are killed mid-invocation (Lambda replaces the execution
// environment), the gateway is killed and restarted (ECS replaces the
// task), versitygw stops for a while, and the webhook receivers fail, hang
// and refuse connections. Then every message answered 250 must be stored
// and delivered everywhere it is routed.
func TestFaults(t *testing.T) {
	stream := 50 * time.Second
	if v := os.Getenv("LETTERBOX_AWS_FAULTS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		stream = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LETTERBOX_AWS_FAULTS_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d (rerun with LETTERBOX_AWS_FAULTS_SEED=%d), stream %v", seed, seed, stream)

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
	bin, emu := artefacts(t)
	log := newTestLog(t, "stack")
	st := Start(t, Options{Template: templatePath(t), Params: map[string]string{"Domains": "example.test", "DnsResolver": newDNS(t)},
		Bin: bin, Emulator: emu, Routes: faultRoutes(recvA.URL(), recvB.URL()), Output: log,
		Clock: sqslocal.NewScaledClock(faultClockFactor)})
	tlog := &strings.Builder{}
	var tlMu sync.Mutex
	start := time.Now()
	logf := func(format string, args ...any) {
		line := fmt.Sprintf("%8.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		tlMu.Lock()
		tlog.WriteString(line)
		tlMu.Unlock()
		io.WriteString(log, "faults: "+line)
	}

	var (
		mu       sync.Mutex
		attempts []e2e.Attempt
	)
	mta := &e2e.MTA{Addr: st.Gateway.SMTPAddr, Timeout: 10 * time.Second, Backoff: e2e.Backoff,
		Record: func(a e2e.Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		}}
	streamEnd := start.Add(stream)
	ctx := context.Background()
	retryCtx, cancelRetries := context.WithDeadline(ctx, streamEnd.Add(60*time.Second))
	defer cancelRetries()
	const senders = 3
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for seq := 0; time.Now().Before(streamEnd); seq++ {
				mta.Deliver(retryCtx, faultMessage(s, seq))
				time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
			}
		})
	}

	// The faults, in time order.
	type event struct {
		at   time.Duration
		name string
		do   func()
	}
	var evs []event
	at := func(d time.Duration, name string, do func()) { evs = append(evs, event{d, name, do}) }
	window := func(lo, hi float64) time.Duration { return e2e.Window(rng, stream, lo, hi) }
	outage := time.Duration(5000+rng.IntN(3000)) * time.Millisecond
	outageAt := window(0.4, 0.6)
	at(outageAt, fmt.Sprintf("stop versitygw for %v", outage), st.Versity.Stop)
	at(outageAt+outage, "start versitygw", st.Versity.Start)
	gatewayKills := 0
	for range 2 {
		d := window(0.05, 0.35)
		at(d, "SIGKILL the gateway, restart after 500ms", func() {
			st.Gateway.Kill()
			gatewayKills++
			time.Sleep(500 * time.Millisecond)
			if err := st.Gateway.Start(ctx, 60*time.Second); err != nil {
				t.Errorf("gateway restart: %v", err)
			}
		})
	}
	functionKills := 0
	for _, id := range []string{"IngestFunction", "DeliverFunction"} {
		for range 3 {
			f := st.Functions[id]
			at(window(0.05, 0.95), "kill "+id+"'s execution environment", func() {
				f.Kill()
				functionKills++
			})
		}
	}
	e2e.ScheduleReceiverFaults(t, rng, stream, receivers, at)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	for _, e := range evs {
		if d := time.Until(start.Add(e.at)); d > 0 {
			time.Sleep(d) // the scenario's schedule
		}
		logf("%s", e.name)
		e.do()
	}
	st.Versity.Start()
	for _, r := range receivers {
		e2e.MustMode(t, r, e2e.OK)
	}
	wg.Wait()
	logf("senders done")

	mu.Lock()
	acked := e2e.Acknowledged(attempts)
	mu.Unlock()
	// Wait until every acknowledged message reached every receiver it
	// should, or nothing moved for long enough to name what is missing.
	if missing := e2e.AwaitDelivered(acked, receivers, e2e.Expect, time.Now().Add(4*time.Minute), 90*time.Second); missing == 0 {
		logf("every acknowledged message delivered")
	} else {
		logf("gave up waiting: %d deliveries missing", missing)
	}
	st.StopPollers()

	var reqs []e2e.Request
	for _, name := range []string{"A", "B"} {
		reqs = append(reqs, receivers[name].Requests()...)
	}
	st.Versity.SetEnv(t)
	store, closer, err := storeurl.Open(ctx, st.Versity.StoreURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rep, err := e2e.Check(ctx, store, attempts, reqs, e2e.Expect)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, inv := range st.Invocations() {
		if inv.Err != nil {
			failed++
		}
	}
	summary := fmt.Sprintf("%s\n%s\nfaults: %d execution environments killed, %d gateway SIGKILLs, S3 outage %v, 6 receiver windows; %d invocations, %d failed; SQS clock x%d\n",
		rep.Summary(), rep.Details(), functionKills, gatewayKills, outage, len(st.Invocations()), failed, faultClockFactor)
	fmt.Print(summary)
	writeArtifact("faults-summary.txt", summary+"\n"+tlog.String())
	if rep.Accepted == 0 {
		t.Fatal("no message was accepted at all")
	}
	for _, p := range rep.Problems {
		t.Error(p)
	}
	if rep.Lost != 0 {
		t.Errorf("%d acknowledged messages lost: %+v", rep.Lost, rep.LostMessages)
	}
}
