package smtpgw

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"unsafe"
)

// Errors of message data that the gateway refuses.
var (
	errBareLF   = errors.New("bare <LF> in message data")
	errBareCR   = errors.New("bare <CR> in message data")
	errTooLarge = errors.New("message larger than the limit")
)

// dotReader reads the text of a DATA command from the wire (RFC 5321
// §4.1.1.4): it undoes dot-stuffing (§4.5.2) and ends at
// <CR><LF>.<CR><LF> and nowhere else. A <LF> not preceded by <CR>, or a
// <CR> not followed by <LF>, anywhere — including the end-of-data
// variants of SMTP smuggling (CVE-2023-51764 class: <LF>.<LF>,
// <CR><LF>.<CR>, <CR>.<CR>…) — stops it with errBareLF or errBareCR. The
// gateway then answers 550 5.5.2 and disconnects, as Postfix's
// smtpd_forbid_bare_newline does, so no later byte of the connection is
// ever taken as a command.
//
// go-smtp's own DATA reader cannot do this: it never ends at a bare
// newline, but it drops the <CR> of a line beginning ".<CR>" (so a
// <CR><LF>.<CR> variant reaches the backend with no bare <CR> left), and
// after ".<CR><CR><LF>" it misses the start of the next line. The gateway
// therefore reads DATA from go-smtp's buffered connection reader itself;
// see takeOverDATA.
//
// The go-smtp code at fault (v0.25.1) is (*dataReader).Read in data.go:
// in stateDot a <CR> is consumed without being emitted, and stateDotCR
// goes to stateData on any byte but <LF> without emitting the saved <CR>,
// where net/textproto's (*dotReader).Read, the code it copies, unreads the
// byte and emits the <CR>. And (*Conn).handleData in conn.go reads the
// rest of the data up to <CR><LF>.<CR><LF> after Data returns, whatever
// Data said. takeOverDATA can go once go-smtp emits that <CR> and lets a
// refused DATA end the connection without reading on — or offers a Server
// option that refuses bare newlines in DATA itself, as Postfix's
// smtpd_forbid_bare_newline does. TestTakeOverDATA fails when a go-smtp
// upgrade breaks the takeover.
type dotReader struct {
	br    *bufio.Reader
	state int
	err   error
}

const (
	dotBeginLine = iota // at the start of a line
	dotDot              // read "." at the start of a line
	dotDotCR            // read ".<CR>" at the start of a line
	dotCR               // read <CR> elsewhere
	dotData             // inside a line
	dotEOF              // read the end-of-data line
)

func (d *dotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := 0
	for n < len(p) && d.state != dotEOF {
		c, err := d.br.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return n, err
		}
		switch d.state {
		case dotBeginLine:
			switch c {
			case '.':
				d.state = dotDot
				continue
			case '\r':
				d.state = dotCR
			case '\n':
				d.err = errBareLF
			default:
				d.state = dotData
			}
		case dotDot:
			switch c {
			case '\r':
				d.state = dotDotCR
				continue
			case '\n':
				d.err = errBareLF
			default:
				// The stuffed dot is removed (§4.5.2).
				d.state = dotData
			}
		case dotDotCR:
			if c == '\n' {
				d.state = dotEOF
				continue
			}
			d.err = errBareCR
		case dotCR:
			if c == '\n' {
				d.state = dotBeginLine
			} else {
				d.err = errBareCR
			}
		case dotData:
			switch c {
			case '\r':
				d.state = dotCR
			case '\n':
				d.err = errBareLF
			}
		}
		if d.err != nil {
			return n, d.err
		}
		p[n] = c
		n++
	}
	if d.state == dotEOF {
		return n, io.EOF
	}
	return n, nil
}

// takeOverDATA returns a dotReader over the buffered connection reader
// under go-smtp's DATA reader r, and a function that marks r as finished,
// so that go-smtp neither reads nor discards anything more of the data
// once Data returns. It returns ok=false when r is not the go-smtp
// v0.25 dataReader it knows (BDAT's pipe, or another go-smtp version);
// the gateway then checks what r returns instead, which is weaker (see
// dotReader).
func takeOverDATA(r io.Reader) (d *dotReader, finish func(), ok bool) {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, nil, false
	}
	e := v.Elem()
	t := e.Type()
	if t.PkgPath() != "github.com/emersion/go-smtp" || t.Name() != "dataReader" || e.Kind() != reflect.Struct {
		return nil, nil, false
	}
	fr, fs := e.FieldByName("r"), e.FieldByName("state")
	if !fr.IsValid() || fr.Type() != reflect.TypeFor[*bufio.Reader]() || fr.IsNil() ||
		!fs.IsValid() || fs.Kind() != reflect.Int || fs.Int() != 0 {
		return nil, nil, false
	}
	br := (*bufio.Reader)(fr.UnsafePointer())
	state := (*int)(unsafe.Pointer(fs.UnsafeAddr()))
	// go-smtp's dataReader.Read stops at once in its last state,
	// stateEOF, the sixth of its states (data.go in v0.25.1).
	const goSMTPStateEOF = 5
	return &dotReader{br: br}, func() { *state = goSMTPStateEOF }, true
}
