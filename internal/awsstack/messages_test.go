//go:build awsstack

package awsstack

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// Message shapes of the memory and cost tests, written as a stream so that
// a 150 MiB message never sits in the test's memory.
type shape struct {
	Name string
	Size int64 // the message's size, near enough (within a line)
	// Kind: text (text/plain body), html (text/html body), attachment (a
	// short text part and one base64 attachment), parts (N small
	// text/plain parts).
	Kind  string
	Parts int
}

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// writeMessage writes a message of the shape with a Subject naming token.
func writeMessage(w io.Writer, s shape, token string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "From: Sender <alice@sender.test>\r\nTo: <hook@example.test>\r\nSubject: %s %s\r\nMessage-ID: <%s@sender.test>\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n", s.Name, token, token)
	const boundary = "b0undary-letterbox-awsstack"
	budget := s.Size - 512
	line := strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789 ", 2)[:74] + "\r\n"
	fill := func(n int64, html bool) {
		for written := int64(0); written < n; written += int64(len(line)) {
			if html {
				bw.WriteString("<p>" + line[:len(line)-9] + "</p>\r\n")
			} else {
				bw.WriteString(line)
			}
		}
	}
	switch s.Kind {
	case "text":
		bw.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		fill(budget, false)
	case "html":
		bw.WriteString("Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
		fill(budget, true)
		bw.WriteString("</body></html>\r\n")
	case "attachment":
		fmt.Fprintf(bw, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n", boundary, boundary)
		fmt.Fprintf(bw, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary)
		raw := make([]byte, 57)
		enc := make([]byte, base64.StdEncoding.EncodedLen(57))
		var x uint32 = 2463534242
		for written := int64(0); written < budget; written += int64(len(enc) + 2) {
			for i := range raw {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				raw[i] = byte(x)
			}
			base64.StdEncoding.Encode(enc, raw)
			bw.Write(enc)
			bw.WriteString("\r\n")
		}
		fmt.Fprintf(bw, "--%s--\r\n", boundary)
	case "parts":
		fmt.Fprintf(bw, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
		per := budget / int64(s.Parts)
		for i := range s.Parts {
			fmt.Fprintf(bw, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"part%d.txt\"\r\n\r\n", boundary, i)
			fill(per-250, false)
		}
		fmt.Fprintf(bw, "--%s--\r\n", boundary)
	default:
		return fmt.Errorf("unknown shape %q", s.Kind)
	}
	return bw.Flush()
}

// countingWriter counts bytes.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// sendSMTP sends one message of the shape to rcpt through the gateway and
// returns its size; the gateway's reply must be 250.
func sendSMTP(t *testing.T, addr, rcpt string, s shape, token string) int64 {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("sender.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	cw := &countingWriter{w: w}
	if err := writeMessage(cw, s, token); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("%s: DATA: %v", s.Name, err)
	}
	_ = c.Quit()
	return cw.n
}
