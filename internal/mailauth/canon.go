package mailauth

import (
	"hash"
	"strings"
)

// Canonicalization (RFC 6376 §3.4), for ARC. go-msgauth has the same code
// but does not export it.

// canonHeader canonicalizes one raw header field ("Name: value\r\n").
func canonHeader(raw, alg string) string {
	if alg != "relaxed" {
		return raw
	}
	k, v, ok := strings.Cut(raw, ":")
	if !ok {
		return strings.ToLower(strings.TrimSpace(raw)) + ":\r\n"
	}
	k = strings.ToLower(strings.TrimRight(k, " \t"))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	return k + ":" + v + "\r\n"
}

// bodyHasher canonicalizes a body as it is written and hashes it.
type bodyHasher struct {
	h       hash.Hash
	relaxed bool

	nl    int  // line breaks pending (dropped if only empty lines follow)
	wsp   bool // white space pending (relaxed)
	cr    bool // a CR pending (simple)
	wrote bool // some content was written
	buf   []byte
}

func newBodyHasher(h hash.Hash, alg string) *bodyHasher {
	return &bodyHasher{h: h, relaxed: alg == "relaxed", buf: make([]byte, 0, 4096)}
}

func (b *bodyHasher) Write(p []byte) (int, error) {
	out := b.buf[:0]
	flush := func() {
		for ; b.nl > 0; b.nl-- {
			out = append(out, '\r', '\n')
		}
	}
	for _, c := range p {
		if b.relaxed {
			switch c {
			case '\r':
			case '\n':
				b.wsp = false
				b.nl++
			case ' ', '\t':
				b.wsp = true
			default:
				flush()
				if b.wsp {
					out = append(out, ' ')
					b.wsp = false
				}
				out = append(out, c)
				b.wrote = true
			}
			continue
		}
		switch {
		case c == '\r':
			if b.cr {
				flush()
				out = append(out, '\r')
				b.wrote = true
			}
			b.cr = true
		case c == '\n':
			b.cr = false
			b.nl++
		default:
			flush()
			if b.cr {
				out = append(out, '\r')
				b.cr = false
			}
			out = append(out, c)
			b.wrote = true
		}
		if len(out) > 3072 {
			b.h.Write(out)
			out = out[:0]
		}
	}
	b.h.Write(out)
	b.buf = out
	return len(p), nil
}

// Close ends the body: trailing empty lines are ignored; a simple body
// always ends with one CRLF, a relaxed one only when not empty.
func (b *bodyHasher) Close() error {
	if b.relaxed {
		if b.wrote {
			b.h.Write([]byte("\r\n"))
		}
		return nil
	}
	if b.cr {
		for ; b.nl > 0; b.nl-- {
			b.h.Write([]byte("\r\n"))
		}
		b.h.Write([]byte("\r"))
	}
	b.h.Write([]byte("\r\n"))
	return nil
}

// Sum returns the body hash.
func (b *bodyHasher) Sum() []byte { return b.h.Sum(nil) }

// withoutSignature empties the b= tag of a raw signature field (RFC 6376
// §3.7), keeping everything else as it is.
func withoutSignature(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	i := colon + 1
	for i < len(raw) {
		end := strings.IndexByte(raw[i:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += i
		}
		seg := raw[i:end]
		if eq := strings.IndexByte(seg, '='); eq >= 0 && strings.TrimSpace(seg[:eq]) == "b" {
			rest := raw[end:]
			if end == len(raw) {
				// Keep the field's line ending.
				rest = ""
				if strings.HasSuffix(seg, "\r\n") {
					rest = "\r\n"
				}
			}
			return raw[:i+eq+1] + rest
		}
		i = end + 1
	}
	return raw
}

// headerPicker selects fields for a signature bottom-up, each instance of a
// name once (RFC 6376 §5.4.2).
type headerPicker struct {
	fields []hfield
	used   map[string]int
}

func (p *headerPicker) pick(name string) (string, bool) {
	name = strings.ToLower(name)
	if p.used == nil {
		p.used = map[string]int{}
	}
	skip := p.used[name]
	for i := len(p.fields) - 1; i >= 0; i-- {
		if !strings.EqualFold(p.fields[i].name, name) {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		p.used[name]++
		return p.fields[i].raw, true
	}
	return "", false
}
