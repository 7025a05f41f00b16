package parser

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkStrings fails when a string anywhere in v is not valid UTF-8 or
// holds a NUL in a text field: JSON encoders would silently alter it.
func checkStrings(t *testing.T, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkStrings(t, v.Elem(), path)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			checkStrings(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			checkStrings(t, v.Index(i), path+"["+itoa(i)+"]")
		}
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", path, s)
		}
		if strings.HasSuffix(path, ".Text") || strings.HasSuffix(path, ".HTML") || strings.HasSuffix(path, ".Subject") {
			if strings.IndexByte(s, 0) >= 0 {
				t.Errorf("%s holds NUL", path)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := corpusFiles()
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newMemStore()
		m, err := Parse(context.Background(), bytes.NewReader(data), Options{
			ID: "F", Store: st, MaxDepth: 6, MaxParts: 50, MaxHeaderBytes: 4096, MaxBodyBytes: 64,
		})
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if m.Size != int64(len(data)) {
			t.Fatalf("Size = %d, want %d", m.Size, len(data))
		}
		for _, w := range m.Warnings {
			if strings.Contains(w, "internal error") {
				t.Fatalf("parser panicked: %s", w)
			}
		}
		for _, a := range m.Attachments {
			if b, ok := st.objs[a.Key]; !ok || int64(len(b)) != a.Size {
				t.Fatalf("attachment %q: stored %d bytes (present %v), JSON says %d", a.Key, len(b), ok, a.Size)
			}
		}
		kept := 0
		for _, p := range m.Parts {
			kept += len(p.Content)
			if !p.Truncated {
				continue
			}
			if b, ok := st.objs[p.Key]; !ok || int64(len(b)) != p.Size || p.Size <= 64 {
				t.Fatalf("truncated part %s: stored %d bytes (present %v), JSON says %d", p.Path, len(b), ok, p.Size)
			}
		}
		// Line endings may shrink (CRLF to LF) and charsets grow text: a
		// loose bound on the 4 × 64 bytes the parts may keep.
		if kept > 4*64*4 {
			t.Fatalf("parts keep %d bytes of text", kept)
		}
		checkStrings(t, reflect.ValueOf(m), "Message")
	})
}

func FuzzDecodeWords(f *testing.F) {
	for _, s := range []string{
		"=?utf-8?q?J=C3=B6rg?= <j@x>", "=?UTF-8?B?w6Q=?= =?UTF-8?B?w7Y=?=", "=?iso-2022-jp?B?GyRCRnxLXBsoQg==?=",
		"=?gb2312?B?1tDOxA==?=", "a =?x?q?b", "=?utf-8*en?q?x?=", "=??q?x?=", "=?utf-8?b?====?=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, _ := decodeWords(s)
		if !strings.Contains(s, "=?") && out != s {
			t.Fatalf("decodeWords(%q) = %q, want it unchanged", s, out)
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("decodeWords(%q) = %q, not valid UTF-8", s, out)
		}
	})
}

func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		`"Doe, John" <john@example.com>, Jane <jane+tag@example.org>`, "undisclosed-recipients:;",
		"Team: a@x, b@y;, c@z", "=?utf-8?q?J=C3=B6rg?= <j@b\u00fccher.de>", "bob@xn--bcher-kva.de (Bob)",
		`Broken <broken@, "unterminated`, "<@route:a@b>", "a@b@c", ":;,<>",
		`x@bank.example\, y@evil.example`, `"x@bank.example"@evil.example`, `Bank <@a.example,@b.example:x@c.example>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		as, _, _ := parseAddressList(s)
		for _, a := range as {
			if a.Address == "" {
				t.Fatalf("parseAddressList(%q) returned an empty address", s)
			}
			if utf8.ValidString(s) && (!utf8.ValidString(a.Name) || !utf8.ValidString(a.Address)) {
				t.Fatalf("parseAddressList(%q) = %+v, not valid UTF-8", s, a)
			}
			// Every address is one addr-spec, in canonical form.
			if spec, ok := addrSpec(a.Address); !ok || spec != a.Address {
				t.Fatalf("parseAddressList(%q) address %q is not a canonical addr-spec (%q, %v)", s, a.Address, spec, ok)
			}
		}
	})
}

func FuzzParseMediaHeader(f *testing.F) {
	for _, s := range []string{
		`text/plain; charset="utf-8"; format=flowed`, `attachment; filename*0*=UTF-8''a%20b; filename*1*=c.pdf`,
		`application/pdf; name="=?UTF-8?B?w6Q=?="`, `multipart/mixed; boundary=simple boundary`,
		`inline; filename="unterminated`, `; ; =; a*=x'y'%zz`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, params, _ := parseMediaHeader(s)
		if v != strings.ToLower(v) {
			t.Fatalf("parseMediaHeader(%q) value %q not lower-case", s, v)
		}
		for k, p := range params {
			if utf8.ValidString(s) && !utf8.ValidString(p) {
				t.Fatalf("parseMediaHeader(%q) param %s=%q not valid UTF-8", s, k, p)
			}
		}
	})
}

func FuzzStripAndHTML(f *testing.F) {
	f.Add("Hi\n\nOn Mon, Jan 1, 2024 at 10:00 AM X <x@y> wrote:\n> quoted\n-- \nsig", "<p>a<b>b</b></p><ul><li>x</ul><pre> y</pre>")
	f.Fuzz(func(t *testing.T, text, html string) {
		s := stripReply(text)
		if len(s) > len(text) {
			t.Fatalf("stripReply grew %q to %q", text, s)
		}
		if out := htmlToText(html); utf8.ValidString(html) && !utf8.ValidString(out) {
			t.Fatalf("htmlToText(%q) = %q, not valid UTF-8", html, out)
		}
	})
}
