package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// memShapeBytes is the size of each generated message: the largest message
// the README promises to handle.
const memShapeBytes = 150 << 20

// memLimitKiB is the peak resident set `letterbox parse` may reach for any
// of the shapes (issue 12 item 5).
const memLimitKiB = 256 << 10

// memShapes are the message shapes whose memory must stay bounded. Each
// writes about memShapeBytes of message to w.
var memShapes = []struct {
	name  string
	write func(w *bufio.Writer)
}{
	{"attachment", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: big attachment\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		base64Lines(w, memShapeBytes)
		w.WriteString("--b--\r\n")
	}},
	{"text", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: big text\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		textLines(w, memShapeBytes, "Grüße, this is a line of a very long plain text body.")
	}},
	{"html", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: big html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
		textLines(w, memShapeBytes, `<p>A <b>paragraph</b> with a <a href="https://example.org/x">link</a> &amp; text.</p>`)
		w.WriteString("</body></html>\r\n")
	}},
	{"2000 parts", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
		per := memShapeBytes / 2000
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(w, "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart %d\r\n", i)
			textLines(w, per, "a line of one of two thousand small text parts")
		}
		w.WriteString("--b--\r\n")
	}},
	{"nested", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: nested\r\n")
		const depth = 60
		for i := 0; i < depth; i++ {
			fmt.Fprintf(w, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		w.WriteString("Content-Type: text/plain\r\n\r\n")
		textLines(w, memShapeBytes, "deep inside sixty multiparts")
		for i := depth - 1; i >= 0; i-- {
			fmt.Fprintf(w, "--b%d--\r\n", i)
		}
	}},
	{"base64 text", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: base64 body\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		base64Lines(w, memShapeBytes)
	}},
	{"quoted-printable text", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: qp body\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		textLines(w, memShapeBytes, "Gr=C3=BC=C3=9Fe, a quoted-printable line with a soft break =\r\nand its continuation =3D done.")
	}},
	{"giant header", func(w *bufio.Writer) {
		w.WriteString("From: a@example.org\r\nSubject: giant header\r\nX-Giant: start")
		for n := 0; n < memShapeBytes; n += 64 {
			w.WriteString("\r\n folded continuation of one giant header field, 64 bytes")
		}
		w.WriteString("\r\n\r\nsmall body\r\n")
	}},
}

// textLines writes lines of line until n bytes are written.
func textLines(w *bufio.Writer, n int, line string) {
	for written := 0; written < n; written += len(line) + 2 {
		w.WriteString(line)
		w.WriteString("\r\n")
	}
}

// base64Lines writes base64 lines of 76 characters, n bytes in all, of
// text-like content (valid UTF-8).
func base64Lines(w *bufio.Writer, n int) {
	src := []byte(strings.Repeat("Some text that is base64 encoded. ", 2)[:57])
	line := base64.StdEncoding.EncodeToString(src) + "\r\n"
	for written := 0; written < n; written += len(line) {
		w.WriteString(line)
	}
}

// TestParseMemoryBounded runs `letterbox parse` on a 150 MiB message of
// each shape and fails when its peak resident set exceeds 256 MiB. It is a
// bound, not a timing: the peak is the kernel's maximum RSS of the child.
func TestParseMemoryBounded(t *testing.T) {
	for _, shape := range memShapes {
		t.Run(shape.name, func(t *testing.T) {
			cmd := exec.Command(bin, "parse", "--no-auth", "--id", "01MEMTEST", "-")
			cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() {
				w := bufio.NewWriterSize(stdin, 64<<10)
				shape.write(w)
				w.Flush()
				stdin.Close()
			}()
			out, _ := io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("parse: %v\n%s", err, stderr.String())
			}
			peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
			t.Logf("%s: peak RSS %d MiB, JSON %.1f MiB", shape.name, peak>>10, float64(out)/(1<<20))
			if peak > memLimitKiB {
				t.Errorf("%s: peak RSS %d MiB, over the %d MiB bound", shape.name, peak>>10, memLimitKiB>>10)
			}
		})
	}
}
