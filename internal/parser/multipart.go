package parser

import (
	"bufio"
	"bytes"
	"io"
)

const (
	statePreamble = iota
	statePart
	stateBetween
	stateDone
)

// maxPreamble bounds the preamble kept for a multipart without any part,
// which is then read as text.
const maxPreamble = 1 << 20

// multipartReader splits a multipart body (RFC 2046 §5.1.1) into parts as a
// stream. Lenient like Python's email parser: LF or CRLF line endings,
// white space after a delimiter, a missing closing delimiter (the parts end
// at EOF, which for a nested multipart is the enclosing delimiter) and junk
// between parts are all accepted.
type multipartReader struct {
	br   *bufio.Reader
	dash []byte // "--" + boundary

	state     int
	lineStart bool
	held      [2]byte // the line ending of the last line, held back because
	nheld     int     // the CRLF before a delimiter belongs to the delimiter
	out       [2]byte
	eolOut    []byte
	cur       []byte

	parts     int
	closed    bool // the closing delimiter was seen
	preamble  []byte
	truncated bool // the preamble exceeded maxPreamble
}

func newMultipartReader(br *bufio.Reader, boundary string) *multipartReader {
	return &multipartReader{br: br, dash: []byte("--" + boundary), lineStart: true}
}

// isDelimiter reports whether a whole line is a delimiter line for this
// boundary, and whether it is the closing one.
func (r *multipartReader) isDelimiter(line []byte) (ok, closing bool) {
	if !bytes.HasPrefix(line, r.dash) {
		return false, false
	}
	rest := line[len(r.dash):]
	if bytes.HasPrefix(rest, []byte("--")) {
		closing = true
		rest = rest[2:]
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false, false
		}
	}
	return true, closing
}

// Next skips the rest of the current part and moves to the next one. It
// returns false after the closing delimiter or at EOF.
func (r *multipartReader) Next() bool {
	switch r.state {
	case statePart:
		io.Copy(io.Discard, r)
		if r.state != stateBetween {
			return false
		}
	case statePreamble:
		for {
			line, err := r.br.ReadSlice('\n')
			atStart := r.lineStart
			r.lineStart = err != bufio.ErrBufferFull
			if atStart && len(line) > 0 && err != bufio.ErrBufferFull {
				if ok, closing := r.isDelimiter(line); ok {
					if closing {
						r.closed = true
						r.state = stateDone
						return false
					}
					break
				}
			}
			if len(r.preamble) < maxPreamble {
				r.preamble = append(r.preamble, line...)
			} else {
				r.truncated = true
			}
			if err != nil && err != bufio.ErrBufferFull {
				r.state = stateDone
				return false
			}
		}
	case stateBetween:
	default:
		return false
	}
	if r.closed {
		r.state = stateDone
		return false
	}
	r.state = statePart
	r.lineStart = true
	r.nheld = 0
	r.cur, r.eolOut = nil, nil
	r.parts++
	return true
}

// Read reads the current part's body. It returns as many lines as fit in
// p and are already buffered, not one line per call: a part nested in n
// multiparts passes through n readers, each paying per call.
func (r *multipartReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.eolOut) > 0 {
			c := copy(p[n:], r.eolOut)
			r.eolOut = r.eolOut[c:]
			n += c
			continue
		}
		if len(r.cur) > 0 {
			c := copy(p[n:], r.cur)
			r.cur = r.cur[c:]
			n += c
			continue
		}
		if r.state != statePart || (n > 0 && r.br.Buffered() == 0) {
			break
		}
		line, err := r.br.ReadSlice('\n')
		atStart := r.lineStart
		r.lineStart = err != bufio.ErrBufferFull
		if atStart && len(line) > 0 && err != bufio.ErrBufferFull {
			if ok, closing := r.isDelimiter(line); ok {
				r.closed = closing
				r.state = stateBetween
				r.nheld = 0
				break
			}
		}
		if len(line) == 0 && err != nil && err != bufio.ErrBufferFull {
			r.state = stateDone
			break
		}
		r.out = r.held
		r.eolOut = r.out[:r.nheld]
		r.nheld = 0
		if err == nil {
			content := line[:len(line)-1]
			r.held[0] = '\n'
			r.nheld = 1
			if n := len(content); n > 0 && content[n-1] == '\r' {
				content = content[:n-1]
				r.held = [2]byte{'\r', '\n'}
				r.nheld = 2
			}
			r.cur = content
		} else {
			r.cur = line
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// missingClose reports whether the body ended without a closing delimiter.
func (r *multipartReader) missingClose() bool { return !r.closed }
