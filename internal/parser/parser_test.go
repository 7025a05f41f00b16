package parser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/letterboxmail/letterbox/internal/fault"
)

func parse(t *testing.T, raw string, opts Options) (*messageT, *memStore) {
	t.Helper()
	st := newMemStore()
	if opts.Store == nil {
		opts.Store = st
	}
	if opts.ID == "" {
		opts.ID = "ID"
	}
	m, err := Parse(context.Background(), strings.NewReader(raw), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, st
}

const withAttachments = "From: a@example.com\r\n" +
	"Subject: files\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
	"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
	"--b\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: inline; filename=notes.txt\r\n\r\nnotes\r\n" +
	"--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"Case file - X-42.eml\"\r\n\r\n" +
	"Subject: inner\r\nFrom: i@example.com\r\n\r\ninner body\r\n" +
	"--b--\r\n"

func TestParseErrors(t *testing.T) {
	storeDown := fault.Temporary(errors.New("s3 down"))
	tests := []struct {
		name      string
		r         io.Reader
		opts      func(*memStore) Options
		want      string
		temporary bool
	}{
		{"store without id", strings.NewReader(withAttachments),
			func(st *memStore) Options { return Options{Store: st} },
			"parser: Options.Store is set but Options.ID is empty", false},
		{"read error", io.MultiReader(strings.NewReader(withAttachments[:200]), iotest.ErrReader(errors.New("disk on fire"))),
			func(st *memStore) Options { return Options{ID: "ID", Store: st} },
			"parser: read message: disk on fire", true},
		{"store fails on an attachment", strings.NewReader(withAttachments),
			func(st *memStore) Options { st.failOn, st.err = "/0/", storeDown; return Options{ID: "ID", Store: st} },
			"parser: store attachments/ID/0/a.pdf: s3 down", true},
		{"store fails on a named text part", strings.NewReader(withAttachments),
			func(st *memStore) Options { st.failOn, st.err = "/1/", storeDown; return Options{ID: "ID", Store: st} },
			"parser: store attachments/ID/1/notes.txt: s3 down", true},
		{"store fails on an attached message", strings.NewReader(withAttachments),
			func(st *memStore) Options { st.failOn, st.err = "/2/", storeDown; return Options{ID: "ID", Store: st} },
			"parser: store attachments/ID/2/Case_file_-_X-42.eml: s3 down", true},
		{"store refuses permanently", strings.NewReader(withAttachments),
			func(st *memStore) Options {
				st.failOn, st.err = "/0/", fault.Permanent(errors.New("access denied"))
				return Options{ID: "ID", Store: st}
			},
			"parser: store attachments/ID/0/a.pdf: access denied", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStore()
			_, err := Parse(context.Background(), tt.r, tt.opts(st))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Parse error = %v, want %q", err, tt.want)
			}
			if fault.IsTemporary(err) != tt.temporary {
				t.Fatalf("IsTemporary = %v, want %v", fault.IsTemporary(err), tt.temporary)
			}
		})
	}
}

func TestParseCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Parse(ctx, strings.NewReader(withAttachments), Options{})
	if err == nil || err.Error() != "parser: context canceled" || !fault.IsTemporary(err) {
		t.Fatalf("Parse error = %v, want temporary \"parser: context canceled\"", err)
	}
}

func TestParseAttachmentsAndParts(t *testing.T) {
	m, st := parse(t, withAttachments, Options{})
	var got []string
	for _, a := range m.Attachments {
		got = append(got, fmt.Sprintf("%s %s %s %d %s", a.Path, a.Filename, a.ContentType, a.Size, a.Key))
	}
	want := []string{
		"2 a.pdf application/pdf 9 attachments/ID/0/a.pdf",
		"3 notes.txt text/plain 5 attachments/ID/1/notes.txt",
		"4 Case file - X-42.eml message/rfc822 49 attachments/ID/2/Case_file_-_X-42.eml",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("attachments:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s := m.Attachments[2].Message; s == nil || s.Subject != "inner" || s.From.Address != "i@example.com" {
		t.Fatalf("summary = %+v", s)
	}
	if string(st.objs["attachments/ID/2/Case_file_-_X-42.eml"]) != "Subject: inner\r\nFrom: i@example.com\r\n\r\ninner body" {
		t.Fatalf("stored message = %q", st.objs["attachments/ID/2/Case_file_-_X-42.eml"])
	}
	// The inline named text part is shown and listed.
	if m.Text != "see attached\nnotes" || len(m.Parts) != 2 {
		t.Fatalf("text = %q, parts = %d", m.Text, len(m.Parts))
	}
}

func TestLimits(t *testing.T) {
	t.Run("parts", func(t *testing.T) {
		m, _ := parse(t, withAttachments, Options{MaxParts: 3})
		want := "more than 3 MIME parts: 2 parts not parsed"
		if !contains(m.Warnings, want) || len(m.Attachments) != 1 {
			t.Fatalf("warnings %q, %d attachments; want %q and 1", m.Warnings, len(m.Attachments), want)
		}
	})
	t.Run("header", func(t *testing.T) {
		raw := "Subject: big\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("y", 90)+"\r\n", 10) + "To: late@example.com\r\n\r\nbody\r\n"
		m, _ := parse(t, raw, Options{MaxHeaderBytes: 500})
		want := "header: header larger than 500 bytes: 7 further fields ignored"
		if !contains(m.Warnings, want) || len(m.To) != 0 || m.Text != "body\n" || m.Subject != "big" {
			t.Fatalf("warnings %q, to %v, text %q", m.Warnings, m.To, m.Text)
		}
	})
	t.Run("depth", func(t *testing.T) {
		raw := "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ndeep\r\n--b--\r\n--a--\r\n"
		m, _ := parse(t, raw, Options{MaxDepth: 1})
		want := "part 1: nested deeper than 1; kept as an attachment"
		if !contains(m.Warnings, want) || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "multipart/mixed" {
			t.Fatalf("warnings %q, attachments %+v", m.Warnings, m.Attachments)
		}
	})
	t.Run("warnings", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=a\r\n\r\n")
		for i := 0; i < 150; i++ {
			fmt.Fprintf(&b, "--a\r\nContent-Type: text/plain; charset=x-unknown-%d\r\n\r\n\xe9\r\n", i)
		}
		m, _ := parse(t, b.String(), Options{})
		if len(m.Warnings) != maxWarnings || m.Warnings[maxWarnings-1] != "52 more warnings not listed" {
			t.Fatalf("%d warnings, last %q", len(m.Warnings), m.Warnings[len(m.Warnings)-1])
		}
	})
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestEnvelopeRecipients(t *testing.T) {
	m, _ := parse(t, "Subject: x\r\n\r\nbody\r\n", Options{Envelope: goldenEnvelope()})
	if len(m.Envelope.Recipients) != 2 || m.Envelope.Recipients[0].MailboxHash != "ticket-42" || m.Envelope.Recipients[1].MailboxHash != "" {
		t.Fatalf("recipients = %+v", m.Envelope.Recipients)
	}
	if !m.ReceivedAt.Equal(goldenTime) {
		t.Fatalf("ReceivedAt = %v, want the envelope's", m.ReceivedAt)
	}
}

// TestChunking feeds messages one byte at a time: the streaming readers
// must give the same result as with whole buffers.
func TestChunking(t *testing.T) {
	for _, path := range corpus(t) {
		raw := readFile(t, path)
		a, err := Parse(context.Background(), bytes.NewReader(raw), Options{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Parse(context.Background(), iotest.OneByteReader(bytes.NewReader(raw)), Options{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if ja, jb := encodeJSON(a), encodeJSON(b); !bytes.Equal(ja, jb) {
			t.Errorf("%s: one-byte reads differ:\n%s", path, diffLines(string(ja), string(jb)))
		}
	}
}

func TestBoundaryNotFoundLongBody(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=never\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", maxPreamble/18+100)
	m, _ := parse(t, raw, Options{})
	want := []string{`message: multipart/mixed: boundary "never" not found; body read as text/plain`,
		"message: body without parts cut at 1048576 bytes"}
	if strings.Join(m.Warnings, "|") != strings.Join(want, "|") || len(m.Text) < maxPreamble*17/18-100 {
		t.Fatalf("warnings %q, text of %d bytes", m.Warnings, len(m.Text))
	}
}
