package scan_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/scan/scantest"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

func mail(body string) string { return scantest.Message(body) }

var env = scan.Envelope{From: "alice@sender.test", Rcpts: []string{"bob@example.test", "carol@example.test"}, IP: "192.0.2.1", Helo: "mx.sender.test", QueueID: "01TEST"}

// scanAll streams msg through a Tee as the gateway does and returns the
// verdicts.
func scanAll(t *testing.T, s *scan.Scanners, msg string) scan.Result {
	t.Helper()
	tee := s.Tee(context.Background(), env, strings.NewReader(msg))
	if _, err := io.Copy(io.Discard, tee); err != nil {
		t.Fatal(err)
	}
	return tee.Wait()
}

func TestRspamd(t *testing.T) {
	d := testenv.StartRspamd(t, testenv.RspamdOptions{})
	r, err := scan.NewRspamd(d.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := &scan.Scanners{Spam: r}
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
		small := &scan.Scanners{Spam: &scan.Rspamd{URL: d.URL(), MaxBytes: 100}}
		res := scanAll(t, small, mail(strings.Repeat("x", 200)))
		if !errors.Is(res.SpamErr, scan.ErrTooLarge) || res.Spam.Action != scan.Error {
			t.Fatalf("verdict %+v, err %v; want ErrTooLarge", res.Spam, res.SpamErr)
		}
	})
	t.Run("conformance", func(t *testing.T) { scantest.Spam(t, r, mail(testenv.GTUBE)) })
	t.Run("stopped", func(t *testing.T) {
		d.Stop()
		res := scanAll(t, s, mail("hello"))
		if res.SpamErr == nil || res.Spam.Action != scan.Error || res.Spam.Error == "" {
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
			c, err := scan.NewClamd(d.ClamdAddr())
			if err != nil {
				t.Fatal(err)
			}
			c.ChunkSize = 1000 // several chunks even for small messages
			s := &scan.Scanners{Virus: c}
			for _, tc := range []struct {
				name, body, result, sig string
			}{
				{"clean", "Lunch on Tuesday?", scan.Clean, ""},
				{"EICAR", testenv.EICAR, scan.Infected, "Eicar-Test-Signature.UNOFFICIAL"},
				{"test signature across chunks", strings.Repeat("a", 990) + testenv.TestVirus, scan.Infected, "Letterbox-Test-Signature.UNOFFICIAL"},
				{"base64 attachment", "", scan.Infected, "Eicar-Test-Signature.UNOFFICIAL"},
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
				if !errors.Is(res.VirusErr, scan.ErrTooLarge) || res.Virus.Result != scan.Error {
					t.Fatalf("verdict %+v, err %v; want ErrTooLarge", res.Virus, res.VirusErr)
				}
			})
			t.Run("conformance", func(t *testing.T) { scantest.Virus(t, c, mail(testenv.EICAR)) })
			t.Run("stopped", func(t *testing.T) {
				d.Stop()
				res := scanAll(t, s, mail("hello"))
				if res.VirusErr == nil || res.Virus.Result != scan.Error {
					t.Fatalf("verdict %+v, err %v; want an error", res.Virus, res.VirusErr)
				}
			})
		})
	}
}
