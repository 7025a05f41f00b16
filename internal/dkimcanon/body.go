package dkimcanon

import "hash"

// BareCR says what a BodyHasher makes of a CR that is not followed by LF.
// In every case a bare LF ends a line as CRLF does, since a stored message
// may have either and SMTP sends both as CRLF.
type BareCR int

const (
	// CRContent keeps a bare CR as a character of its line, at the end of
	// the body too.
	CRContent BareCR = iota
	// CRAsSent keeps a bare CR as a character of its line, except at the
	// very end of the body, where it is a line end: the body as
	// net/textproto's DotWriter sends it, so what a receiver hashes.
	CRAsSent
	// CRIgnored drops every CR: LF alone ends lines.
	CRIgnored
)

// BodyHasher canonicalizes a message body as it is written and hashes it
// (RFC 6376 §3.4.3 simple, §3.4.4 relaxed). Memory stays bounded whatever
// the body's size. Trailing empty lines are dropped; relaxed also makes
// each run of white space one space and drops it at the end of a line.
type BodyHasher struct {
	h       hash.Hash
	relaxed bool
	cr      BareCR

	nl      int  // line ends pending: dropped if only empty lines follow
	wsp     bool // white space pending inside the line (relaxed)
	pending bool // a CR pending: a line end if LF follows
	wrote   bool // some content was written
	closed  bool
	buf     []byte
}

// NewBodyHasher returns a hasher that canonicalizes with alg, treats bare
// CRs as cr says, and writes the canonical body to h.
func NewBodyHasher(h hash.Hash, alg Algorithm, cr BareCR) *BodyHasher {
	return &BodyHasher{h: h, relaxed: alg == Relaxed, cr: cr, buf: make([]byte, 0, 4096)}
}

// Write canonicalizes p as the next part of the body. It never fails.
func (b *BodyHasher) Write(p []byte) (int, error) {
	out := b.buf[:0]
	for _, c := range p {
		if b.pending {
			b.pending = false
			if c == '\n' {
				b.endLine()
				continue
			}
			out = b.char(out, '\r') // a bare CR
		}
		switch c {
		case '\r':
			b.pending = b.cr != CRIgnored
		case '\n':
			b.endLine()
		case ' ', '\t':
			if b.relaxed {
				b.wsp = true
			} else {
				out = b.char(out, c)
			}
		default:
			out = b.char(out, c)
		}
		if len(out) >= 3072 {
			b.h.Write(out)
			out = out[:0]
		}
	}
	b.h.Write(out)
	b.buf = out
	return len(p), nil
}

// char appends one character of a line to out, after the line ends and
// the white space held back before it.
func (b *BodyHasher) char(out []byte, c byte) []byte {
	for ; b.nl > 0; b.nl-- {
		out = append(out, '\r', '\n')
	}
	if b.wsp {
		out = append(out, ' ')
		b.wsp = false
	}
	b.wrote = true
	return append(out, c)
}

// endLine drops the line's trailing white space and holds its line end
// back, so that trailing empty lines can be dropped.
func (b *BodyHasher) endLine() {
	b.wsp = false
	b.nl++
}

// Close ends the body: a simple body always ends with one CRLF (an empty
// body is CRLF alone), a relaxed one only when it is not empty. Calls after
// the first do nothing.
func (b *BodyHasher) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.pending && b.cr == CRContent {
		b.h.Write(b.char(b.buf[:0], '\r'))
	}
	b.pending = false
	if !b.relaxed || b.wrote {
		b.h.Write([]byte("\r\n"))
	}
	return nil
}

// Sum ends the body if Close has not, and returns its hash.
func (b *BodyHasher) Sum() []byte {
	b.Close()
	return b.h.Sum(nil)
}
