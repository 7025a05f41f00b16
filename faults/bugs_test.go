package faults_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/letterboxmail/letterbox/faults"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// Bugs the fault tests found in the pipeline, open until fixed. Each has a
// test reproducing it deterministically; docs/reliability.md describes
// them. While a bug is listed, its test and any loss of the fault scenario
// that matches its signature are reported loudly as KNOWN BUG and skipped,
// so the rest of the suite keeps guarding; with LETTERBOX_FAULTS_STRICT=1
// they fail. Remove a bug from the list once it is fixed: its test then
// guards against its return.
var knownBugs = map[string]string{
	bugParsedNotQueued: "localserve: a crash after ingest wrote parsed/<id>.json and before every delivery job was queued loses the message's deliveries (the restart scan skips messages with parsed/)",
	bugPrefixedEvents:  "localserve/ingest: with a store prefix (s3://BUCKET/PREFIX), S3 notifications name PREFIX/raw/<id>.eml and are ignored",
}

const (
	bugParsedNotQueued = "parsed-not-queued"
	bugPrefixedEvents  = "prefixed-events"
)

// expectFailure reports problems: as failures, or, for a listed bug
// outside strict mode, as a loud KNOWN BUG skip.
func expectFailure(t *testing.T, bug string, problems []string) {
	t.Helper()
	desc, known := knownBugs[bug]
	if len(problems) == 0 {
		if known {
			t.Logf("known bug %q no longer reproduces here: remove it from knownBugs (faults/bugs_test.go) and docs/reliability.md", bug)
		}
		return
	}
	if !known || os.Getenv("LETTERBOX_FAULTS_STRICT") != "" {
		for _, p := range problems {
			t.Error(p)
		}
		return
	}
	for _, p := range problems {
		t.Log(p)
	}
	fmt.Fprintf(os.Stderr, "\n*** KNOWN BUG %s (%s): %d problem(s), see the test log and docs/reliability.md ***\n*** LETTERBOX_FAULTS_STRICT=1 makes this a failure ***\n\n", bug, desc, len(problems))
	t.Skipf("KNOWN BUG %s: %s", bug, desc)
}

func routesFor(t *testing.T, dir, url string) string {
	p := filepath.Join(dir, "routes.yaml")
	y := fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: all
    match: {recipient: "*@example.test"}
    actions:
      - webhook: {url: "%s/hook", secret: "%s", timeout: 1s}
        retry: {attempts: 100, initial: 50ms, max: 500ms}
`, url, secretA)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDelivered waits until recv got message id, or d passes.
func waitDelivered(recv *faults.Receiver, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, q := range recv.Requests() {
			if q.MessageID == id && q.Delivered() {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestRestartAfterCrashBetweenParseAndQueue puts the store in the state a
// SIGKILL leaves between two steps of ingest.(*Handler).Process: the raw
// message is stored (the sender got 250) and Parse has written
// parsed/<id>.json (KeepParsed, as `letterbox dev` sets it), but Route has
// not queued the delivery jobs yet. The next start must deliver it.
//
// It does not: localserve.(*Server).recover queues only raw messages
// without parsed/<id>.json, and the raw-event queue of `letterbox dev` is
// in memory, so nothing ever routes this message again. The fault
// scenario hits this window on most runs (one of a message's jobs queued,
// the next not, or none).
func TestRestartAfterCrashBetweenParseAndQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs letterbox dev; skipped in -short")
	}
	bin := letterbox(t)
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	st, err := filestore.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := ulid.Make().String()
	to := []string{"crash@example.test"}
	body := faults.Compose("a@faults.example", to, faults.Token(0, 0, 1), 2000, 1)
	raw := "Received: from mta.faults.test ([127.0.0.1]) by mx.faults.test with ESMTP id " + id + "; Sun, 22 Nov 2026 16:40:00 +0000\r\n" + string(body)
	env := message.Envelope{MailFrom: "a@faults.example", RcptTo: to, ClientIP: "127.0.0.1", HELO: "mta.faults.test", ReceivedAt: time.Now().UTC(), Source: "gateway"}
	if _, err := store.PutRaw(ctx, st, id, env, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	h := &ingest.Handler{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), KeepParsed: true}
	if _, err := h.Parse(ctx, store.RawKey(id)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// -- SIGKILL here: Route never ran. --

	recv, err := faults.NewReceiver("A", secretA)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	pipe, err := faults.NewPipeline(bin, "--store", "file://"+storeDir, "--routes", routesFor(t, dir, recv.URL()), "--no-auth")
	if err != nil {
		t.Fatal(err)
	}
	pipe.Log = childLog(t)
	if err := pipe.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	defer pipe.Kill()
	var problems []string
	if !waitDelivered(recv, id, 10*time.Second) {
		problems = append(problems, fmt.Sprintf("message %s, stored (250 sent) and parsed before a crash, was not delivered within 10s of the restart: "+
			"localserve.(*Server).recover skips it because parsed/%s.json exists, and ingest.(*Handler).Process writes parsed/ (Parse) before Route queues the jobs", id, id))
	}
	expectFailure(t, bugParsedNotQueued, problems)
}

// TestPrefixedStoreNotifications runs the pipeline on a prefix of a
// bucket (s3://BUCKET/PREFIX, which --store documents) with the S3
// server's own notifications (--external-events). A message must be
// delivered without waiting for a restart.
//
// It is not: the notification names the object's full key,
// PREFIX/raw/<id>.eml; localserve.(*Server).s3Events passes it to
// store.IDFromRawKey, which accepts only raw/<id>.eml, and answers
// {"queued":0}. ingest.(*Handler).HandleS3 skips such keys the same way
// ("ignoring object outside raw/"), so a prefixed store on AWS would
// ignore every event as well.
func TestPrefixedStoreNotifications(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw; skipped in -short")
	}
	bin := letterbox(t)
	dir := t.TempDir()
	pipe, err := faults.NewPipeline(bin)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := faults.NewRelay("http://"+pipe.HTTPAddr+"/dev/s3-events", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	v := testenv.StartVersity(t, testenv.VersityOptions{EventWebhookURL: relay.URL()})
	v.SetEnv(t)
	recv, err := faults.NewReceiver("A", secretA)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	pipe.Args = []string{"--store", v.StoreURL("mail"), "--routes", routesFor(t, dir, recv.URL()), "--queue", filepath.Join(dir, "queue"), "--no-auth", "--external-events"}
	pipe.Log = childLog(t)
	ctx := context.Background()
	if err := pipe.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	defer pipe.Kill()
	mta := &faults.MTA{Addr: pipe.SMTPAddr, Timeout: 10 * time.Second}
	m := faults.Message{From: "a@faults.example", To: []string{"p@example.test"},
		Build: func(tok string) []byte {
			return faults.Compose("a@faults.example", []string{"p@example.test"}, tok, 1500, 2)
		}}
	atts := mta.Deliver(ctx, m)
	a := atts[len(atts)-1]
	if a.Outcome != faults.Accepted {
		t.Fatalf("not accepted: %+v", a)
	}
	var problems []string
	if !waitDelivered(recv, a.ID, 10*time.Second) {
		problems = append(problems, fmt.Sprintf("message %s on %s was not delivered within 10s although versitygw sent %d notification(s) and the relay forwarded %d to /dev/s3-events: "+
			"the notification's key is mail/raw/%s.eml, which store.IDFromRawKey (localserve.(*Server).s3Events, ingest.(*Handler).HandleS3) does not take for a raw message",
			a.ID, v.StoreURL("mail"), relay.Stats().Received, relay.Stats().Forwarded, a.ID))
	}
	expectFailure(t, bugPrefixedEvents, problems)
}

// childLog collects a child's output and shows it when the test fails
// or is skipped as a known bug.
func childLog(t *testing.T) io.Writer {
	l := &lockedBuf{}
	t.Cleanup(func() {
		if t.Failed() || t.Skipped() {
			t.Logf("letterbox dev output:\n%s", l.String())
		}
	})
	return l
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
