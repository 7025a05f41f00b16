package smtpgw

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/message"
)

// bodyReader passes message data from go-smtp to the store. It
//
//   - reads DATA with a dotReader straight from the connection when it can
//     (takeOverDATA), which refuses every bare <LF> and bare <CR> on the
//     wire; BDAT chunks (RFC 3030), which carry no dot-stuffing, and DATA
//     under an unknown go-smtp are checked for bare newlines as they come;
//   - stops at the size limit (RFC 1870);
//   - pushes the connection's read deadline forward as data arrives, so a
//     large message is bounded per block (RFC 5321 §4.5.3.2), not in all;
//   - counts the bytes and notes when the data ended, which starts the
//     store's commit timeout.
type bodyReader struct {
	src     io.Reader  // a dotReader, or what go-smtp passed to Data
	dot     *dotReader // non-nil when src is the wire-exact reader
	bdat    bool       // the data comes in BDAT chunks (RFC 3030)
	release func()     // marks go-smtp's DATA reader finished
	conn    net.Conn
	timeout time.Duration
	max     int64
	onEOF   func()

	n        int64
	prevCR   bool
	err      error // the first error: ours or the reader's
	errAt    int64 // offset of a bare newline in the message data
	eofAt    time.Time
	extended time.Time
	finished bool
}

func newBodyReader(r io.Reader, c net.Conn, timeout time.Duration, max int64) *bodyReader {
	b := &bodyReader{src: r, conn: c, timeout: timeout, max: max}
	_, b.bdat = r.(*io.PipeReader) // go-smtp passes BDAT chunks through a pipe
	if d, release, ok := takeOverDATA(r); ok {
		b.src, b.dot, b.release = d, d, release
	}
	return b
}

// done tells go-smtp that the data has been read; Data must call it
// before it returns.
func (b *bodyReader) done() {
	if b.release != nil {
		b.release()
		b.release = nil
	}
}

func (b *bodyReader) extend() {
	if now := time.Now(); now.Sub(b.extended) >= time.Second {
		_ = b.conn.SetReadDeadline(now.Add(b.timeout))
		b.extended = now
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.finished {
		return 0, io.EOF
	}
	b.extend()
	n, err := b.src.Read(p)
	if n > 0 && b.dot == nil {
		if off, ferr := b.scan(p[:n]); ferr != nil {
			b.err, b.errAt = ferr, b.n+int64(off)
			b.n += int64(n)
			return 0, ferr
		}
	}
	b.n += int64(n)
	if b.n > b.max {
		b.err = errTooLarge
		return 0, b.err
	}
	switch {
	case err == io.EOF:
		if b.prevCR {
			b.err, b.errAt = errBareCR, b.n-1
			return 0, b.err
		}
		b.finished = true
		b.eofAt = time.Now()
		if b.onEOF != nil {
			b.onEOF()
		}
	case err != nil:
		b.err = err
		if errors.Is(err, errBareLF) || errors.Is(err, errBareCR) {
			b.errAt = b.n
		}
	}
	return n, err
}

// scan finds the first bare <LF> or <CR> in p, given whether the previous
// chunk ended with <CR>, and returns its offset.
func (b *bodyReader) scan(p []byte) (int, error) {
	first, ferr := -1, error(nil)
	note := func(i int, err error) {
		if first < 0 || i < first {
			first, ferr = i, err
		}
	}
	if b.prevCR && p[0] != '\n' {
		note(0, errBareCR)
	}
	for off := 0; off < len(p); {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			break
		}
		i += off
		if (i == 0 && !b.prevCR) || (i > 0 && p[i-1] != '\r') {
			note(i, errBareLF)
			break
		}
		off = i + 1
	}
	for off := 0; off < len(p); {
		i := bytes.IndexByte(p[off:], '\r')
		if i < 0 {
			break
		}
		i += off
		if i+1 < len(p) && p[i+1] != '\n' {
			note(i, errBareCR)
			break
		}
		off = i + 1
	}
	b.prevCR = p[len(p)-1] == '\r'
	return first, ferr
}

// drain reads and discards the rest of the data after a message too large
// or a store failure, so that the reply follows the end of the data, as
// RFC 5321 requires. It is not used after a bare newline, where the end
// of the data is in doubt: that session ends instead.
func (b *bodyReader) drain() {
	if b.finished {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		b.extend()
		n, err := b.src.Read(buf)
		b.n += int64(n)
		if err != nil {
			return
		}
	}
}

// traceHeaders returns the header fields the gateway prepends: the
// Received-SPF field when SPF was checked (RFC 7208 §9.1, above Received)
// and the Received trace field (RFC 5321 §4.4).
func (s *session) traceHeaders(tx *transaction, env message.Envelope, now time.Time) string {
	var sb strings.Builder
	if tx.spf != nil {
		sb.WriteString(receivedSPF(s.g.cfg.Hostname, tx.spf, s.c.remote.Addr(), tx.from, s.c.helo))
	}
	sb.WriteString(received(receivedInfo{
		helo:       s.c.helo,
		ip:         s.c.remote.Addr(),
		by:         s.g.cfg.Hostname,
		id:         tx.id,
		rcpts:      tx.rcpts,
		tls:        env.TLS,
		tlsVersion: env.TLSVersion,
		tlsCipher:  env.TLSCipher,
		auth:       env.AuthUser != "",
		utf8:       env.SMTPUTF8,
		at:         now,
	}))
	return sb.String()
}

type receivedInfo struct {
	helo                  string
	ip                    netip.Addr
	by                    string
	id                    string
	rcpts                 []string
	tls                   bool
	tlsVersion, tlsCipher string
	auth, utf8            bool
	at                    time.Time
}

var (
	domainRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)
	literalRE = regexp.MustCompile(`^\[(IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]$`)
)

// received formats the Received field of RFC 5321 §4.4:
//
//	Received: from HELO ([IP])
//		by HOST (letterbox) with ESMTPS id ID
//		for <rcpt>
//		(using TLS1.3 with cipher TLS_AES_128_GCM_SHA256);
//		Mon, 2 Jan 2006 15:04:05 +0000
//
// The protocol is one of RFC 3848's and RFC 6531's (ESMTP, ESMTPS,
// ESMTPSA, UTF8SMTPS…). "for" names the recipient only when there is one,
// so that a message does not reveal its other recipients (RFC 5321 §7.2).
// A HELO that is not a domain or address literal goes into a comment.
func received(r receivedInfo) string {
	var sb strings.Builder
	from := r.helo
	if !domainRE.MatchString(from) && !literalRE.MatchString(from) {
		from = "unknown (helo=" + commentSafe(r.helo) + ")"
	}
	fmt.Fprintf(&sb, "Received: from %s (%s)\r\n", from, addressLiteral(r.ip))
	proto := "ESMTP"
	if r.utf8 {
		proto = "UTF8SMTP"
	}
	if r.tls {
		proto += "S"
	}
	if r.auth {
		proto += "A"
	}
	fmt.Fprintf(&sb, "\tby %s (letterbox) with %s id %s", r.by, proto, r.id)
	if len(r.rcpts) == 1 && len(r.rcpts[0]) < 900 && !strings.ContainsAny(r.rcpts[0], "\r\n") {
		fmt.Fprintf(&sb, "\r\n\tfor <%s>", r.rcpts[0])
	}
	if r.tls {
		fmt.Fprintf(&sb, "\r\n\t(using %s with cipher %s)", strings.ReplaceAll(r.tlsVersion, " ", ""), r.tlsCipher)
	}
	fmt.Fprintf(&sb, ";\r\n\t%s\r\n", r.at.UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700"))
	return sb.String()
}

// addressLiteral formats an IP as RFC 5321 §4.1.3 does.
func addressLiteral(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.Unmap().String() + "]"
}

// commentSafe keeps printable ASCII that cannot end or nest a comment.
func commentSafe(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s) && sb.Len() < 64; i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == '\\' {
			c = '?'
		}
		sb.WriteByte(c)
	}
	return sb.String()
}
