package parser

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	gmcharset "github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// overrides maps charset labels to the encoding mail clients actually use
// for them, following the WHATWG Encoding Standard: senders label
// windows-1252 text as iso-8859-1 or us-ascii, and GBK or GB 18030 text as
// gb2312. Each target is a superset of the labelled charset, so correctly
// labelled text decodes the same.
var overrides = map[string]encoding.Encoding{
	"iso-8859-1":     charmap.Windows1252,
	"iso8859-1":      charmap.Windows1252,
	"iso_8859-1":     charmap.Windows1252,
	"latin1":         charmap.Windows1252,
	"l1":             charmap.Windows1252,
	"cp1252":         charmap.Windows1252,
	"windows-1252":   charmap.Windows1252,
	"ascii":          charmap.Windows1252,
	"us-ascii":       charmap.Windows1252,
	"gb2312":         simplifiedchinese.GB18030,
	"gbk":            simplifiedchinese.GB18030,
	"x-gbk":          simplifiedchinese.GB18030,
	"cp936":          simplifiedchinese.GB18030,
	"euc-cn":         simplifiedchinese.GB18030,
	"gb18030":        simplifiedchinese.GB18030,
	"ks_c_5601-1987": korean.EUCKR,
	"euc-kr":         korean.EUCKR,
	"cp949":          korean.EUCKR,
	"shift_jis":      japanese.ShiftJIS,
	"shift-jis":      japanese.ShiftJIS,
	"sjis":           japanese.ShiftJIS,
	"x-sjis":         japanese.ShiftJIS,
	"cp932":          japanese.ShiftJIS,
	"windows-31j":    japanese.ShiftJIS,
	"euc-jp":         japanese.EUCJP,
	"iso-2022-jp":    japanese.ISO2022JP,
}

// utf8Labels are labels whose text is UTF-8, or whose ASCII subset is, so
// that valid UTF-8 is taken as is.
var utf8Labels = map[string]bool{
	"": true, "utf-8": true, "utf8": true, "us-ascii": true, "ascii": true,
	"x-unknown": true, "unknown-8bit": true, "unknown": true, "default": true,
}

// stateful charsets encode non-ASCII text with 7-bit escape sequences, so
// pure-ASCII input still needs decoding.
func stateful(label string) bool {
	return strings.HasPrefix(label, "iso-2022") || strings.HasPrefix(label, "utf-16") ||
		strings.HasPrefix(label, "utf-32") || strings.HasPrefix(label, "utf-7") ||
		label == "hz-gb-2312" || label == "unicode-1-1-utf-7" || label == "ucs-2"
}

// normLabel lower-cases a charset label and strips quotes, blanks and an
// RFC 2231 language suffix ("utf-8*en").
func normLabel(label string) string {
	label = strings.ToLower(strings.Trim(strings.TrimSpace(label), `"' `))
	if i := strings.IndexByte(label, '*'); i >= 0 {
		label = label[:i]
	}
	return label
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeCharset converts b, in the named charset, to UTF-8. It never fails:
// an unknown charset is decoded as UTF-8 when valid and as windows-1252
// otherwise, and warn says so. Invalid sequences become U+FFFD.
func decodeCharset(label string, b []byte) (s string, warn string) {
	label = normLabel(label)
	if !stateful(label) && isASCII(b) {
		return string(b), ""
	}
	if utf8Labels[label] || label == "utf-8" {
		if utf8.Valid(b) {
			return string(b), ""
		}
		if label == "utf-8" || label == "utf8" {
			return strings.ToValidUTF8(string(b), "\uFFFD"), "invalid UTF-8 replaced with U+FFFD"
		}
	}
	if enc, ok := overrides[label]; ok {
		if out, err := enc.NewDecoder().Bytes(b); err == nil {
			if label == "us-ascii" || label == "ascii" {
				warn = "8-bit bytes in us-ascii text decoded as windows-1252"
			}
			return strings.ToValidUTF8(string(out), "\uFFFD"), warn
		}
	}
	if label != "" && !utf8Labels[label] {
		if r, err := gmcharset.Reader(label, bytes.NewReader(b)); err == nil {
			if out, err := io.ReadAll(r); err == nil {
				return strings.ToValidUTF8(string(out), "\uFFFD"), ""
			}
		}
	}
	// Unknown or undeclared charset with 8-bit bytes.
	if utf8.Valid(b) {
		if label == "" || utf8Labels[label] {
			return string(b), ""
		}
		return string(b), "unknown charset " + quote(label) + ", decoded as UTF-8"
	}
	out, _ := charmap.Windows1252.NewDecoder().Bytes(b)
	if label == "" || utf8Labels[label] {
		return string(out), "8-bit bytes without a charset decoded as windows-1252"
	}
	return string(out), "unknown charset " + quote(label) + ", decoded as windows-1252"
}

// knownCharset reports whether decodeCharset knows label.
func knownCharset(label string) bool {
	label = normLabel(label)
	if utf8Labels[label] {
		return true
	}
	if _, ok := overrides[label]; ok {
		return true
	}
	_, err := gmcharset.Reader(label, bytes.NewReader(nil))
	return err == nil
}

// quote returns s in double quotes, bounded and without control bytes, for
// warnings.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?")) + `"`
}
