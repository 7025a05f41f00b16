package parser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// lines returns n lines "line 0000 ...\r\n" of 20 bytes each.
func lines(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "line %04d of text.\r\n", i)
	}
	return b.String()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestLargeTextBodyStored(t *testing.T) {
	body := lines(500) // 10,000 bytes
	raw := "From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
	m, st := parse(t, raw, Options{MaxBodyBytes: 1000})
	if len(m.Parts) != 1 {
		t.Fatalf("parts = %+v", m.Parts)
	}
	p := m.Parts[0]
	// The prefix ends at the last line end within the limit: 50 lines.
	want := strings.ReplaceAll(lines(50), "\r\n", "\n")
	if !p.Truncated || !m.Truncated || p.Content != want || m.Text != want {
		t.Fatalf("part = %+v, message truncated %v, text %q", p, m.Truncated, m.Text)
	}
	if p.Key != "attachments/ID/part-1/body.txt" || p.Size != 10000 || p.SHA256 != sum([]byte(body)) {
		t.Fatalf("key %q size %d sha %s", p.Key, p.Size, p.SHA256)
	}
	if string(st.objs[p.Key]) != body || st.meta[p.Key]["content-type"] != "text/plain; charset=utf-8" {
		t.Fatalf("stored %d bytes, meta %v", len(st.objs[p.Key]), st.meta[p.Key])
	}
	if w := strings.Join(m.Warnings, "|"); w != "part 1: text/plain part of 10000 bytes: the JSON keeps its first 1000" {
		t.Fatalf("warnings = %q", w)
	}
	if len(m.Attachments) != 0 {
		t.Fatalf("attachments = %+v", m.Attachments)
	}
}

func TestLargeBodyAtTheLimit(t *testing.T) {
	raw := "Content-Type: text/plain\r\n\r\n" + strings.Repeat("x", 1000)
	m, st := parse(t, raw, Options{MaxBodyBytes: 1000})
	if p := m.Parts[0]; p.Truncated || m.Truncated || p.Key != "" || len(p.Content) != 1000 || len(st.objs) != 0 {
		t.Fatalf("a part of exactly the limit: %+v", p)
	}
	m, _ = parse(t, raw+"y", Options{MaxBodyBytes: 1000})
	if p := m.Parts[0]; !p.Truncated || p.Size != 1001 || p.Content != strings.Repeat("x", 1000) {
		t.Fatalf("a byte over the limit: truncated %v size %d content %d bytes", p.Truncated, p.Size, len(p.Content))
	}
}

func TestLargeHTMLBodyQuotedPrintable(t *testing.T) {
	html := strings.Repeat("<p>Gr=C3=BC=C3=9Fe =\r\nfrom a long newsletter</p>\r\n", 200)
	raw := "From: a@example.org\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nshort text\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + html +
		"--b--\r\n"
	m, st := parse(t, raw, Options{MaxBodyBytes: 2000})
	if len(m.Parts) != 2 || m.Parts[0].Truncated || !m.Parts[1].Truncated {
		t.Fatalf("parts = %+v", m.Parts)
	}
	p := m.Parts[1]
	// The line end before the delimiter belongs to the delimiter.
	decoded := strings.TrimSuffix(strings.Repeat("<p>Grüße from a long newsletter</p>\r\n", 200), "\r\n")
	if p.Key != "attachments/ID/part-2/body.html" || string(st.objs[p.Key]) != decoded || p.Size != int64(len(decoded)) {
		t.Fatalf("key %q stored %q", p.Key, st.objs[p.Key][:80])
	}
	if !strings.HasPrefix(m.HTML, "<p>Grüße from a long newsletter</p>\n") || !strings.HasSuffix(m.HTML, "</p>\n") || len(m.HTML) > 2000 {
		t.Fatalf("html = %q…%q (%d bytes)", m.HTML[:40], m.HTML[len(m.HTML)-20:], len(m.HTML))
	}
	if m.Text != "short text" || !m.Truncated {
		t.Fatalf("text = %q", m.Text)
	}
}

func TestLargeBodyCutAtACharacter(t *testing.T) {
	// No line end: the prefix ends before a character the limit splits.
	raw := "Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("ü", 1000)
	m, _ := parse(t, raw, Options{MaxBodyBytes: 1001})
	p := m.Parts[0]
	if !p.Truncated || p.Content != strings.Repeat("ü", 500) || !utf8.ValidString(p.Content) {
		t.Fatalf("content of %d bytes, valid %v", len(p.Content), utf8.ValidString(p.Content))
	}
	if len(m.Warnings) != 1 {
		t.Fatalf("warnings = %q", m.Warnings)
	}
}

func TestBodyBudgetAcrossParts(t *testing.T) {
	// Six parts of 900 bytes under a limit of 1000: the message keeps
	// 4000 bytes of text in all, so the fifth part keeps a prefix and the
	// sixth none; both are stored whole.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < 6; i++ {
		b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\n" + strings.Repeat("abcdefgh\n", 100) + "\r\n")
	}
	b.WriteString("--b--\r\n")
	m, st := parse(t, b.String(), Options{MaxBodyBytes: 1000})
	var got []string
	for _, p := range m.Parts {
		got = append(got, fmt.Sprintf("%s:%d:%v:%s", p.Path, len(p.Content), p.Truncated, p.Key))
	}
	want := "1:900:false:|2:900:false:|3:900:false:|4:900:false:|5:396:true:attachments/ID/part-5/body.txt|6:0:true:attachments/ID/part-6/body.txt"
	if strings.Join(got, "|") != want {
		t.Fatalf("parts\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if len(st.objs["attachments/ID/part-6/body.txt"]) != 900 {
		t.Fatalf("part 6 stored: %d bytes", len(st.objs["attachments/ID/part-6/body.txt"]))
	}
}

func TestLargeNamedTextPart(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; name=log.txt\r\nContent-Disposition: inline; filename=log.txt\r\n\r\n" + lines(100) + "\r\n--b--\r\n"
	m, st := parse(t, raw, Options{MaxBodyBytes: 500})
	if len(m.Attachments) != 1 || len(st.objs) != 1 {
		t.Fatalf("attachments = %+v, stored %d objects", m.Attachments, len(st.objs))
	}
	a, p := m.Attachments[0], m.Parts[0]
	if a.Key != p.Key || a.Key != "attachments/ID/part-1/body.txt" || a.Size != 2000 || a.SHA256 != p.SHA256 || a.Filename != "log.txt" {
		t.Fatalf("attachment %+v, part %+v", a, p)
	}
}

func TestLargeBodyStoreFails(t *testing.T) {
	st := newMemStore()
	st.failOn, st.err = "/part-1/", fault.Temporary(errors.New("s3 down"))
	raw := "Content-Type: text/plain\r\n\r\n" + lines(100)
	_, err := Parse(context.Background(), strings.NewReader(raw), Options{ID: "ID", Store: st, MaxBodyBytes: 100})
	if err == nil || err.Error() != "parser: store attachments/ID/part-1/body.txt: s3 down" || !fault.IsTemporary(err) {
		t.Fatalf("Parse = %v", err)
	}
}

func TestLargeBodyWithoutStore(t *testing.T) {
	// `letterbox parse` without --store: the part is still cut and
	// described, with no key.
	raw := "Content-Type: text/plain\r\n\r\n" + lines(100)
	m, err := Parse(context.Background(), strings.NewReader(raw), Options{MaxBodyBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Parts[0]; !p.Truncated || p.Key != "" || p.Size != 2000 || p.Content != strings.ReplaceAll(lines(5), "\r\n", "\n") {
		t.Fatalf("part = %+v", p)
	}
}
