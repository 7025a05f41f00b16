package smtpgw

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

// smuggled is what an attacker hides after a non-standard end of data,
// hoping that this server or the next one ends the message there and runs
// it as commands (CVE-2023-51764 class).
const smuggled = "MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n" +
	"From: admin@example.test\r\nSubject: smuggled\r\n\r\nhidden\r\n"

// TestSmuggling sends every end-of-data variant with a bare <CR> or <LF>
// (and bare newlines elsewhere): each gets 550 5.5.2, nothing is stored,
// and nothing after the variant is run as a command; over DATA the session
// ends there.
func TestSmuggling(t *testing.T) {
	variants := map[string]string{
		"LF.LF":       "\n.\n",
		"LF.CRLF":     "\n.\r\n",
		"CR.CR":       "\r.\r",
		"CRLF.LF":     "\r\n.\n",
		"CRLF.CR":     "\r\n.\r",
		"CR.CRLF":     "\r.\r\n",
		"CR.LF":       "\r.\n",
		"LF.CR":       "\n.\r",
		"CRLF.CRCRLF": "\r\n.\r\r\n",
		"CRCRLF.CRLF": "\r\r\n.\r\n",
		"CRLF.LFCRLF": "\r\n.\n\r\n",
		"bare LF":     "\nno dot here\r\n",
		"bare CR":     "\rno dot here\r\n",
	}
	h := startGateway(t, Config{})
	for name, v := range variants {
		for _, mode := range []string{"DATA", "BDAT"} {
			t.Run(mode+" "+name, func(t *testing.T) {
				c := dialRaw(t, h.addr)
				c.hello("attacker.test")
				c.envelope("attacker@remote.test", "someone@example.test")
				data := "From: attacker@remote.test\r\nSubject: carrier\r\n\r\nbody" + v + smuggled
				switch mode {
				case "DATA":
					c.cmd("DATA", 354, "")
					c.send(data + "\r\n.\r\nNOOP\r\n")
				case "BDAT":
					c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(data), data))
					c.send("NOOP\r\n")
				}
				c.expect(550, "5.5.2")
				if mode == "DATA" {
					// Where the data ended is in doubt: the session ends.
					c.expectClosed()
				} else {
					// BDAT counts bytes: the NOOP after the chunk is a
					// command and the session goes on.
					c.expect(250, "2.0.0")
				}
			})
		}
	}
	if keys := h.rawKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
	h.waitLog("transaction", "reason", reasonBareNewline)
	if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonBareNewline); got != float64(2*len(variants)) {
		t.Errorf("bare_newline rejections = %v, want %d", got, 2*len(variants))
	}
}

// TestBareNewlineAtStart: a bare newline in the first bytes of the data.
func TestBareNewlineAtStart(t *testing.T) {
	h := startGateway(t, Config{})
	for _, data := range []string{"\n", ".\n", "\r", ".\rX", "X\r"} {
		c := dialRaw(t, h.addr)
		c.hello("client.test")
		c.envelope("s@remote.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(data + "\r\n.\r\n")
		c.expect(550, "5.5.2")
		c.expectClosed()
	}
	if keys := h.rawKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
}

// TestDotStuffing: standard dot-stuffed data is unstuffed exactly, and a
// lone "." line in the content survives as a line.
func TestDotStuffing(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send("Subject: dots\r\n\r\n..\r\n...\r\n..x\r\n.y\r\nend\r\n.\r\n")
	body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
	if !bytes.HasSuffix(body, []byte("Subject: dots\r\n\r\n.\r\n..\r\n.x\r\ny\r\nend\r\n")) {
		t.Errorf("stored %q", body)
	}
	c.cmd("NOOP", 250, "2.0.0")
}

func TestDotReader(t *testing.T) {
	tests := []struct {
		in, out string
		err     error
	}{
		{".\r\n", "", nil},
		{"a\r\n.\r\n", "a\r\n", nil},
		{"..\r\n.\r\n", ".\r\n", nil},
		{"a\r\n..b\r\n.\r\nMAIL", "a\r\n.b\r\n", nil},
		{"a\r\n.\r\n.\r\n", "a\r\n", nil},
		{"a\nb\r\n.\r\n", "a", errBareLF},
		{"a\rb\r\n.\r\n", "a\r", errBareCR},
		{"a\r\n.\rb\r\n.\r\n", "a\r\n", errBareCR},
		{"a\r\n.\n", "a\r\n", errBareLF},
		{"a\r\r\n.\r\n", "a\r", errBareCR},
		{"a\r\n", "a\r\n", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		d := &dotReader{br: bufio.NewReader(strings.NewReader(tt.in))}
		out, err := io.ReadAll(d)
		if string(out) != tt.out || !errors.Is(err, tt.err) {
			t.Errorf("%q: got %q, %v; want %q, %v", tt.in, out, err, tt.out, tt.err)
		}
	}
}

// FuzzDotReader: whatever the input, the dotReader either refuses it or
// returns data without a bare newline that net/textproto's DotReader
// reads the same way, and it never reads past <CR><LF>.<CR><LF>.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "..\r\n.\r\n", "a\n.\n", "a\r\n.\r", "\r.\r", "x\r\n..\r\n.\r\nrest"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		d := &dotReader{br: bufio.NewReaderSize(r, 16)}
		out, err := io.ReadAll(d)
		if err != nil {
			return
		}
		if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\r")) ||
			bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare newline passed: %q", out)
		}
		consumed := len(in) - r.Len() - d.br.Buffered()
		if !bytes.HasSuffix(in[:consumed], []byte("\r\n.\r\n")) && string(in[:consumed]) != ".\r\n" {
			t.Fatalf("stopped after %q", in[:consumed])
		}
		ref, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(in[:consumed]))).DotReader())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ref, bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("textproto reads %q, we read %q", ref, out)
		}
	})
}
