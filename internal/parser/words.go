package parser

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// decodeWords decodes RFC 2047 encoded words in a header value. It is
// lenient, as mail readers are: encoded words are recognised inside tokens
// and quoted strings, whitespace between adjacent encoded words is dropped
// (RFC 2047 §6.2), adjacent words in the same charset are joined before
// charset decoding so that a character split across words survives, and
// malformed words are kept literally. warn is non-empty when something had
// to be guessed.
func decodeWords(s string) (out string, warn string) {
	if !strings.Contains(s, "=?") {
		return s, ""
	}
	var b strings.Builder
	b.Grow(len(s))
	var (
		pendCharset string // charset of the pending encoded bytes
		pend        []byte // decoded, not yet charset-converted, bytes
	)
	flush := func() {
		if pend == nil {
			return
		}
		t, w := decodeCharset(pendCharset, pend)
		if w != "" && warn == "" {
			warn = w
		}
		b.WriteString(t)
		pend, pendCharset = nil, ""
	}
	literal := func(x string) {
		flush()
		b.WriteString(x)
	}
	for {
		i := strings.Index(s, "=?")
		if i < 0 {
			literal(s)
			break
		}
		charset, enc, text, rest, ok := cutWord(s[i:])
		if !ok {
			literal(s[:i+2])
			s = s[i+2:]
			continue
		}
		if between := s[:i]; pend == nil || !isBlank(between) {
			literal(between)
		}
		raw, bad := decodeWordText(enc, text)
		if bad && warn == "" {
			warn = "malformed encoded word " + quote(s[i:len(s)-len(rest)])
		}
		charset = normLabel(charset)
		if pend != nil && charset != pendCharset {
			flush()
		}
		pendCharset = charset
		if pend == nil {
			pend = []byte{}
		}
		pend = append(pend, raw...)
		s = rest
	}
	return b.String(), warn
}

func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// cutWord splits "=?charset?e?text?=rest". The encoded text may not hold
// whitespace or "?=".
func cutWord(s string) (charset, enc, text, rest string, ok bool) {
	s = s[2:]
	q := strings.IndexByte(s, '?')
	if q <= 0 || q > 64 {
		return
	}
	charset = s[:q]
	for i := 0; i < len(charset); i++ {
		if c := charset[i]; c <= ' ' || c >= 0x7f || c == '=' {
			return
		}
	}
	s = s[q+1:]
	if len(s) < 2 || s[1] != '?' {
		return
	}
	enc = s[:1]
	s = s[2:]
	end := strings.Index(s, "?=")
	if end < 0 {
		return
	}
	text = s[:end]
	if strings.ContainsAny(text, " \t\r\n") {
		return
	}
	return charset, enc, text, s[end+2:], true
}

// decodeWordText decodes the B or Q encoded text of a word; bad reports
// characters that had to be skipped.
func decodeWordText(enc, text string) (b []byte, bad bool) {
	switch enc {
	case "B", "b":
		return decodeB(text)
	case "Q", "q":
		return decodeQ(text)
	}
	return []byte(text), true
}

func decodeB(text string) ([]byte, bool) {
	clean := make([]byte, 0, len(text))
	bad := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if isB64(c) {
			clean = append(clean, c)
		} else if c != '=' {
			bad = true
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
		bad = true
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		bad = true
	}
	return out[:n], bad
}

func decodeQ(text string) ([]byte, bool) {
	out := make([]byte, 0, len(text))
	bad := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		case c == '=':
			out = append(out, c)
			bad = true
		default:
			out = append(out, c)
		}
	}
	return out, bad
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// headerText turns the raw bytes of a header value into UTF-8: valid UTF-8
// (RFC 6532) is kept, other 8-bit bytes are decoded as fallback (the
// message's charset, or windows-1252).
func headerText(raw []byte, fallback string) (string, string) {
	if utf8.Valid(raw) {
		return string(raw), ""
	}
	if fallback == "" || utf8Labels[normLabel(fallback)] {
		fallback = "windows-1252"
	}
	s, _ := decodeCharset(fallback, raw)
	return s, "8-bit bytes decoded as " + normLabel(fallback)
}
