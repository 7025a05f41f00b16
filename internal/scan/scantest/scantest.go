// Package scantest is the conformance suite of the scanners
// (scan.SpamScanner, scan.VirusScanner): what the gateway relies on from
// any of them, whatever it talks to. Its own test runs it against
// scanners that each break one rule, and checks that it fails them.
package scantest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/scan"
)

// Message returns a small RFC 5322 message whose body is body.
func Message(body string) string {
	return "From: Alice <alice@sender.test>\r\nTo: bob@example.test\r\nSubject: scantest\r\n" +
		"Date: Sun, 6 Dec 2026 14:00:00 +0000\r\nMessage-ID: <scantest@sender.test>\r\n\r\n" + body + "\r\n"
}

// spamActions are rspamd's actions.
var spamActions = []string{"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"}

var env = scan.Envelope{From: "alice@sender.test", Rcpts: []string{"bob@example.test"}, IP: "192.0.2.1", Helo: "mx.sender.test", QueueID: "01SCANTEST"}

// Spam runs the suite on a spam scanner; positive is a message it must
// answer "reject" for (GTUBE for rspamd).
func Spam(t *testing.T, s scan.SpamScanner, positive string) {
	check := func(ctx context.Context, r io.Reader) (any, error) {
		v, err := s.CheckSpam(ctx, env, r)
		if v == nil {
			return nil, err
		}
		return v, err
	}
	t.Run("Clean", func(t *testing.T) {
		v, err := s.CheckSpam(context.Background(), env, strings.NewReader(Message("Lunch on Tuesday?")))
		if err != nil || v == nil {
			t.Fatalf("verdict %+v, err %v", v, err)
		}
		if !slices.Contains(spamActions, v.Action) || v.Action == "reject" || v.Scanner == "" {
			t.Errorf("verdict %+v: want an action of rspamd's other than reject, and the scanner's name", v)
		}
	})
	t.Run("Positive", func(t *testing.T) {
		v, err := s.CheckSpam(context.Background(), env, strings.NewReader(positive))
		if err != nil || v == nil || v.Action != "reject" || v.Score < v.RequiredScore || v.Scanner == "" {
			t.Fatalf("verdict %+v, err %v; want reject", v, err)
		}
	})
	common(t, check)
}

// Virus runs the suite on a virus scanner; infected is a message it must
// find a signature in (EICAR).
func Virus(t *testing.T, s scan.VirusScanner, infected string) {
	check := func(ctx context.Context, r io.Reader) (any, error) {
		v, err := s.ScanVirus(ctx, r)
		if v == nil {
			return nil, err
		}
		return v, err
	}
	t.Run("Clean", func(t *testing.T) {
		v, err := s.ScanVirus(context.Background(), strings.NewReader(Message("Lunch on Tuesday?")))
		if err != nil || v == nil || v.Result != scan.Clean || len(v.Signatures) != 0 || v.Scanner == "" {
			t.Fatalf("verdict %+v, err %v; want clean, with the scanner's name", v, err)
		}
	})
	t.Run("Positive", func(t *testing.T) {
		v, err := s.ScanVirus(context.Background(), strings.NewReader(infected))
		if err != nil || v == nil || v.Result != scan.Infected || len(v.Signatures) == 0 || v.Scanner == "" {
			t.Fatalf("verdict %+v, err %v; want infected, naming a signature", v, err)
		}
	})
	common(t, check)
}

// common checks how a scanner treats its input: the rules scan.Tee relies
// on.
func common(t *testing.T, check func(ctx context.Context, r io.Reader) (any, error)) {
	// Larger than socket buffers, so that a scanner that answers before
	// reading is seen.
	big := Message(strings.Repeat("Lunch on Tuesday? Bring the minutes.\r\n", 8000))

	t.Run("ReadsTheWholeMessage", func(t *testing.T) {
		r := &countingReader{r: strings.NewReader(big)}
		v, err := check(context.Background(), r)
		if err != nil || v == nil {
			t.Fatalf("verdict %+v, err %v", v, err)
		}
		if n := r.n.Load(); n != int64(len(big)) {
			t.Errorf("read %d of %d bytes before its verdict: a verdict must be about the whole message", n, len(big))
		}
	})
	t.Run("BrokenBodyIsAnError", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader(big[:len(big)/2]), errReader{})
		v, err := check(context.Background(), r)
		if err == nil || v != nil {
			t.Errorf("verdict %+v, err %v: a message whose data broke off must get an error, not a verdict", v, err)
		}
	})
	t.Run("ContextEnds", func(t *testing.T) {
		// As scan.Tee's pipe does when a scanner's deadline passes: the
		// data stops, the context ends, and the read fails.
		ctx, cancel := context.WithCancel(context.Background())
		r := &stallingReader{r: strings.NewReader(big[:64<<10]), ctx: ctx, cancel: cancel}
		type answer struct {
			v   any
			err error
		}
		done := make(chan answer, 1)
		go func() {
			v, err := check(ctx, r)
			done <- answer{v, err}
		}()
		select {
		case a := <-done:
			if a.err == nil || a.v != nil {
				t.Errorf("verdict %+v, err %v after its context ended", a.v, a.err)
			}
		case <-time.After(10 * time.Second):
			t.Error("no answer 10 s after the context ended: a scanner must give up when its deadline passes")
		}
	})
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ErrBroken is the error of a message whose data broke off.
var ErrBroken = errors.New("scantest: the message data broke off")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, ErrBroken }

// stallingReader gives its prefix, then ends the context and fails once
// it has ended.
type stallingReader struct {
	r      io.Reader
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *stallingReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.cancel()
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	return n, err
}
