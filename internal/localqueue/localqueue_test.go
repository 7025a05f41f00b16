package localqueue_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

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

// Messages another process writes into the queue's directory are picked up
// by a running consumer (letterbox replay while letterbox dev runs), with
// one worker or several idle ones (which once kept postponing each
// other's rescan forever).
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
	// Work handled at different moments leaves the idle workers' timers
	// spread across the rescan interval.
	for i := range 4 {
		if err := running.Send(ctx, fmt.Sprintf("warm-%d", i), []byte(`"warm"`), 0); err != nil {
			t.Fatal(err)
		}
		if b := <-rec.done; b != `"warm"` {
			t.Fatalf("got %s", b)
		}
		time.Sleep(250 * time.Millisecond)
	}

	other, err := localqueue.Open(ctx, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Send(ctx, "from-replay", []byte(`"replayed"`), 0); err != nil {
		t.Fatal(err)
	}
	other.Close()
	select {
	case b := <-rec.done:
		if b != `"replayed"` {
			t.Fatalf("got %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message written by another process was not consumed")
	}
}
