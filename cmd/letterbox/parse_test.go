package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/message"
)

const parseSample = "From: Alice <alice@example.org>\r\nTo: bob+tag@letterbox.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <1@example.org>\r\n\r\nHello <b>Bob</b>\r\n"

func TestParseCommand(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw", "01HMTEST.eml")
	os.MkdirAll(filepath.Dir(raw), 0o755)
	if err := os.WriteFile(raw, []byte(parseSample), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		stdin string
		check func(t *testing.T, m *message.Message, out string)
	}{
		{"file without auth", []string{"--no-auth", raw}, "", func(t *testing.T, m *message.Message, out string) {
			if m.ID != "01HMTEST" || m.RawKey != "raw/01HMTEST.eml" || m.Subject != "Grüße" || m.To[0].MailboxHash != "tag" || m.Auth != nil {
				t.Fatalf("got %+v", m)
			}
			if !strings.Contains(out, "\n  \"subject\": \"Grüße\",\n") || !strings.Contains(out, "Hello <b>Bob</b>") {
				t.Fatalf("output not indented or HTML escaped:\n%s", out)
			}
		}},
		{"stdin with envelope, resolver unreachable", []string{"-", "--client-ip", "192.0.2.1", "--mail-from", "alice@example.org", "--helo", "mx.example.org", "--rcpt", "bob+tag@letterbox.test", "--resolver", "127.0.0.1:1", "--dns-timeout", "200ms"}, parseSample,
			func(t *testing.T, m *message.Message, out string) {
				if m.Envelope.ClientIP != "192.0.2.1" || m.Envelope.Recipients[0].MailboxHash != "tag" || m.Auth == nil || m.Auth.SPF.Result != "temperror" {
					t.Fatalf("envelope %+v auth %+v", m.Envelope, m.Auth)
				}
			}},
		{"no envelope: spf none", []string{"--resolver", "127.0.0.1:1", "--dns-timeout", "200ms", "-"}, parseSample,
			func(t *testing.T, m *message.Message, out string) {
				if m.Auth.SPF.Result != "none" || len(m.Auth.DKIM) != 0 || m.Auth.DMARC.Result != "temperror" {
					t.Fatalf("auth %+v", m.Auth)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runParse(context.Background(), tt.args, strings.NewReader(tt.stdin), &out); err != nil {
				t.Fatal(err)
			}
			var m message.Message
			if err := json.Unmarshal(out.Bytes(), &m); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			tt.check(t, &m, out.String())
		})
	}
}

func TestParseCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.eml")
	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no file", []string{"--no-auth"}, parseUsage, 2},
		{"two files", []string{"a.eml", "b.eml"}, parseUsage, 2},
		{"unknown flag", []string{"--frobnicate", "a.eml"}, "flag provided but not defined: -frobnicate", 2},
		{"bad resolver", []string{"--resolver", "nowhere", "-"}, `mailauth: resolver "nowhere": want host:port`, 2},
		{"missing file", []string{"--no-auth", missing}, "open " + missing + ": no such file or directory", 1},
		{"body limit not a number", []string{"--no-auth", "--max-body-bytes", "1MiB", "-"}, `--max-body-bytes: "1MiB" is not a body limit in bytes (at least 1024, e.g. 1048576)`, 2},
		{"body limit too small", []string{"--no-auth", "--max-body-bytes", "100", "-"}, `--max-body-bytes: "100" is not a body limit in bytes (at least 1024, e.g. 1048576)`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runParse(context.Background(), tt.args, strings.NewReader(""), &out)
			if err == nil || err.Error() != tt.want || exitCode(err) != tt.code {
				t.Fatalf("error = %v (exit %d), want %q (exit %d)", err, exitCode(err), tt.want, tt.code)
			}
		})
	}
	// A failing input reports the file name and the parser's error.
	err := runParse(context.Background(), []string{"--no-auth", "-"}, iotestErrReader{}, &bytes.Buffer{})
	if err == nil || err.Error() != "-: parser: read message: stdin closed" || exitCode(err) != 1 {
		t.Fatalf("error = %v, want \"-: parser: read message: stdin closed\"", err)
	}
	var ee *exitError
	if err := runParse(context.Background(), nil, nil, &bytes.Buffer{}); !errors.As(err, &ee) {
		t.Fatalf("usage error is not an exitError: %v", err)
	}
}

func TestParseMaxBodyBytes(t *testing.T) {
	raw := "Content-Type: text/plain\r\n\r\n" + strings.Repeat("0123456789abcde\n", 1000) // 16,000 bytes
	parseWith := func(args ...string) *message.Message {
		t.Helper()
		var out bytes.Buffer
		if err := runParse(context.Background(), append([]string{"--no-auth"}, append(args, "-")...), strings.NewReader(raw), &out); err != nil {
			t.Fatal(err)
		}
		var m message.Message
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	if m := parseWith(); m.Truncated || len(m.Text) != 16000 {
		t.Fatalf("default limit: truncated %v, text %d bytes", m.Truncated, len(m.Text))
	}
	t.Setenv("LETTERBOX_MAX_BODY_BYTES", "4096")
	if m := parseWith(); !m.Truncated || len(m.Parts[0].Content) != 4096 || m.Parts[0].Size != 16000 {
		t.Fatalf("env limit: truncated %v, content %d bytes", m.Truncated, len(m.Parts[0].Content))
	}
	if m := parseWith("--max-body-bytes", "8192"); len(m.Parts[0].Content) != 8192 {
		t.Fatalf("flag over env: content %d bytes", len(m.Parts[0].Content))
	}
	t.Setenv("LETTERBOX_MAX_BODY_BYTES", "lots")
	err := runParse(context.Background(), []string{"--no-auth", "-"}, strings.NewReader(raw), &bytes.Buffer{})
	if err == nil || err.Error() != `LETTERBOX_MAX_BODY_BYTES: "lots" is not a body limit in bytes (at least 1024, e.g. 1048576)` || exitCode(err) != 2 {
		t.Fatalf("bad env: %v", err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("stdin closed") }

// dev and replay take the same body limit, refused the same way.
func TestMaxBodyBytesRefusedByDevAndReplay(t *testing.T) {
	const want = `--max-body-bytes: "12" is not a body limit in bytes (at least 1024, e.g. 1048576)`
	for _, args := range [][]string{
		{"dev", "--max-body-bytes", "12", "--store", "file://" + t.TempDir()},
		{"replay", "--max-body-bytes", "12", "--store", "file://" + t.TempDir(), "--dry-run", "01JK"},
	} {
		_, stderr, code := run(t, args...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q", args[0], code, stderr)
		}
	}
}
