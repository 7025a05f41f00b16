package parser

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDecodeWords(t *testing.T) {
	tests := []struct{ in, want, warn string }{
		{"plain text", "plain text", ""},
		{"=?utf-8?q?J=C3=B6rg?= <j@x>", "Jörg <j@x>", ""},
		{"=?UTF-8?B?w6Q=?= =?UTF-8?B?w7Y=?=", "äö", ""},
		{"=?utf-8?B?5pel?=\r\n =?utf-8?B?5pys?=", "日本", ""},
		{"=?utf-8?B?5g==?= =?utf-8?B?l6U=?=", "日", ""}, // a character split across words
		{"a =?iso-8859-1?q?caf=E9?= b", "a café b", ""},
		{"=?iso-2022-jp?B?GyRCRnxLXBsoQg==?=", "日本", ""},
		{"=?gb2312?B?1tDOxA==?=", "中文", ""},
		{"=?ks_c_5601-1987?B?x9Gxub7u?=", "한국어", ""},
		{"=?utf-8*en?q?lang?=", "lang", ""},
		{"=?utf-8?q?a?=b=?utf-8?q?c?=", "abc", ""},
		{"=?utf-8?q?a_b?= c", "a b c", ""},
		{"=?utf-8?q?bad=ZZ?=", "bad=ZZ", `malformed encoded word "=?utf-8?q?bad=ZZ?="`},
		{"=?utf-8?x?what?=", "what", `malformed encoded word "=?utf-8?x?what?="`},
		{"=?x-klingon?q?caf=E9?=", "café", `unknown charset "x-klingon", decoded as windows-1252`},
		{"=?utf-8?q?not closed", "=?utf-8?q?not closed", ""},
		{"=?utf-8?q?has space?=", "=?utf-8?q?has space?=", ""},
	}
	for _, tt := range tests {
		got, warn := decodeWords(tt.in)
		if got != tt.want || warn != tt.warn {
			t.Errorf("decodeWords(%q) = %q, %q; want %q, %q", tt.in, got, warn, tt.want, tt.warn)
		}
	}
}

func TestDecodeCharset(t *testing.T) {
	tests := []struct {
		label string
		in    []byte
		want  string
		warn  string
	}{
		{"utf-8", []byte("héllo"), "héllo", ""},
		{"utf-8", []byte("h\xe9llo"), "h\uFFFDllo", "invalid UTF-8 replaced with U+FFFD"},
		{"", []byte("h\xe9llo"), "héllo", "8-bit bytes without a charset decoded as windows-1252"},
		{"us-ascii", []byte("\x93quoted\x94"), "“quoted”", "8-bit bytes in us-ascii text decoded as windows-1252"},
		{"iso-8859-1", []byte("\x93it\x92s\x94"), "“it’s”", ""},
		{"ISO-8859-2", []byte("\xb6"), "ś", ""},
		{"koi8-r", []byte("\xf0\xd2\xc9\xd7\xc5\xd4"), "Привет", ""},
		{"windows-1251", []byte("\xcf\xf0\xe8\xe2\xe5\xf2"), "Привет", ""},
		{"gb2312", []byte("\xe9\x46"), "镕", ""}, // GBK-only character
		{"big5", []byte("\xa4\xa4\xa4\xe5"), "中文", ""},
		{"shift_jis", []byte("\x93\xfa\x96\x7b"), "日本", ""},
		{"euc-jp", []byte("\xc6\xfc\xcb\xdc"), "日本", ""},
		{"iso-2022-jp", []byte("\x1b$BF|K\\\x1b(B"), "日本", ""},
		{"euc-kr", []byte("\xc7\xd1"), "한", ""},
		{"x-klingon", []byte("plain"), "plain", ""},
		{"x-klingon", []byte("caf\xc3\xa9"), "café", `unknown charset "x-klingon", decoded as UTF-8`},
		{`"UTF-8"`, []byte("quoted label"), "quoted label", ""},
	}
	for _, tt := range tests {
		got, warn := decodeCharset(tt.label, tt.in)
		if got != tt.want || warn != tt.warn {
			t.Errorf("decodeCharset(%q, %q) = %q, %q; want %q, %q", tt.label, tt.in, got, warn, tt.want, tt.warn)
		}
	}
	if knownCharset("x-klingon") || !knownCharset("windows-1250") || !knownCharset("gb18030") {
		t.Error("knownCharset is wrong")
	}
}

func TestParseMediaHeader(t *testing.T) {
	tests := []struct {
		in     string
		value  string
		params map[string]string
		warn   string
	}{
		{`text/plain; charset="utf-8"; format=flowed`, "text/plain", map[string]string{"charset": "utf-8", "format": "flowed"}, ""},
		{`Text/HTML;CHARSET=ISO-8859-1`, "text/html", map[string]string{"charset": "ISO-8859-1"}, ""},
		{`attachment; filename*0*=UTF-8''Faktura%20%E2%80%93; filename*1*=%20Q1.pdf`, "attachment", map[string]string{"filename": "Faktura – Q1.pdf"}, ""},
		{`attachment; filename*=iso-8859-1'de'Gr%FC%DFe.txt`, "attachment", map[string]string{"filename": "Grüße.txt"}, ""},
		{`attachment; filename*0="long "; filename*1="name.txt"`, "attachment", map[string]string{"filename": "long name.txt"}, ""},
		{`attachment; filename="plain.txt"; filename*=utf-8''%C3%A9.txt`, "attachment", map[string]string{"filename": "é.txt"}, ""},
		{`application/pdf; name="=?UTF-8?B?w6QucGRm?="`, "application/pdf", map[string]string{"name": "ä.pdf"}, ""},
		{`multipart/mixed; boundary=simple boundary`, "multipart/mixed", map[string]string{"boundary": "simple boundary"}, ""},
		{`inline; filename="unterminated`, "inline", map[string]string{"filename": "unterminated"}, `unterminated quoted parameter "filename"`},
		{`text/plain (comment); charset=us-ascii (Plain text)`, "text/plain", map[string]string{"charset": "us-ascii"}, ""},
		{`text/plain; flowed; charset=utf-8`, "text/plain", map[string]string{"charset": "utf-8"}, `parameter without value "flowed"`},
		{`attachment; filename="a\"b.txt"`, "attachment", map[string]string{"filename": `a"b.txt`}, ""},
	}
	for _, tt := range tests {
		v, params, warn := parseMediaHeader(tt.in)
		if v != tt.value || warn != tt.warn || len(params) != len(tt.params) {
			t.Errorf("parseMediaHeader(%q) = %q, %v, %q; want %q, %v, %q", tt.in, v, params, warn, tt.value, tt.params, tt.warn)
			continue
		}
		for k, want := range tt.params {
			if params[k] != want {
				t.Errorf("parseMediaHeader(%q)[%s] = %q, want %q", tt.in, k, params[k], want)
			}
		}
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in    string
		want  string
		warns int
	}{
		{`"Doe, John" <john@example.com>`, `"Doe, John" <john@example.com>`, 0},
		{`Jane Q. Public <jane+news@example.org>`, `"Jane Q. Public" <jane+news@example.org> #news`, 0},
		{`undisclosed-recipients:;`, ``, 0},
		{`Team: a@x.example, "B" <b@y.example>;, c@z.example`, `"" <a@x.example> [Team]; "B" <b@y.example> [Team]; "" <c@z.example>`, 0},
		{`=?utf-8?q?J=C3=B6rg?= <joerg@example.de>`, `"Jörg" <joerg@example.de>`, 0},
		{`bob@example.com (Bob Smith)`, `"Bob Smith" <bob@example.com>`, 0},
		{`info@xn--mller-kva.example`, `"" <info@xn--mller-kva.example> U:info@müller.example`, 0},
		{`"Jürgen" <jürgen@bücher.example>`, `"Jürgen" <jürgen@bücher.example> A:jürgen@xn--bcher-kva.example`, 0},
		{`用户@例子.广告`, `"" <用户@例子.广告> A:用户@xn--fsqu00a.xn--4rr70v`, 0},
		{`Broken <broken@example.com, Next <next@example.com>`, `"Broken" <broken@example.com>; "Next" <next@example.com>`, 1},
		{`no address here`, ``, 1},
		{`John Doe john@example.com`, `"John Doe" <john@example.com>`, 1},
		// Every address is a well-formed addr-spec (RFC 5322 §3.4.1).
		{`<@route.example:x@bank.example>`, `"" <x@bank.example>`, 1},
		{`Bank <@evil.example,@relay.example:x@bank.example>, y@other.example`, `"Bank" <x@bank.example>; "" <y@other.example>`, 1},
		{`<@a.example,@b.example:x@c.example, d@e.example`, `"" <d@e.example>`, 2},
		{`x@bank.example\, y@evil.example`, `"" <y@evil.example>`, 1},
		{`"x@bank.example"@evil.example`, `"" <"x@bank.example"@evil.example>`, 0},
		{`"a b"@example.com, "q\"\\"@example.com`, `"" <"a b"@example.com>; "" <"q\"\\"@example.com>`, 0},
		{`"a+tag"@example.com`, `"" <a+tag@example.com> #tag`, 0},
		{`x@bank.example.`, ``, 1},
		{`Broken <broken@`, ``, 1},
	}
	for _, tt := range tests {
		as, warns, _ := parseAddressList(tt.in)
		var parts []string
		for _, a := range as {
			s := `"` + a.Name + `" <` + a.Address + `>`
			if a.MailboxHash != "" {
				s += " #" + a.MailboxHash
			}
			if a.Group != "" {
				s += " [" + a.Group + "]"
			}
			if a.AddressUnicode != "" {
				s += " U:" + a.AddressUnicode
			}
			if a.AddressASCII != "" {
				s += " A:" + a.AddressASCII
			}
			parts = append(parts, s)
		}
		if got := strings.Join(parts, "; "); got != tt.want || len(warns) != tt.warns {
			t.Errorf("parseAddressList(%q) = %s (warnings %q); want %s with %d warnings", tt.in, got, warns, tt.want, tt.warns)
		}
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Mon, 2 Jan 2006 15:04:05 -0700", "2006-01-02T15:04:05-07:00"},
		{"Mon, 02 Jan 2006 15:04:05 +0000 (UTC)", "2006-01-02T15:04:05Z"},
		{"2 Jan 2006 15:04:05 GMT", "2006-01-02T15:04:05Z"},
		{"Mon, 2 Jan 2006 15:04:05 EST", "2006-01-02T15:04:05-05:00"},
		{"Wed, 17 Jan 2024 16:20:00 PDT", "2024-01-17T16:20:00-07:00"},
		{"Thu, 13 Feb 1969 23:32 -0330 (Newfoundland Time)", "1969-02-13T23:32:00-03:30"},
		{"Mon, 2 Jan 06 15:04:05 -0700", "2006-01-02T15:04:05-07:00"},
		{"Wed Jan  3 10:00:00 2024", "2024-01-03T10:00:00Z"},
		{"2024-01-03T10:00:00+01:00", "2024-01-03T10:00:00+01:00"},
		{"Mon, 2 Jan 2006 15:04:05 GMT+0200", "2006-01-02T15:04:05+02:00"},
		{"sometime last tuesday", ""},
		{"", ""},
	}
	for _, tt := range tests {
		d, ok := parseDate(tt.in)
		got := ""
		if ok {
			got = d.Format("2006-01-02T15:04:05Z07:00")
		}
		if got != tt.want {
			t.Errorf("parseDate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>Hello <b>world</b></p><p>Second</p>", "Hello world\n\nSecond"},
		{"<head><title>T</title><style>p{}</style></head><body>Body<script>x()</script></body>", "Body"},
		{"line one<br>line two<br/>line three", "line one\nline two\nline three"},
		{"<ul><li>a</li><li>b</li></ul><ol start=3><li>c</ol>", "- a\n- b\n3. c"},
		{"<blockquote>quoted<br>twice</blockquote>after", "> quoted\n> twice\n\nafter"},
		{"<pre>  keep\n   spaces</pre>", "  keep\n   spaces"},
		{`<a href="https://x.example/p">Read more</a>`, "Read more <https://x.example/p>"},
		{`<a href="https://x.example/">https://x.example/</a>`, "https://x.example/"},
		{`<img src="logo.png" alt="Logo"> &amp; &lt;tag&gt; a&nbsp;b`, "Logo & <tag> a b"},
		{"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
	}
	for _, tt := range tests {
		if got := htmlToText(tt.in); got != tt.want {
			t.Errorf("htmlToText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnflow(t *testing.T) {
	tests := []struct {
		in    string
		delsp bool
		want  string
	}{
		{"one \ntwo\nthree", false, "one two\nthree"},
		{"one \ntwo", true, "onetwo"},
		{"> quoted \n> more\nreply", false, "> quoted more\nreply"},
		{"-- \nsig", false, "-- \nsig"},
		{" From stuffed", false, "From stuffed"},
		{"a \n> b", false, "a \n> b"},
	}
	for _, tt := range tests {
		if got := unflow(tt.in, tt.delsp); got != tt.want {
			t.Errorf("unflow(%q, %v) = %q, want %q", tt.in, tt.delsp, got, tt.want)
		}
	}
}

func TestSafeName(t *testing.T) {
	tests := []struct{ name, ct, want string }{
		{"report.pdf", "application/pdf", "report.pdf"},
		{"../../etc/passwd", "", "passwd"},
		{`C:\Users\me\file.doc`, "", "file.doc"},
		{"Grüße & Küsse.txt", "", "Grüße___Küsse.txt"},
		{"..", "image/png", "attachment.png"},
		{"", "message/rfc822", "attachment.eml"},
		{"\x00\x01", "", "attachment.bin"},
		{strings.Repeat("a", 200) + ".pdf", "", strings.Repeat("a", 120)},
	}
	for _, tt := range tests {
		if got := safeName(tt.name, tt.ct); got != tt.want {
			t.Errorf("safeName(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestTransferDecoders(t *testing.T) {
	tests := []struct {
		name    string
		dec     func(io.Reader) (io.Reader, func() int)
		in      string
		want    string
		invalid int
	}{
		{"base64", b64dec, "SGVsbG8s\r\nIHdvcmxkIQ==\r\n", "Hello, world!", 0},
		{"base64 junk", b64dec, "SGVs*bG8s\r\nIHdv!cmxkIQ==", "Hello, world!", 2},
		{"base64 no padding", b64dec, "SGVsbG8", "Hello", 0},
		{"base64 two blocks", b64dec, "SGk=\r\nSGk=", "HiHi", 0},
		{"base64 dangling char", b64dec, "SGVsbG8sI", "Hello,", 1},
		{"qp", qpdec, "Caf=C3=A9 =3D soft=\r\nbreak  \r\nnext\r\n", "Café = softbreak\r\nnext\r\n", 0},
		{"qp lowercase and bad", qpdec, "a=c3=a9 =ZZ =\n", "aé =ZZ ", 1},
		{"uuencode", uudec, "junk\nbegin 644 f\n#86)C\n`\nend\n", "abc", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				d, invalid := tt.dec(r)
				got, err := io.ReadAll(d)
				if err != nil || string(got) != tt.want || invalid() != tt.invalid {
					t.Fatalf("decoded %q (err %v, %d invalid), want %q, %d invalid", got, err, invalid(), tt.want, tt.invalid)
				}
			}
		})
	}
}

func b64dec(r io.Reader) (io.Reader, func() int) {
	d := newBase64Reader(r)
	return d, func() int { return d.invalid }
}

func qpdec(r io.Reader) (io.Reader, func() int) {
	d := newQPReader(r)
	return d, func() int { return d.invalid }
}

func uudec(r io.Reader) (io.Reader, func() int) {
	d := newUUReader(r)
	return d, func() int { return d.invalid }
}

func TestMultipartReader(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		parts  []string
		closed bool
	}{
		{"crlf", "pre\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepilogue", []string{"\r\none", "\r\ntwo"}, true},
		{"lf", "--b\n\none\n--b--\n", []string{"\none"}, true},
		{"white space after delimiter", "--b \t\r\n\r\none\r\n--b-- \r\n", []string{"\r\none"}, true},
		{"no final newline", "--b\r\n\r\none\r\n--b--", []string{"\r\none"}, true},
		{"missing close", "--b\r\n\r\none\r\n", []string{"\r\none"}, false},
		{"prefix is not a delimiter", "--b\r\n\r\n--bb\r\n--b--\r\n", []string{"\r\n--bb"}, true},
		{"empty part", "--b\r\n--b--\r\n", []string{""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := newMultipartReader(getReader(iotest.HalfReader(strings.NewReader(tt.body))), "b")
			var got []string
			for mr.Next() {
				b, _ := io.ReadAll(mr)
				got = append(got, string(b))
			}
			if strings.Join(got, "|") != strings.Join(tt.parts, "|") || mr.closed != tt.closed {
				t.Fatalf("parts %q closed %v, want %q closed %v", got, mr.closed, tt.parts, tt.closed)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	var warns []string
	in := "From nobody Mon Jan  1 00:00:00 2024\r\nSubject: folded\r\n  value \r\nX-Empty:\r\nNot a header line\r\nbody\r\n"
	br := getReader(strings.NewReader(in))
	h, body := readHeader(br, 1<<20, func(w string) { warns = append(warns, w) })
	if len(h.fields) != 2 || string(h.fields[0].value) != "folded  value" || string(h.fields[1].value) != "" {
		t.Fatalf("fields = %+v", h.fields)
	}
	rest, _ := io.ReadAll(io.MultiReader(bytes.NewReader(body), br))
	if string(rest) != "Not a header line\r\nbody\r\n" {
		t.Fatalf("body = %q", rest)
	}
	want := []string{`mbox "From " line before the header ignored`, `header not ended by a blank line; the body starts at "Not a header line"`}
	if strings.Join(warns, "|") != strings.Join(want, "|") {
		t.Fatalf("warnings %q, want %q", warns, want)
	}
}
