package scan

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

func mail(body string) string {
	return "From: Alice <alice@sender.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n" +
		"Date: Sun, 6 Dec 2026 14:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\n" + body + "\r\n"
}

var env = Envelope{From: "alice@sender.test", Rcpts: []string{"bob@example.test", "carol@example.test"}, IP: "192.0.2.1", Helo: "mx.sender.test", QueueID: "01TEST"}

// TestDeadline: a scanner that stops reading, or never answers, is cut off
// at its deadline; the data still reaches the store whole.
func TestDeadline(t *testing.T) {
	// A clamd that accepts and never reads.
	stalled := testenv.StalledListener(t)
	// An rspamd that reads the message and never answers.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	s := &Scanners{
		Spam:    &Rspamd{URL: srv.URL},
		Virus:   &Clamd{Network: "tcp", Address: stalled},
		Timeout: 300 * time.Millisecond,
	}
	big := mail(strings.Repeat("0123456789abcdef\r\n", 1<<16)) // 1.1 MiB: more than socket buffers hold
	tee := s.Tee(context.Background(), env, strings.NewReader(big))
	n, err := io.Copy(io.Discard, tee)
	if err != nil || n != int64(len(big)) {
		t.Fatalf("store got %d of %d bytes, err %v", n, len(big), err)
	}
	res := tee.Wait()
	if res.Virus.Result != Error || !errors.Is(res.VirusErr, errStalled) && !errors.Is(res.VirusErr, ErrTimeout) {
		t.Errorf("virus verdict %+v, err %v; want a timeout", res.Virus, res.VirusErr)
	}
	if res.Spam.Action != Error || !errors.Is(res.SpamErr, ErrTimeout) {
		t.Errorf("spam verdict %+v, err %v; want a timeout", res.Spam, res.SpamErr)
	}
}

func TestNewClamd(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
	}{
		{"tcp://127.0.0.1:3310", "tcp", "127.0.0.1:3310"},
		{"tcp://[::1]:3310", "tcp", "[::1]:3310"},
		{"unix:///run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
		{"127.0.0.1:3310", "", ""},
		{"tcp://127.0.0.1", "", ""},
		{"unix://relative/path", "", ""},
		{"http://x:1", "", ""},
	} {
		c, err := NewClamd(tc.in)
		if tc.network == "" {
			if err == nil {
				t.Errorf("NewClamd(%q) = %+v, want an error", tc.in, c)
			}
			continue
		}
		if err != nil || c.Network != tc.network || c.Address != tc.addr {
			t.Errorf("NewClamd(%q) = %+v, %v", tc.in, c, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:11333", "ftp://x", "http://"} {
		if _, err := NewRspamd(bad); err == nil {
			t.Errorf("NewRspamd(%q): want an error", bad)
		}
	}
}
