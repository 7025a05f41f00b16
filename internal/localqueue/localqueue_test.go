package localqueue_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/localqueue"
)

// recorder is a handler that fails each message a given number of times.
type recorder struct {
	mu       sync.Mutex
	failures map[string]int
	seen     map[string][]int // receive counts per message
	q        *localqueue.Queue
	delay    time.Duration
	done     chan string
}

func (r *recorder) handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, m := range ev.Records {
		n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
		r.mu.Lock()
		r.seen[m.Body] = append(r.seen[m.Body], n)
		fail := r.failures[m.Body] >= n
		r.mu.Unlock()
		if m.EventSource != "aws:sqs" || m.ReceiptHandle == "" {
			panic("record is not shaped like SQS's")
		}
		if fail {
			if err := r.q.ChangeVisibility(ctx, m.ReceiptHandle, r.delay); err != nil {
				panic(err)
			}
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
			continue
		}
		r.done <- m.Body
	}
	return resp, nil
}

func TestRetriesUntilSuccessAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{failures: map[string]int{`"a"`: 2, `"b"`: 0}, seen: map[string][]int{}, q: q, delay: 10 * time.Millisecond, done: make(chan string, 10)}
	if err := q.Send(ctx, "a", []byte(`"a"`), 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, "a", []byte(`"a"`), 0); err != nil { // duplicate id: ignored
		t.Fatal(err)
	}
	if err := q.Send(ctx, "b", []byte(`"b"`), 0); err != nil {
		t.Fatal(err)
	}
	// A "later" message survives a restart before it is due.
	if err := q.Send(ctx, "c", []byte(`"c"`), time.Hour); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { q.Run(runCtx, 2, rec.handle); close(ran) }()
	got := map[string]bool{}
	for !got[`"a"`] || !got[`"b"`] {
		select {
		case b := <-rec.done:
			got[b] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v delivered", got)
		}
	}
	stop()
	<-ran
	q.Close()
	rec.mu.Lock()
	if s := rec.seen[`"a"`]; len(s) != 3 || s[0] != 1 || s[2] != 3 {
		t.Fatalf("receive counts of a = %v, want [1 2 3]", s)
	}
	rec.mu.Unlock()

	q2, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if q2.Len() != 1 {
		t.Fatalf("after restart %d messages queued, want 1 (c)", q2.Len())
	}
	rec.q = q2
	// Make c due now, as if its hour had passed while stopped.
	if err := q2.ChangeVisibility(ctx, "c#0", 0); err != nil {
		t.Fatal(err)
	}
	runCtx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	go q2.Run(runCtx2, 1, rec.handle)
	select {
	case b := <-rec.done:
		if b != `"c"` {
			t.Fatalf("got %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("c never delivered after restart")
	}
}

// TestMain lets the test binary be the other process of
// TestPicksUpMessagesFromAnotherProcess.
func TestMain(m *testing.M) {
	if dir := os.Getenv("LOCALQUEUE_SEND_DIR"); dir != "" {
		q, err := localqueue.Open(context.Background(), dir, "test")
		if err == nil {
			err = q.Send(context.Background(), "from-replay", []byte(`"replayed"`), 0)
		}
		if err == nil {
			err = q.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// A message another process sends into the queue's directory is picked
// up by a running consumer (letterbox replay while letterbox dev runs),
// with one worker or several idle ones.
func TestPicksUpMessagesFromAnotherProcess(t *testing.T) {
	for _, workers := range []int{1, 8} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) { testPicksUp(t, workers) })
	}
}

func testPicksUp(t *testing.T, workers int) {
	dir := t.TempDir()
	ctx := context.Background()
	running, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	rec := &recorder{failures: map[string]int{}, seen: map[string][]int{}, q: running, done: make(chan string, 1)}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go running.Run(runCtx, workers, rec.handle)
	if err := running.Send(ctx, "warm", []byte(`"warm"`), 0); err != nil {
		t.Fatal(err)
	}
	if b := <-rec.done; b != `"warm"` {
		t.Fatalf("got %s", b)
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOCALQUEUE_SEND_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the other process: %v\n%s", err, out)
	}
	select {
	case b := <-rec.done:
		if b != `"replayed"` {
			t.Fatalf("got %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message sent by another process was not consumed")
	}
}

// TestTwoConsumersNeverShareAMessage runs two consumers on one queue
// directory, each with its own database connection as two processes
// have: every message is handled exactly once.
func TestTwoConsumersNeverShareAMessage(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var mu sync.Mutex
	handled := map[string]int{}
	all := make(chan struct{})
	const n = 200
	handle := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ev.Records {
			handled[m.MessageId]++
		}
		if len(handled) == n {
			select {
			case <-all:
			default:
				close(all)
			}
		}
		return events.SQSEventResponse{}, nil
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		q, err := localqueue.Open(ctx, dir, "test")
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		wg.Go(func() { q.Run(runCtx, 4, handle) })
	}
	sender, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for i := range n {
		if err := sender.Send(ctx, fmt.Sprintf("m%03d", i), []byte("{}"), 0); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every message was handled")
	}
	stop()
	wg.Wait()
	for id, k := range handled {
		if k != 1 {
			t.Errorf("%s handled %d times", id, k)
		}
	}
	if sender.Len() != 0 {
		t.Errorf("%d messages left", sender.Len())
	}
}

// TestDeadLettersSurviveRestart: dead letters are kept on disk, in id
// order, for inspection and redrive.
func TestDeadLettersSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := (localqueue.Deliveries{Queue: q}).DeadLetter(ctx, delivery.Job{ID: "m.route.1"}); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetterBody(ctx, "a-raw", []byte(`{"raw":true}`)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q2, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	dead, err := q2.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || string(dead[0]) != `{"raw":true}` || !strings.Contains(string(dead[1]), `"m.route.1"`) {
		t.Fatalf("dead letters = %q", dead)
	}
}

// TestStopDuringReceiveLosesNoReceive stops consumers at every moment,
// also in the middle of a receive: every receive the queue counted must
// have reached the handler (else its message would wait out a visibility
// timeout nobody started).
func TestStopDuringReceiveLosesNoReceive(t *testing.T) {
	ctx := context.Background()
	q, err := localqueue.Open(ctx, t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Send(ctx, "m", []byte("{}"), 0); err != nil {
		t.Fatal(err)
	}
	handled := 0
	fail := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		handled += len(ev.Records)
		for _, r := range ev.Records {
			if n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"]); n != handled {
				t.Fatalf("receive %d handed over as receive %d: a receive was lost", handled, n)
			}
		}
		return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "m"}}}, nil
	}
	for i := range 300 {
		if err := q.ChangeVisibility(ctx, "m#0", 0); err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { q.Run(runCtx, 1, fail); close(done) }()
		time.AfterFunc(time.Duration(i%50)*20*time.Microsecond, stop)
		<-done
	}
}
