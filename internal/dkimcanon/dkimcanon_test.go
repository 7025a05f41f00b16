package dkimcanon

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

func TestParseAlgorithms(t *testing.T) {
	tests := []struct {
		c          string
		head, body Algorithm
	}{
		{"", Simple, Simple},
		{"relaxed", Relaxed, Simple},
		{"relaxed/relaxed", Relaxed, Relaxed},
		{"simple/relaxed", Simple, Relaxed},
		{"relaxed/", Relaxed, Simple},
		{"/relaxed", Simple, Relaxed},
		{"Relaxed/nofws", Simple, Simple}, // names are case-sensitive; unknown is simple
	}
	for _, tt := range tests {
		h, b := ParseAlgorithms(tt.c)
		if h != tt.head || b != tt.body {
			t.Errorf("ParseAlgorithms(%q) = %v/%v, want %v/%v", tt.c, h, b, tt.head, tt.body)
		}
	}
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name, raw, relaxed string
	}{
		{"plain", "Subject: hello\r\n", "subject:hello\r\n"},
		{"name case and space before colon", "SUBJECT \t: hello\r\n", "subject:hello\r\n"},
		{"white space runs", "To:  a \t b   c  \r\n", "to:a b c\r\n"},
		{"folding", "Subject: one\r\n\ttwo\r\n  three\r\n", "subject:one two three\r\n"},
		{"empty value", "X-Empty:\r\n", "x-empty:\r\n"},
		{"only white space", "X-Blank:  \t \r\n", "x-blank:\r\n"},
		{"no line ending", "Date: now", "date:now\r\n"},
		{"LF line endings", "Subject: a\n b\n", "subject:a b\r\n"},
		{"colon in value", "Message-ID: <a:b@c>\r\n", "message-id:<a:b@c>\r\n"},
		{"no colon", " Broken Line \r\n", "broken line:\r\n"},
		{"value case kept", "From: Alice <A@Example.ORG>\r\n", "from:Alice <A@Example.ORG>\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RelaxedHeader(tt.raw); got != tt.relaxed {
				t.Errorf("RelaxedHeader = %q, want %q", got, tt.relaxed)
			}
			if got := Header(tt.raw, Relaxed); got != tt.relaxed {
				t.Errorf("Header(Relaxed) = %q, want %q", got, tt.relaxed)
			}
			if got := Header(tt.raw, Simple); got != tt.raw {
				t.Errorf("Header(Simple) = %q, want it unchanged", got)
			}
		})
	}
}

func TestARCMember(t *testing.T) {
	for name, want := range map[string]int{
		"ARC-Authentication-Results": ARCAuthenticationResults,
		"arc-message-signature":      ARCMessageSignature,
		"ARC-SEAL":                   ARCSeal,
		"Authentication-Results":     -1,
		"DKIM-Signature":             -1,
		"ARC-Seal ":                  -1,
	} {
		if got := ARCMember(name); got != want {
			t.Errorf("ARCMember(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestStripSignature(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"last tag", "DKIM-Signature: v=1; bh=abc=; b=sig\r\n nature==\r\n", "DKIM-Signature: v=1; bh=abc=; b=\r\n"},
		{"middle tag", "ARC-Seal: i=1; b=c2ln; cv=none\r\n", "ARC-Seal: i=1; b=; cv=none\r\n"},
		{"first tag", "X-Sig: b=c2ln;d=example.org", "X-Sig: b=;d=example.org"},
		{"spaced name", "X-Sig: a=1;\r\n b =c2ln\r\n", "X-Sig: a=1;\r\n b =\r\n"},
		{"bh is not b", "X-Sig: bh=aGFzaA==; b=c2ln", "X-Sig: bh=aGFzaA==; b="},
		{"no line ending", "X-Sig: a=1; b=c2ln", "X-Sig: a=1; b="},
		{"no b tag", "X-Sig: a=1; bh=x\r\n", "X-Sig: a=1; bh=x\r\n"},
		{"no colon", "garbage b=1", "garbage b=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StripSignature(tt.raw); got != tt.want {
				t.Errorf("StripSignature(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

// recorder is a hash.Hash that keeps what it is given: the canonical body.
type recorder struct{ bytes.Buffer }

func (r *recorder) Sum(b []byte) []byte { return append(b, r.Bytes()...) }
func (r *recorder) BlockSize() int      { return 1 }
func (r *recorder) Size() int           { return 0 }

// canonBody returns the canonical form of body, written in pieces of step
// bytes (0: at once).
func canonBody(body string, alg Algorithm, cr BareCR, step int) string {
	b := NewBodyHasher(&recorder{}, alg, cr)
	if step <= 0 {
		step = len(body) + 1
	}
	for i := 0; i < len(body); i += step {
		b.Write([]byte(body[i:min(i+step, len(body))]))
	}
	return string(b.Sum())
}

func TestBodyHasher(t *testing.T) {
	tests := []struct {
		name, body string
		// want per mode: simple, relaxed with CRContent, CRAsSent, CRIgnored.
		simple, relaxed, asSent, ignored string
	}{
		{"empty", "", "\r\n", "", "", ""},
		{"only empty lines", "\r\n\r\n\n", "\r\n", "", "", ""},
		{"no final line end", "a", "a\r\n", "a\r\n", "a\r\n", "a\r\n"},
		{"trailing empty lines", "a\r\n\r\n\r\n", "a\r\n", "a\r\n", "a\r\n", "a\r\n"},
		{"inner empty lines kept", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"white space", " a  b \t c \r\n", " a  b \t c \r\n", " a b c\r\n", " a b c\r\n", " a b c\r\n"},
		{"white space lines", "a\r\n \r\n\t\r\n", "a\r\n \r\n\t\r\n", "a\r\n", "a\r\n", "a\r\n"},
		{"bare LF", "a\nb\n\n", "a\r\nb\r\n", "a\r\nb\r\n", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"bare CR inside", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n", "ab\r\n"},
		{"bare CR after space", "a \rb\r\n", "a \rb\r\n", "a \rb\r\n", "a \rb\r\n", "a b\r\n"},
		{"CR CR LF", "a\r\r\nb", "a\r\r\nb\r\n", "a\r\r\nb\r\n", "a\r\r\nb\r\n", "a\r\nb\r\n"},
		{"final bare CR", "a\r", "a\r\r\n", "a\r\r\n", "a\r\n", "a\r\n"},
		{"final bare CR after empty lines", "a\r\n\r\n\r", "a\r\n\r\n\r\r\n", "a\r\n\r\n\r\r\n", "a\r\n", "a\r\n"},
		{"dots", ".\r\n..\r\n", ".\r\n..\r\n", ".\r\n..\r\n", ".\r\n..\r\n", ".\r\n..\r\n"},
	}
	modes := []struct {
		name string
		alg  Algorithm
		cr   BareCR
		want func(i int) string
	}{
		{"simple", Simple, CRContent, func(i int) string { return tests[i].simple }},
		{"relaxed CRContent", Relaxed, CRContent, func(i int) string { return tests[i].relaxed }},
		{"relaxed CRAsSent", Relaxed, CRAsSent, func(i int) string { return tests[i].asSent }},
		{"relaxed CRIgnored", Relaxed, CRIgnored, func(i int) string { return tests[i].ignored }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range modes {
				for _, step := range []int{0, 1, 2, 5} {
					if got := canonBody(tt.body, m.alg, m.cr, step); got != m.want(i) {
						t.Errorf("%s, pieces of %d: %q, want %q", m.name, step, got, m.want(i))
					}
				}
			}
		})
	}
	t.Run("large body", func(t *testing.T) {
		body := strings.Repeat("long line with  spaces \r\n", 2000)
		want := strings.Repeat("long line with spaces\r\n", 2000)
		if got := canonBody(body, Relaxed, CRAsSent, 4093); got != want {
			t.Errorf("relaxed: %d bytes, want %d", len(got), len(want))
		}
	})
	t.Run("Close twice", func(t *testing.T) {
		b := NewBodyHasher(&recorder{}, Simple, CRContent)
		b.Write([]byte("a\r"))
		b.Close()
		b.Close()
		if got := string(b.Sum()); got != "a\r\r\n" {
			t.Errorf("%q", got)
		}
	})
}

// goMsgauthBodyHash returns the bh= go-msgauth computes for body.
func goMsgauthBodyHash(t testing.TB, body string, alg Algorithm) string {
	t.Helper()
	c := dkim.CanonicalizationSimple
	if alg == Relaxed {
		c = dkim.CanonicalizationRelaxed
	}
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader("From: a@example.org\r\n\r\n"+body), &dkim.SignOptions{
		Domain: "example.org", Selector: "s", Signer: testSigner,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: c,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range strings.Split(out.String(), ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.TrimSpace(k) == "bh" {
			return strings.Join(strings.Fields(v), "")
		}
	}
	t.Fatalf("no bh= in %q", out.String())
	return ""
}

var testSigner = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

func bodyHash(body string, alg Algorithm, cr BareCR, step int) string {
	b := NewBodyHasher(sha256.New(), alg, cr)
	for i := 0; i < len(body); i += step {
		b.Write([]byte(body[i:min(i+step, len(body))]))
	}
	return base64.StdEncoding.EncodeToString(b.Sum())
}

// TestBodyHasherAgainstGoMsgauth checks body hashes against go-msgauth's
// signer, for bodies written in small pieces to cross buffer boundaries.
// Bare LF goes out as CRLF; the hash is that of what goes out.
func TestBodyHasherAgainstGoMsgauth(t *testing.T) {
	bodies := []string{
		"", "\r\n", "\r\n\r\n", "a", "a\r\n", "a\r\n\r\n\r\n", " a  b \t c \r\n", "\ta\r\n \r\n\t\r\nb\r\n\r\n",
		"line\r\n.dot\r\n..\r\n", "trailing   \r\n  \r\n", "x\r\n \r\ny", strings.Repeat("long line with  spaces ", 500) + "\r\n",
		"lf\nonly\n\n", "mixed\r\nlf\n  \n",
	}
	for _, body := range bodies {
		wire := strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
		for _, alg := range []Algorithm{Simple, Relaxed} {
			want := goMsgauthBodyHash(t, wire, alg)
			for _, cr := range []BareCR{CRContent, CRAsSent, CRIgnored} {
				if got := bodyHash(body, alg, cr, 7); got != want {
					t.Errorf("body %q, %v, bare CR %d: bh=%s, go-msgauth says %s", body, alg, cr, got, want)
				}
			}
		}
	}
}

// FuzzBodyHasher checks, for any body, that the canonical form does not
// depend on how the body is cut into writes, that relaxed output is
// canonical (canonicalizing it again changes nothing), and, for bodies
// without CR, that the hash is go-msgauth's.
func FuzzBodyHasher(f *testing.F) {
	for _, s := range []string{"", "a", " \t\n\n", "a \nb\t\n\n\n", "\n\n x", ".\n..\n", "a\rb\r\r\n \r", "x  \r\n\r\n"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, body string, step uint8) {
		n := int(step%16) + 1
		for _, alg := range []Algorithm{Simple, Relaxed} {
			for _, cr := range []BareCR{CRContent, CRAsSent, CRIgnored} {
				whole := canonBody(body, alg, cr, 0)
				if got := canonBody(body, alg, cr, n); got != whole {
					t.Fatalf("%v/%d, pieces of %d: %q, at once: %q", alg, cr, n, got, whole)
				}
				if alg == Relaxed {
					if again := canonBody(whole, alg, cr, 0); again != whole {
						t.Fatalf("%v/%d: not idempotent: %q then %q", alg, cr, whole, again)
					}
					if strings.Contains(whole, "  ") || strings.Contains(whole, "\t") || strings.Contains(whole, " \r\n") {
						t.Fatalf("%v/%d: white space left in %q", alg, cr, whole)
					}
				}
				if whole != "" && !strings.HasSuffix(whole, "\r\n") || strings.HasSuffix(whole, "\r\n\r\n") {
					t.Fatalf("%v/%d: %q does not end with one line end", alg, cr, whole)
				}
			}
		}
		if strings.Contains(body, "\r") {
			return
		}
		wire := strings.ReplaceAll(body, "\n", "\r\n")
		for _, alg := range []Algorithm{Simple, Relaxed} {
			if got, want := bodyHash(body, alg, CRAsSent, n), goMsgauthBodyHash(t, wire, alg); got != want {
				t.Fatalf("body %q, %v: bh=%s, go-msgauth says %s", body, alg, got, want)
			}
		}
	})
}

// FuzzRelaxedHeader checks that relaxed header canonicalization yields a
// canonical field: one line with a lower-case name, no white space runs,
// none around the colon or at the end, and unchanged by a second pass.
func FuzzRelaxedHeader(f *testing.F) {
	for _, s := range []string{"Subject: hi\r\n", "To:  a \t b\r\n\tc  \r\n", "X", ": v", "A B :  \r\n", "K:\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := RelaxedHeader(raw)
		if again := RelaxedHeader(got); again != got {
			t.Fatalf("%q: %q then %q", raw, got, again)
		}
		line, ok := strings.CutSuffix(got, "\r\n")
		if !ok {
			t.Fatalf("%q: %q does not end with CRLF", raw, got)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%q: %q has no colon", raw, got)
		}
		if !strings.Contains(raw, ":") {
			// No value: the name is the whole trimmed input.
			return
		}
		if name != strings.ToLower(name) || strings.HasSuffix(name, " ") || strings.HasSuffix(name, "\t") {
			t.Fatalf("%q: name %q", raw, name)
		}
		if strings.ContainsAny(value, "\t\r\n") || strings.Contains(value, "  ") ||
			strings.HasPrefix(value, " ") || strings.HasSuffix(value, " ") {
			t.Fatalf("%q: value %q", raw, value)
		}
		if Header(raw, Simple) != raw {
			t.Fatalf("simple changed %q", raw)
		}
	})
}

// names returns the fields' names and raw texts, "name=raw" each.
func names(fields []Field) []string {
	var out []string
	for _, f := range fields {
		out = append(out, f.Name+"="+f.Raw)
	}
	return out
}

// TestReadHeader runs both readers: ReadHeader (a copy) and
// ReadHeaderCRLF (a verifier's view), through a 16-byte buffer so that
// long lines take several reads.
func TestReadHeader(t *testing.T) {
	long := "B: " + strings.Repeat("x", 100) + "\r\n"
	tests := []struct {
		name     string
		read     func(*bufio.Reader, int) ([]byte, []Field, error)
		in       string
		max      int
		block    string
		fields   []string
		rest     string
		tooLarge bool
	}{
		{"copy: CRLF", ReadHeader, "From: a\r\nTo : b\r\n\r\nbody\r\n", MaxHeader,
			"From: a\r\nTo : b\r\n\r\n", []string{"From=From: a\r\n", "To=To : b\r\n"}, "body\r\n", false},
		{"copy: LF kept", ReadHeader, "Subject: x\n y\n\nbody", MaxHeader,
			"Subject: x\n y\n\n", []string{"Subject=Subject: x\n y\n"}, "body", false},
		{"copy: all header", ReadHeader, "A: 1\r\nB: 2", MaxHeader,
			"A: 1\r\nB: 2", []string{"A=A: 1\r\n", "B=B: 2"}, "", false},
		{"copy: empty", ReadHeader, "", MaxHeader, "", nil, "", false},
		{"copy: body only", ReadHeader, "\r\nbody", MaxHeader, "\r\n", nil, "body", false},
		{"copy: mbox line is a field", ReadHeader, "From x@y Mon\r\nA: 1\r\n\r\n", MaxHeader,
			"From x@y Mon\r\nA: 1\r\n\r\n", []string{"From x@y Mon=From x@y Mon\r\n", "A=A: 1\r\n"}, "", false},
		{"copy: leading continuation", ReadHeader, " x\r\nA: 1\r\n\r\n", MaxHeader,
			" x\r\nA: 1\r\n\r\n", []string{" x= x\r\n", "A=A: 1\r\n"}, "", false},
		{"copy: too large", ReadHeader, "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 10,
			"A: 1\r\nB: 2\r\n", []string{"A=A: 1\r\n"}, "C: 3\r\n\r\nbody", true},
		{"copy: too large at the empty line", ReadHeader, "A: 12345\r\n\r\nbody", 10,
			"A: 12345\r\n\r\n", []string{"A=A: 12345\r\n"}, "body", true},
		{"copy: long line cut", ReadHeader, "A: 1\r\n" + long + "\r\n", 40,
			"A: 1\r\n" + long[:48], []string{"A=A: 1\r\n"}, long[48:] + "\r\n", true},

		{"CRLF: CRLF", ReadHeaderCRLF, "From: a\r\nTo : b\r\n\r\nbody\r\n", MaxHeader,
			"From: a\r\nTo : b\r\n\r\n", []string{"From=From: a\r\n", "To=To : b\r\n"}, "body\r\n", false},
		{"CRLF: LF made CRLF", ReadHeaderCRLF, "Subject: x\n y\n\nbody", MaxHeader,
			"Subject: x\r\n y\r\n\r\n", []string{"Subject=Subject: x\r\n y\r\n"}, "body", false},
		{"CRLF: all header", ReadHeaderCRLF, "A: 1\r\nB: 2", MaxHeader,
			"A: 1\r\nB: 2\r\n\r\n", []string{"A=A: 1\r\n", "B=B: 2\r\n"}, "", false},
		{"CRLF: empty", ReadHeaderCRLF, "", MaxHeader, "\r\n", nil, "", false},
		{"CRLF: mbox line skipped", ReadHeaderCRLF, "From x@y Mon Jan  1 00:00:00 2024\nA: 1\n\n", MaxHeader,
			"A: 1\r\n\r\n", []string{"A=A: 1\r\n"}, "", false},
		{"CRLF: mbox line only", ReadHeaderCRLF, "From x@y Mon", MaxHeader, "\r\n", nil, "", false},
		{"CRLF: From field kept", ReadHeaderCRLF, "From: a\r\n\r\n", MaxHeader, "From: a\r\n\r\n", []string{"From=From: a\r\n"}, "", false},
		{"CRLF: too large", ReadHeaderCRLF, "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 10,
			"A: 1\r\nB: 2\r\n\r\n", []string{"A=A: 1\r\n", "B=B: 2\r\n"}, "C: 3\r\n\r\nbody", true},
		{"CRLF: long line drained", ReadHeaderCRLF, "A: 1\r\n" + long + "C: 3\r\n\r\n", 40,
			"A: 1\r\n" + long[:48] + "\r\n\r\n", []string{"A=A: 1\r\n", "B=" + long[:48] + "\r\n"}, "C: 3\r\n\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			block, fields, err := tt.read(br, tt.max)
			if (err == ErrHeaderTooLarge) != tt.tooLarge || err != nil && err != ErrHeaderTooLarge {
				t.Fatalf("err = %v, want too large %v", err, tt.tooLarge)
			}
			if string(block) != tt.block {
				t.Errorf("block %q, want %q", block, tt.block)
			}
			if got := names(fields); strings.Join(got, "|") != strings.Join(tt.fields, "|") {
				t.Errorf("fields %q, want %q", got, tt.fields)
			}
			if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
		})
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestReadHeaderError(t *testing.T) {
	r := func() *bufio.Reader {
		return bufio.NewReader(io.MultiReader(strings.NewReader("A: 1\r\n"), failReader{}))
	}
	if _, _, err := ReadHeader(r(), MaxHeader); err != io.ErrUnexpectedEOF {
		t.Errorf("ReadHeader: %v", err)
	}
	if _, _, err := ReadHeaderCRLF(r(), MaxHeader); err != io.ErrUnexpectedEOF {
		t.Errorf("ReadHeaderCRLF: %v", err)
	}
}

// FuzzReadHeader checks that ReadHeader's block is the start of the input
// and its fields, put back together, are that block (less the last line
// when it is too large or empty), and that ReadHeaderCRLF gives the same
// fields with CRLF line endings when there is no mbox line.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{"A: 1\r\n\r\nb", "A: 1\n b\n\nbody", " x\r\nB:\r\n", "", "\n", "A\rB: 1\n"} {
		f.Add(s, uint8(64))
	}
	f.Fuzz(func(t *testing.T, in string, max uint8) {
		limit := int(max) + 1
		block, fields, err := ReadHeader(bufio.NewReaderSize(strings.NewReader(in), 16), limit)
		if err != nil && err != ErrHeaderTooLarge {
			t.Fatal(err)
		}
		if !strings.HasPrefix(in, string(block)) {
			t.Fatalf("block %q is not the start of %q", block, in)
		}
		var joined strings.Builder
		for _, fl := range fields {
			joined.WriteString(fl.Raw)
		}
		if !strings.HasPrefix(string(block), joined.String()) {
			t.Fatalf("fields %q are not the start of the block %q", joined.String(), block)
		}
		if strings.HasPrefix(in, "From ") || err != nil {
			return
		}
		crlf, cfields, cerr := ReadHeaderCRLF(bufio.NewReaderSize(strings.NewReader(in), 16), limit)
		if cerr != nil && cerr != ErrHeaderTooLarge {
			t.Fatal(cerr)
		}
		if !strings.HasSuffix(string(crlf), "\r\n") {
			t.Fatalf("CRLF block %q", crlf)
		}
		if cerr != nil {
			return
		}
		if len(cfields) != len(fields) {
			t.Fatalf("%d fields, %d with CRLF", len(fields), len(cfields))
		}
		for i := range fields {
			var want string
			for _, l := range strings.SplitAfter(fields[i].Raw, "\n") {
				if l != "" {
					want += strings.TrimRight(l, "\r\n") + "\r\n"
				}
			}
			if cfields[i].Name != fields[i].Name || cfields[i].Raw != want {
				t.Fatalf("field %d: %+v, with CRLF %+v", i, fields[i], cfields[i])
			}
		}
	})
}

func TestPicker(t *testing.T) {
	fields := []Field{
		{Name: "From", Raw: "From: first\r\n"},
		{Name: "To", Raw: "To: x\r\n"},
		{Name: "from", Raw: "from: second\r\n"},
		{Name: "Subject", Raw: "Subject: s\r\n"},
	}
	tests := []struct {
		name  string
		picks []string
		want  []string // "" for none
	}{
		{"bottom-up", []string{"From", "FROM", "from"}, []string{"from: second\r\n", "From: first\r\n", ""}},
		{"other names independent", []string{"from", "subject", "to", "from"}, []string{"from: second\r\n", "Subject: s\r\n", "To: x\r\n", "From: first\r\n"}},
		{"absent", []string{"Date", "date"}, []string{"", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPicker(fields)
			for i, n := range tt.picks {
				raw, ok := p.Pick(n)
				if raw != tt.want[i] || ok != (tt.want[i] != "") {
					t.Errorf("pick %d (%s) = %q %v, want %q", i, n, raw, ok, tt.want[i])
				}
			}
		})
	}
}

func TestFieldValue(t *testing.T) {
	if got := (Field{Name: "A", Raw: "A: x:y\r\n z\r\n"}).Value(); got != " x:y\r\n z\r\n" {
		t.Errorf("Value = %q", got)
	}
}
