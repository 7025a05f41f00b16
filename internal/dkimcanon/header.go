package dkimcanon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Field is one raw header field, "Name: value\r\n" with its folding.
type Field struct {
	// Name is the field name as written, without the white space that may
	// precede the colon.
	Name string
	// Raw is the whole field, continuation lines and line endings included.
	Raw string
}

// Value returns the field's raw value: everything after the colon, folding
// included.
func (f Field) Value() string {
	_, v, _ := strings.Cut(f.Raw, ":")
	return v
}

// MaxHeader is the usual bound on a header block read into memory.
const MaxHeader = 1 << 20

// ErrHeaderTooLarge says that a header block went past its bound.
var ErrHeaderTooLarge = errors.New("header block too large")

// ReadHeader reads a header block as it is, to be sent on: byte for byte,
// up to and including the empty line that ends it (a message without one
// is all header). It returns the bytes read and the fields, whose Raw
// keeps its line endings.
//
// Past max bytes it returns what it read with ErrHeaderTooLarge; the last
// line may then be cut (the rest of it stays in br), and is in the block
// but not in the fields.
func ReadHeader(br *bufio.Reader, max int) ([]byte, []Field, error) {
	var (
		block  bytes.Buffer
		fields []Field
	)
	for {
		line, err := readLine(br, max, false)
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		block.Write(line)
		if block.Len() > max {
			return block.Bytes(), fields, ErrHeaderTooLarge
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			return block.Bytes(), fields, nil // the empty line, or EOF
		}
		fields = appendField(fields, content, string(line))
		if err == io.EOF {
			return block.Bytes(), fields, nil
		}
	}
}

// ReadHeaderCRLF reads a header block as a verifier is given it: a
// leading mbox "From " line skipped, every line ending with CRLF, and the
// block ending with the empty line whether or not the message has one.
// It returns that block and the fields, whose Raw ends lines with CRLF.
//
// A line longer than max is read to its end and only its start kept.
// Once the block is past max bytes, it ends after the current line and is
// returned with ErrHeaderTooLarge; what follows stays in br.
func ReadHeaderCRLF(br *bufio.Reader, max int) ([]byte, []Field, error) {
	var (
		block  bytes.Buffer
		fields []Field
		err    error
	)
	for first := true; ; first = false {
		var line []byte
		line, err = readLine(br, max, true)
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		content := bytes.TrimRight(line, "\r\n")
		if first && bytes.HasPrefix(content, []byte("From ")) {
			continue
		}
		if len(content) == 0 {
			break
		}
		l := string(content) + "\r\n"
		fields = appendField(fields, content, l)
		block.WriteString(l)
		if err == io.EOF {
			break
		}
		if block.Len() > max {
			err = ErrHeaderTooLarge
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	block.WriteString("\r\n")
	return block.Bytes(), fields, err
}

// readLine reads one line with its line ending (none at EOF). Of a line
// longer than max it keeps the first max bytes or a little more: with
// drain it reads the rest of the line and drops it, without it leaves the
// rest unread. The line may be br's buffer, valid until the next read.
func readLine(br *bufio.Reader, max int, drain bool) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	long := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		if !drain && len(long) > max {
			return long, nil
		}
		line, err = br.ReadSlice('\n')
		if !drain || len(long) < max {
			long = append(long, line...)
		}
	}
	return long, err
}

// appendField adds a line to the fields: a new field, or the continuation
// of the last one when it starts with white space (RFC 5322 §2.2.3).
// content is the line without its line ending, raw the line to keep.
func appendField(fields []Field, content []byte, raw string) []Field {
	if (content[0] == ' ' || content[0] == '\t') && len(fields) > 0 {
		fields[len(fields)-1].Raw += raw
		return fields
	}
	name, _, _ := strings.Cut(string(content), ":")
	return append(fields, Field{Name: strings.TrimRight(name, " \t"), Raw: raw})
}

// Picker selects the header fields a signature's h= list names (RFC 6376
// §5.4.2): a name takes its last instance in the header, and each time it
// is named again, the next one up. A name with no instance left selects
// nothing, which is how a signature over one From more than the message
// has is broken by an added From (§8.15).
type Picker struct {
	fields []Field
	used   map[string]int
}

// NewPicker returns a Picker over a header's fields, in header order.
func NewPicker(fields []Field) *Picker {
	return &Picker{fields: fields, used: map[string]int{}}
}

// Pick returns the raw field for the next occurrence of name in h=
// (compared without regard to case), or false.
func (p *Picker) Pick(name string) (string, bool) {
	name = strings.ToLower(name)
	skip := p.used[name]
	for i := len(p.fields) - 1; i >= 0; i-- {
		if !strings.EqualFold(p.fields[i].Name, name) {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		p.used[name]++
		return p.fields[i].Raw, true
	}
	return "", false
}
