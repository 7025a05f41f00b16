package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime"

	"github.com/letterboxmail/letterbox/internal/parser"
)

// benchCorpus is the mixed corpus of `make bench-parse`: every test message
// of internal/parser/testdata (client-shaped and malformed, mostly small) plus larger messages as they
// arrive in practice: a 1 MiB PDF attachment, a 300 KiB HTML newsletter, a
// long quoted-printable reply thread and a forwarded message with images.
func benchCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := filepath.Glob("../../internal/parser/testdata/*.eml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no internal/parser/testdata/*.eml: %v", err)
	}
	var msgs [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	rnd := mrand.New(mrand.NewPCG(1, 2))
	blob := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		s := base64.StdEncoding.EncodeToString(b)
		var out strings.Builder
		for len(s) > 76 {
			out.WriteString(s[:76] + "\r\n")
			s = s[76:]
		}
		out.WriteString(s + "\r\n")
		return out.String()
	}
	words := strings.Fields("the quick brown fox jumps over the lazy dog grüße naïve café déjà vu 日本語 テキスト Привет мир")
	text := func(n int) string {
		var b strings.Builder
		col := 0
		for b.Len() < n {
			w := words[rnd.IntN(len(words))]
			b.WriteString(w + " ")
			if col += len(w) + 1; col > 70 {
				b.WriteString("\r\n")
				col = 0
			}
		}
		return b.String()
	}
	msgs = append(msgs, []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: contract\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the PDF.\r\n"+
		"--b\r\nContent-Type: application/pdf; name=contract.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"+blob(1<<20)+"--b--\r\n"))
	var html strings.Builder
	for html.Len() < 300<<10 {
		fmt.Fprintf(&html, "<tr><td class=\"c\"><a href=\"https://news.example/item/%d\">%s</a></td><td>%s</td></tr>\r\n", html.Len(), text(40), text(120))
	}
	msgs = append(msgs, []byte("From: news@example.com\r\nTo: b@example.com\r\nSubject: newsletter\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><table>"+html.String()+"</table></body></html>\r\n"))
	var thread strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&thread, "On Mon, Jan %d, 2024 at 10:00 AM Person %d <p%d@example.com> wrote:\r\n", i+1, i, i)
		for _, l := range strings.Split(text(1500), "\r\n") {
			thread.WriteString(strings.Repeat("> ", i%4+1) + l + "\r\n")
		}
	}
	msgs = append(msgs, []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: Re: long thread\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
		qpEncode(thread.String())+"\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
		qpEncode("<div>"+strings.ReplaceAll(thread.String(), "\r\n", "<br>\r\n")+"</div>")+"\r\n--alt--\r\n"))
	msgs = append(msgs, []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: Fwd: photos\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nfyi\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n"+
		"From: c@example.com\r\nSubject: photos\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>"+text(2000)+"</p>\r\n"+
		"--r\r\nContent-Type: image/jpeg\r\nContent-ID: <i1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"+blob(150<<10)+
		"--r\r\nContent-Type: image/jpeg\r\nContent-ID: <i2>\r\nContent-Transfer-Encoding: base64\r\n\r\n"+blob(150<<10)+"--r--\r\n--o--\r\n"))
	return msgs
}

// qpEncode is a minimal quoted-printable encoder for the benchmark corpus.
func qpEncode(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\r\n") {
		col := 0
		for i := 0; i < len(line); i++ {
			c := line[i]
			enc := string(c)
			if c == '=' || c >= 0x7f || c < 0x20 {
				enc = fmt.Sprintf("=%02X", c)
			}
			if col+len(enc) > 75 {
				b.WriteString("=\r\n")
				col = 0
			}
			b.WriteString(enc)
			col += len(enc)
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// BenchmarkParse measures throughput (MB/s over the whole mixed corpus) and
// allocations per message of this parser and of enmime, the common Go
// choice, on the same messages in the same run. Neither stores
// attachments nor authenticates; ours still hashes every attachment and
// derives stripped text, parts and summaries.
func BenchmarkParse(b *testing.B) {
	msgs := benchCorpus(b)
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	run := func(b *testing.B, parse func([]byte) error) {
		b.SetBytes(int64(total))
		b.ReportAllocs()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, m := range msgs {
				if err := parse(m); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*len(msgs)), "allocs/msg")
	}
	b.Run("letterbox", func(b *testing.B) {
		run(b, func(m []byte) error {
			_, err := parser.Parse(context.Background(), bytes.NewReader(m), parser.Options{ID: "bench"})
			return err
		})
	})
	b.Run("enmime", func(b *testing.B) {
		run(b, func(m []byte) error {
			_, err := enmime.ReadEnvelope(bytes.NewReader(m))
			return err
		})
	})
}
