package parser

import (
	"bufio"
	"encoding/base64"
	"io"
	"sync"
)

// base64Reader decodes base64 (RFC 2045 §6.8) leniently, like mail readers
// do: characters outside the alphabet are skipped and counted, padding is
// optional, and a padded block may be followed by another block.
type base64Reader struct {
	src     io.Reader
	in      []byte
	carry   [4]byte
	ncarry  int
	out     []byte
	outBuf  []byte
	invalid int // characters skipped
	err     error
}

type b64bufs struct{ in, out []byte }

var b64Pool = sync.Pool{New: func() any { return &b64bufs{in: make([]byte, 16<<10), out: make([]byte, 0, 12<<10+3)} }}

func newBase64Reader(src io.Reader) *base64Reader {
	b := b64Pool.Get().(*b64bufs)
	return &base64Reader{src: src, in: b.in, outBuf: b.out[:0]}
}

// release returns the buffers; the reader must not be used after.
func (r *base64Reader) release() {
	if r.in != nil {
		b64Pool.Put(&b64bufs{in: r.in, out: r.outBuf[:0]})
		r.in, r.outBuf, r.out = nil, nil, nil
	}
}

func (r *base64Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// fill reads one chunk of input and decodes it into r.out.
func (r *base64Reader) fill() {
	n, err := r.src.Read(r.in)
	// Compact the chunk to alphabet characters and '=', counting junk.
	in := r.in[:n]
	clean := in[:0]
	for _, c := range in {
		switch b64class[c] {
		case b64Data:
			// In place: clean never overtakes i.
			clean = clean[:len(clean)+1]
			clean[len(clean)-1] = c
		case b64Space:
		default:
			r.invalid++
		}
	}
	out := r.outBuf[:0]
	for len(clean) > 0 {
		// Complete a carried partial quantum first.
		if r.ncarry > 0 {
			for r.ncarry < 4 && len(clean) > 0 && clean[0] != '=' {
				r.carry[r.ncarry] = clean[0]
				r.ncarry++
				clean = clean[1:]
			}
			if r.ncarry == 4 {
				var d [3]byte
				base64.StdEncoding.Decode(d[:], r.carry[:])
				out = append(out, d[:]...)
				r.ncarry = 0
				continue
			}
			if len(clean) == 0 {
				break
			}
			// '=' ends the carried quantum.
			out = r.finishCarry(out)
			for len(clean) > 0 && clean[0] == '=' {
				clean = clean[1:]
			}
			continue
		}
		if clean[0] == '=' {
			clean = clean[1:] // stray padding
			continue
		}
		seg := clean
		for i, c := range clean {
			if c == '=' {
				seg = clean[:i]
				break
			}
		}
		full := len(seg) / 4 * 4
		if full > 0 {
			start := len(out)
			out = append(out, make([]byte, full/4*3)...)
			base64.StdEncoding.Decode(out[start:], seg[:full])
		}
		r.ncarry = copy(r.carry[:], seg[full:])
		clean = clean[len(seg):]
	}
	r.outBuf = out
	r.out = out
	if err != nil {
		if r.ncarry > 0 {
			r.out = r.finishCarry(r.out)
			r.outBuf = r.out
		}
		r.err = io.EOF
		if err != io.EOF {
			r.err = err
		}
	}
}

const (
	b64Invalid = iota
	b64Data    // alphabet or '='
	b64Space   // line breaks and blanks
)

var b64class = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case isB64(byte(c)) || c == '=':
			t[c] = b64Data
		case c == '\r' || c == '\n' || c == ' ' || c == '\t':
			t[c] = b64Space
		}
	}
	return t
}()

// finishCarry decodes a final quantum of 2 or 3 characters; a single
// character cannot be decoded and counts as invalid.
func (r *base64Reader) finishCarry(out []byte) []byte {
	switch r.ncarry {
	case 1:
		r.invalid++
	case 2, 3:
		var d [3]byte
		n, _ := base64.RawStdEncoding.Decode(d[:], r.carry[:r.ncarry])
		out = append(out, d[:n]...)
	}
	r.ncarry = 0
	return out
}

// qpReader decodes quoted-printable (RFC 2045 §6.7) leniently: an "=" not
// followed by two hex digits is kept as is and counted, trailing white space
// (transport padding) is removed, and line endings are kept as they came.
type qpReader struct {
	br      *bufio.Reader
	out     []byte
	buf     []byte
	invalid int
	err     error
}

func newQPReader(src io.Reader) *qpReader {
	br, ok := src.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(src, 8<<10)
	}
	return &qpReader{br: br, buf: make([]byte, 0, 256)}
}

func (r *qpReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		line, err := r.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			r.err = err
		}
		r.out = r.decodeLine(line, err == nil)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *qpReader) decodeLine(line []byte, complete bool) []byte {
	out := r.buf[:0]
	eol := ""
	if complete {
		line = line[:len(line)-1]
		eol = "\n"
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
			eol = "\r\n"
		}
		// Transport padding.
		for n := len(line); n > 0 && (line[n-1] == ' ' || line[n-1] == '\t'); n = len(line) {
			line = line[:n-1]
		}
	}
	soft := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		if i == len(line)-1 {
			if complete {
				soft = true
			} else {
				out = append(out, c) // continues in the next chunk: rare, keep literally
			}
			break
		}
		if i+2 < len(line) && isHex(line[i+1]) && isHex(line[i+2]) {
			out = append(out, unhex(line[i+1])<<4|unhex(line[i+2]))
			i += 2
			continue
		}
		r.invalid++
		out = append(out, c)
	}
	if !soft {
		out = append(out, eol...)
	}
	r.buf = out
	return out
}

// uuReader decodes uuencoded data (Content-Transfer-Encoding x-uuencode, as
// Python's email package also does): lines before "begin" are skipped, each
// data line starts with its length, and "end" or EOF stops. Bad characters
// are counted.
type uuReader struct {
	br      *bufio.Reader
	started bool
	done    bool
	out     []byte
	buf     []byte
	invalid int
}

func newUUReader(src io.Reader) *uuReader {
	br, ok := src.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(src, 8<<10)
	}
	return &uuReader{br: br}
}

func (r *uuReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.done {
			return 0, io.EOF
		}
		line, err := r.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			r.done = true
		}
		line = trimEOL(line)
		switch {
		case !r.started:
			r.started = len(line) >= 6 && string(line[:6]) == "begin "
		case len(line) >= 3 && string(line[:3]) == "end":
			r.done = true
		default:
			r.out = r.decodeLine(line)
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *uuReader) decodeLine(line []byte) []byte {
	out := r.buf[:0]
	if len(line) == 0 {
		return out
	}
	n := int((line[0] - ' ') & 0x3f)
	data := line[1:]
	for i := 0; i < len(data) && len(out) < n; i += 4 {
		var c [4]byte
		for j := 0; j < 4; j++ {
			ch := byte('`')
			if i+j < len(data) {
				ch = data[i+j]
			}
			if ch < ' ' || ch > '`' {
				r.invalid++
			}
			c[j] = (ch - ' ') & 0x3f
		}
		out = append(out, c[0]<<2|c[1]>>4, c[1]<<4|c[2]>>2, c[2]<<6|c[3])
	}
	if len(out) > n {
		out = out[:n]
	}
	r.buf = out
	return out
}
