package parser

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// field is one header field: its name as written and its value unfolded
// (RFC 5322 §2.2.3: line breaks removed, white space kept) and trimmed,
// still in raw bytes.
type field struct {
	name  string
	value []byte
}

// header is a header block in order.
type header struct {
	fields []field
}

// get returns the value of the first field named name (case-insensitive),
// and false when there is none.
func (h *header) get(name string) ([]byte, bool) {
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].name, name) {
			return h.fields[i].value, true
		}
	}
	return nil, false
}

// all returns the values of every field named name.
func (h *header) all(name string) [][]byte {
	var out [][]byte
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].name, name) {
			out = append(out, h.fields[i].value)
		}
	}
	return out
}

// readLine returns the next line, with its line ending, or what is left
// before EOF. Lines longer than the reader's buffer are joined into buf, up
// to limit bytes; the rest of such a line is dropped and long reports it.
// The result may alias the reader's buffer: it is valid until the next read.
func readLine(br *bufio.Reader, buf *[]byte, limit int) (line []byte, long bool, err error) {
	line, err = br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, false, err
	}
	b := append((*buf)[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = br.ReadSlice('\n')
		if len(b)+len(line) <= limit {
			b = append(b, line...)
		} else {
			long = true
		}
	}
	*buf = b
	return b, long, err
}

// trimEOL removes a trailing "\n" or "\r\n".
func trimEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	return line
}

func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// readHeader reads a header block up to and including the blank line that
// ends it. It is lenient like Python's email parser: a line that is neither
// a field nor a continuation ends the header and is returned in body to be
// read as the first body line; a leading mbox "From " line is skipped.
// Fields past maxBytes are skipped with a warning, so a huge header cannot
// exhaust memory. NUL bytes are kept here and removed when values are
// decoded.
func readHeader(br *bufio.Reader, maxBytes int, warn func(string)) (h header, body []byte) {
	var (
		buf      []byte
		total    int
		skipping bool
		cur      = -1
		first    = true
		dropped  int
	)
	h.fields = make([]field, 0, 16)
	for {
		line, long, err := readLine(br, &buf, maxBytes+1)
		if len(line) == 0 {
			if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
				return h, nil
			}
			break
		}
		total += len(line)
		content := trimEOL(line)
		if len(content) == 0 || (len(content) == 1 && content[0] == '\r') {
			break // the blank line
		}
		if first && bytes.HasPrefix(content, []byte("From ")) {
			first = false
			warn("mbox \"From \" line before the header ignored")
			continue
		}
		first = false
		if long {
			skipping = true
		}
		if total > maxBytes && !skipping {
			skipping = true
		}
		if content[0] == ' ' || content[0] == '\t' {
			if skipping {
				continue
			}
			if cur < 0 {
				warn("header starts with a continuation line; line ignored")
				continue
			}
			h.fields[cur].value = append(h.fields[cur].value, content...)
			if err != nil {
				break
			}
			continue
		}
		colon := bytes.IndexByte(content, ':')
		name := content
		if colon >= 0 {
			name = bytes.TrimRight(content[:colon], " \t")
		}
		if colon < 0 || !validFieldName(name) {
			warn("header not ended by a blank line; the body starts at " + quote(string(clip(content, 40))))
			body = append([]byte(nil), line...)
			break
		}
		if skipping {
			dropped++
			continue
		}
		v := bytes.TrimLeft(content[colon+1:], " \t")
		h.fields = append(h.fields, field{name: internName(name), value: append(make([]byte, 0, len(v)), v...)})
		cur = len(h.fields) - 1
		if err != nil {
			break
		}
	}
	for i := range h.fields {
		h.fields[i].value = bytes.TrimRight(h.fields[i].value, " \t\r")
	}
	if skipping {
		warn("header larger than " + itoa(maxBytes) + " bytes: " + itoa(dropped) + " further fields ignored")
	}
	return h, body
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// commonNames avoids an allocation for the most frequent field names.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Received", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Message-Id",
		"MIME-Version", "Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
		"Content-ID", "Content-Id", "Reply-To", "In-Reply-To", "References", "DKIM-Signature", "Return-Path",
		"X-Mailer", "Sender", "List-Id", "List-Unsubscribe", "Authentication-Results", "ARC-Seal",
		"ARC-Message-Signature", "ARC-Authentication-Results", "Thread-Topic", "Thread-Index",
		"Content-Language", "X-MS-Has-Attach", "X-MS-TNEF-Correlator", "Delivered-To", "X-Received",
		"Precedence", "List-Post", "List-Help", "List-Subscribe", "List-Archive", "Bcc", "Content-Description",
		"Accept-Language", "X-Originating-IP", "User-Agent", "Importance", "X-Priority"} {
		m[n] = n
	}
	return m
}()

func internName(b []byte) string {
	if s, ok := commonNames[string(b)]; ok {
		return s
	}
	return string(b)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
