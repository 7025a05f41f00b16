package parser

import (
	"sort"
	"strconv"
	"strings"
)

// parseMediaHeader parses a Content-Type or Content-Disposition value
// (RFC 2045 §5.1, RFC 2183) into a lower-cased value and parameters, with
// RFC 2231 continuations and charsets and RFC 2047 encoded words in values
// (which Outlook and others send) decoded. It never fails: unquoted values
// with spaces, unterminated quotes and stray semicolons are accepted, and
// warn notes what was odd.
func parseMediaHeader(s string) (value string, params map[string]string, warn string) {
	semi := strings.IndexByte(s, ';')
	if semi < 0 {
		semi = len(s)
	}
	value = strings.ToLower(strings.TrimSpace(stripComment(s[:semi])))
	s = s[min(semi+1, len(s)):]
	type section struct {
		n        int
		extended bool
		v        string
	}
	var sections map[string][]section
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t\r\n;")
		if s == "" {
			break
		}
		eq := strings.IndexAny(s, "=;")
		if eq < 0 || s[eq] == ';' {
			// A parameter without a value.
			bad := s
			if eq >= 0 {
				bad = s[:eq]
			}
			if warn == "" {
				warn = "parameter without value " + quote(strings.TrimSpace(bad))
			}
			if eq < 0 {
				break
			}
			s = s[eq+1:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t\r\n")
		var v string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			closed := false
			for ; i < len(s); i++ {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					i++
					b.WriteByte(s[i])
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				if c == '\r' || c == '\n' {
					continue
				}
				b.WriteByte(c)
			}
			if !closed && warn == "" {
				warn = "unterminated quoted parameter " + quote(name)
			}
			v = b.String()
			s = s[i:]
			// Skip anything up to the next separator.
			if j := strings.IndexByte(s, ';'); j >= 0 {
				s = s[j:]
			} else {
				s = ""
			}
		} else {
			j := strings.IndexByte(s, ';')
			if j < 0 {
				j = len(s)
			}
			v = strings.TrimSpace(stripComment(s[:j]))
			s = s[j:]
		}
		if name == "" {
			continue
		}
		// RFC 2231 §3, §4: name*, name*N, name*N*.
		base, n, extended := name, -1, false
		if strings.HasSuffix(base, "*") {
			extended = true
			base = base[:len(base)-1]
		}
		if k := strings.IndexByte(base, '*'); k >= 0 {
			if num, err := strconv.Atoi(base[k+1:]); err == nil && num >= 0 && num < 1000 {
				n = num
				base = base[:k]
			}
		}
		if n < 0 && !extended {
			if params == nil {
				params = make(map[string]string, 4)
			}
			if _, dup := params[base]; !dup {
				params[base] = v
			}
			continue
		}
		if sections == nil {
			sections = make(map[string][]section)
		}
		if n < 0 {
			n = 0
		}
		sections[base] = append(sections[base], section{n, extended, v})
	}
	for name, secs := range sections {
		sort.SliceStable(secs, func(i, j int) bool { return secs[i].n < secs[j].n })
		var raw []byte
		charset := ""
		for i, sec := range secs {
			v := sec.v
			if sec.extended {
				if i == 0 {
					// charset'language'value
					if a := strings.IndexByte(v, '\''); a >= 0 {
						if b := strings.IndexByte(v[a+1:], '\''); b >= 0 {
							charset = v[:a]
							v = v[a+1+b+1:]
						}
					}
				}
				raw = append(raw, percentDecode(v)...)
			} else {
				raw = append(raw, v...)
			}
		}
		text, w := decodeCharset(charset, raw)
		if w != "" && warn == "" {
			warn = "parameter " + name + ": " + w
		}
		if params == nil {
			params = make(map[string]string, 4)
		}
		// RFC 2231 values win over plain ones of the same name.
		params[name] = text
	}
	for k, v := range params {
		if strings.Contains(v, "=?") {
			d, w := decodeWords(v)
			params[k] = d
			if w != "" && warn == "" {
				warn = "parameter " + k + ": " + w
			}
		}
	}
	return value, params, warn
}

func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// stripComment removes RFC 5322 comments "(...)" outside quoted strings.
func stripComment(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth := 0
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote:
			if c == '\\' && i+1 < len(s) {
				b.WriteByte(c)
				i++
				c = s[i]
			} else if c == '"' {
				inQuote = false
			}
			b.WriteByte(c)
		case depth > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '(':
			depth++
		case c == '"':
			inQuote = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
