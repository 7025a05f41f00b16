package scan

import (
	"context"
	"errors"
	"io"
	"net"
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

// scanAll streams msg through a Tee as the gateway does and returns the
// verdicts.
func scanAll(t *testing.T, s *Scanners, msg string) Result {
	t.Helper()
	tee := s.Tee(context.Background(), env, strings.NewReader(msg))
	if _, err := io.Copy(io.Discard, tee); err != nil {
		t.Fatal(err)
	}
	return tee.Wait()
}

func TestRspamd(t *testing.T) {
	d := testenv.StartRspamd(t, testenv.RspamdOptions{})
	r, err := NewRspamd(d.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := &Scanners{Spam: r}
	t.Run("GTUBE is rejected", func(t *testing.T) {
		res := scanAll(t, s, mail(testenv.GTUBE))
		if res.SpamErr != nil || res.Spam.Action != "reject" || res.Spam.Scanner != "rspamd" || res.Spam.Score < res.Spam.RequiredScore {
			t.Fatalf("verdict %+v, err %v", res.Spam, res.SpamErr)
		}
		if len(res.Spam.Symbols) == 0 || res.Spam.Symbols[0].Name != "GTUBE" {
			t.Errorf("symbols %+v, want GTUBE", res.Spam.Symbols)
		}
	})
	t.Run("clean mail", func(t *testing.T) {
		// Without network, rspamd adds a few points for names it cannot
		// resolve; far from the reject score.
		res := scanAll(t, s, mail("Lunch on Tuesday?"))
		if res.SpamErr != nil || res.Spam.Action == "reject" || res.Spam.RequiredScore <= 0 || res.Spam.Score >= res.Spam.RequiredScore {
			t.Fatalf("verdict %+v, err %v", res.Spam, res.SpamErr)
		}
	})
	t.Run("envelope in headers", func(t *testing.T) {
		// rspamd compares the envelope with the headers: these symbols
		// need the From and Rcpt request headers.
		res := scanAll(t, s, mail("Lunch on Tuesday?"))
		for _, want := range []string{"FROM_EQ_ENVFROM", "TO_MATCH_ENVRCPT_ALL"} {
			found := false
			for _, sym := range res.Spam.Symbols {
				found = found || sym.Name == want
			}
			if !found {
				t.Errorf("no %s in %+v: the envelope headers did not arrive", want, res.Spam.Symbols)
			}
		}
	})
	t.Run("over the size limit", func(t *testing.T) {
		small := &Scanners{Spam: &Rspamd{URL: d.URL(), MaxBytes: 100}}
		res := scanAll(t, small, mail(strings.Repeat("x", 200)))
		if !errors.Is(res.SpamErr, ErrTooLarge) || res.Spam.Action != Error {
			t.Fatalf("verdict %+v, err %v; want ErrTooLarge", res.Spam, res.SpamErr)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		d.Stop()
		res := scanAll(t, s, mail("hello"))
		if res.SpamErr == nil || res.Spam.Action != Error || res.Spam.Error == "" {
			t.Fatalf("verdict %+v, err %v; want an error verdict", res.Spam, res.SpamErr)
		}
	})
}

func TestClamd(t *testing.T) {
	for _, unix := range []bool{false, true} {
		name := "tcp"
		if unix {
			name = "unix"
		}
		t.Run(name, func(t *testing.T) {
			d := testenv.StartClamd(t, testenv.ClamdOptions{Unix: unix, StreamMaxLength: 1 << 20})
			c, err := NewClamd(d.ClamdAddr())
			if err != nil {
				t.Fatal(err)
			}
			c.ChunkSize = 1000 // several chunks even for small messages
			s := &Scanners{Virus: c}
			for _, tc := range []struct {
				name, body, result, sig string
			}{
				{"clean", "Lunch on Tuesday?", Clean, ""},
				{"EICAR", testenv.EICAR, Infected, "Eicar-Test-Signature.UNOFFICIAL"},
				{"test signature across chunks", strings.Repeat("a", 990) + testenv.TestVirus, Infected, "Letterbox-Test-Signature.UNOFFICIAL"},
				{"base64 attachment", "", Infected, "Eicar-Test-Signature.UNOFFICIAL"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					msg := mail(tc.body)
					if tc.name == "base64 attachment" {
						msg = "From: a@sender.test\r\nTo: b@example.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
							"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
							"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=e.com\r\n" +
							"Content-Transfer-Encoding: base64\r\n\r\n" +
							"WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNU\r\nLUZJTEUhJEgrSCo=\r\n--b--\r\n"
					}
					res := scanAll(t, s, msg)
					if res.VirusErr != nil || res.Virus.Result != tc.result {
						t.Fatalf("verdict %+v, err %v; want %s", res.Virus, res.VirusErr, tc.result)
					}
					if tc.sig != "" && (len(res.Virus.Signatures) != 1 || res.Virus.Signatures[0] != tc.sig) {
						t.Errorf("signatures %v, want [%s]", res.Virus.Signatures, tc.sig)
					}
				})
			}
			t.Run("over StreamMaxLength", func(t *testing.T) {
				res := scanAll(t, s, mail(strings.Repeat("0123456789abcdef\r\n", 1<<17)))
				if !errors.Is(res.VirusErr, ErrTooLarge) || res.Virus.Result != Error {
					t.Fatalf("verdict %+v, err %v; want ErrTooLarge", res.Virus, res.VirusErr)
				}
			})
			t.Run("stopped", func(t *testing.T) {
				d.Stop()
				res := scanAll(t, s, mail("hello"))
				if res.VirusErr == nil || res.Virus.Result != Error {
					t.Fatalf("verdict %+v, err %v; want an error", res.Virus, res.VirusErr)
				}
			})
		})
	}
}

// TestDeadline: a scanner that stops reading, or never answers, is cut off
// at its deadline; the data still reaches the store whole.
func TestDeadline(t *testing.T) {
	// A clamd that accepts and never reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
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
		Virus:   &Clamd{Network: "tcp", Address: ln.Addr().String()},
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
