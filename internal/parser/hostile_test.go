package parser

import (
	"fmt"
	"strings"
	"testing"
)

// TestHostileMessages is the hostile-message table of issue 7, at the
// default limits: each message parses without error, keeps what it can,
// and says in warnings what it could not.
func TestHostileMessages(t *testing.T) {
	nested := func(depth int) string {
		var b strings.Builder
		b.WriteString("From: a@example.com\r\nSubject: deep\r\n")
		for i := 0; i < depth; i++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("Content-Type: text/plain\r\n\r\nat the bottom\r\n")
		for i := depth - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\r\n", i)
		}
		return b.String()
	}
	manyParts := func(n int) string {
		var b strings.Builder
		b.WriteString("From: a@example.com\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\nfirst\r\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f%d.bin\r\n\r\nx\r\n", i)
		}
		b.WriteString("--p--\r\n")
		return b.String()
	}
	rfc822Chain := func(depth int) string {
		var b strings.Builder
		for i := 0; i < depth; i++ {
			fmt.Fprintf(&b, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i)
		}
		b.WriteString("Subject: core\r\n\r\ncore body\r\n")
		return b.String()
	}
	tests := []struct {
		name string
		raw  string
		// warning is a substring one of the warnings must contain.
		warning string
		check   func(t *testing.T, m *messageT)
	}{
		{"nesting 1000 deep", nested(1000), fmt.Sprintf("nested deeper than %d", DefaultMaxDepth), func(t *testing.T, m *messageT) {
			if m.Subject != "deep" {
				t.Errorf("subject %q", m.Subject)
			}
		}},
		{"5000 parts", manyParts(5000), fmt.Sprintf("more than %d MIME parts", DefaultMaxParts), func(t *testing.T, m *messageT) {
			if strings.TrimSpace(m.Text) != "first" || len(m.Attachments) == 0 || len(m.Attachments) > DefaultMaxParts {
				t.Errorf("text %q, %d attachments", m.Text, len(m.Attachments))
			}
		}},
		{"message/rfc822 inside itself 200 times", rfc822Chain(200), "nested deeper than", func(t *testing.T, m *messageT) {
			if m.Subject != "level 0" {
				t.Errorf("subject %q", m.Subject)
			}
		}},
		{"2 MiB of header fields", "Subject: huge\r\n" + strings.Repeat("X-Junk: "+strings.Repeat("j", 200)+"\r\n", 10000) + "\r\nbody\r\n",
			"header larger than", func(t *testing.T, m *messageT) {
				if m.Subject != "huge" || strings.TrimSpace(m.Text) != "body" {
					t.Errorf("subject %q text %q", m.Subject, m.Text)
				}
			}},
		{"one 1 MiB header line", "Subject: " + strings.Repeat("s", 1<<20+10) + "\r\n\r\nbody\r\n", "header", nil},
		{"broken base64", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8g!!!d29ybGQ=\r\n", "base64", func(t *testing.T, m *messageT) {
			if !strings.HasPrefix(m.Text, "Hello ") {
				t.Errorf("text %q", m.Text)
			}
		}},
		{"broken quoted-printable", "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =ZZ =\r\n", "quoted-printable", func(t *testing.T, m *messageT) {
			if !strings.HasPrefix(m.Text, "café") {
				t.Errorf("text %q", m.Text)
			}
		}},
		{"unknown charset", "Content-Type: text/plain; charset=x-martian\r\n\r\n\xe9t\xe9\r\n", "x-martian", nil},
		{"missing closing boundary", "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\nunfinished\r\n", "closing boundary missing", func(t *testing.T, m *messageT) {
			if strings.TrimSpace(m.Text) != "unfinished" {
				t.Errorf("text %q", m.Text)
			}
		}},
		{"NUL bytes everywhere", "Subject: a\x00b\r\nFrom: x\x00@example.com\r\n\r\nbo\x00dy\r\n", "NUL", nil},
		{"encoded-word bomb", "Subject: " + strings.Repeat("=?utf-8?B?w6k=?= ", 20000) + "\r\n\r\nx\r\n", "", func(t *testing.T, m *messageT) {
			if !strings.HasPrefix(m.Subject, "éé") {
				t.Errorf("subject starts %q", m.Subject[:min(10, len(m.Subject))])
			}
		}},
		{"header only, no body", "Subject: only\r\nFrom: a@example.com\r\n", "", func(t *testing.T, m *messageT) {
			if m.Subject != "only" {
				t.Errorf("subject %q", m.Subject)
			}
		}},
		{"empty input", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := parse(t, tt.raw, Options{})
			if tt.warning != "" {
				found := false
				for _, w := range m.Warnings {
					if strings.Contains(w, tt.warning) {
						found = true
					}
				}
				if !found {
					t.Fatalf("warnings %q lack %q", m.Warnings, tt.warning)
				}
			}
			if tt.check != nil {
				tt.check(t, m)
			}
			if m.Size != int64(len(tt.raw)) {
				t.Errorf("size %d, want %d", m.Size, len(tt.raw))
			}
		})
	}
}
