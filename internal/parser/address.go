package parser

import (
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/message"
	"golang.org/x/net/idna"
)

// addrParser parses mailboxes with go-message's charset-aware word decoder.
var addrParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charsetReader}}

func charsetReader(label string, input io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	s, _ := decodeCharset(label, b)
	return strings.NewReader(s), nil
}

// parseAddressList parses an address-list (RFC 5322 §3.4) into mailboxes,
// recording for each the group it was listed in. Display names are decoded
// (RFC 2047), internationalised addresses (RFC 6532) are kept in UTF-8 with
// their IDNA forms alongside, and sub-address tags are extracted. Items
// that do not parse are recovered leniently (an address in angle brackets,
// or a word with an "@"), with a warning; items where no addr-spec is
// found are reported in warns. clean says that every item was read as RFC
// 5322 writes it, without recovery. Every Address is a well-formed
// addr-spec, whatever the input.
func parseAddressList(s string) (out []message.Address, warns []string, clean bool) {
	clean = true
	for _, item := range splitAddressList(s) {
		if strings.TrimSpace(item.text) == "" {
			continue
		}
		a, how := parseMailbox(item.text)
		if how == unparseable {
			warns = append(warns, "unparseable address "+quote(strings.TrimSpace(item.text)))
			clean = false
			continue
		}
		if how != strict {
			warns = append(warns, string(how)+" "+quote(strings.TrimSpace(item.text))+" read as "+a.Address)
			clean = false
		}
		if item.group != "" {
			g, _ := decodeWords(strings.TrimSpace(unquote(strings.TrimSpace(item.group))))
			a.Group = g
		}
		out = append(out, a)
	}
	return out, warns, clean
}

type addrItem struct {
	group string
	text  string
}

// splitAddressList splits at top-level commas, tracking "name: ...;" groups,
// and respecting quoted strings, comments and angle brackets.
func splitAddressList(s string) []addrItem {
	var (
		items   []addrItem
		group   string
		inGroup bool
		start   int
		depth   int // comment nesting
		quoted  bool
		angle   bool
	)
	emit := func(end int) {
		items = append(items, addrItem{group: group, text: s[start:end]})
		start = end + 1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case depth > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == '<':
			// Only a bracket closed before the next comma opens an
			// address, except that a source route (RFC 5322 §4.4
			// obs-route, "<@a,@b:x@c>") lists its domains with commas.
			if j := strings.IndexAny(s[i:], ">,"); j >= 0 && s[i+j] == '>' {
				angle = true
			} else if route, rest, ok := cutRoute(s[i+1:]); ok && !strings.ContainsAny(route, "<\"") && strings.Contains(rest, ">") {
				angle = true
			}
		case c == '>':
			angle = false
		case angle:
		case c == ',':
			emit(i)
		case c == ':' && !inGroup:
			// "display-name:" starts a group, unless it looks like a route
			// or the colon is inside an address.
			name := s[start:i]
			if !strings.ContainsAny(name, "@<") {
				group = name
				inGroup = true
				start = i + 1
			}
		case c == ';' && inGroup:
			emit(i)
			group, inGroup = "", false
		}
	}
	if start < len(s) {
		items = append(items, addrItem{group: group, text: s[start:]})
	}
	return items
}

// How a mailbox was read.
type readAs string

const (
	strict      readAs = ""                  // as RFC 5322 writes it
	routed      readAs = "source route in"   // an obs-route dropped (RFC 5322 §4.4)
	lenient     readAs = "malformed mailbox" // an addr-spec recovered from around it
	unparseable readAs = "unparseable"       // no addr-spec found
)

// parseMailbox reads one mailbox (RFC 5322 §3.4): strictly when it can,
// else leniently from an address in angle brackets or a word with an "@".
// Either way the Address is a well-formed addr-spec (see addrSpec).
func parseMailbox(text string) (message.Address, readAs) {
	text = strings.TrimSpace(text)
	how := strict
	if lt := angleOpen(text); lt >= 0 {
		if _, rest, ok := cutRoute(text[lt+1:]); ok {
			// The route's domains are not the author's: drop them, so
			// that neither the JSON nor DMARC ever reads one.
			text = text[:lt+1] + rest
			how = routed
		}
	}
	if a, err := addrParser.Parse(text); err == nil {
		if spec, ok := canonical(a.Address); ok {
			return newAddress(a.Name, spec), how
		}
	}
	// Lenient recovery.
	if lt := strings.LastIndexByte(text, '<'); lt >= 0 {
		rest := text[lt+1:]
		if gt := strings.IndexByte(rest, '>'); gt >= 0 {
			rest = rest[:gt]
		}
		if spec, ok := addrSpec(strings.TrimSpace(rest)); ok {
			name := strings.TrimSpace(stripComment(text[:lt]))
			name, _ = decodeWords(unquote(name))
			return newAddress(name, spec), lenient
		}
	}
	for _, f := range strings.Fields(stripComment(text)) {
		f = strings.Trim(f, "<>,;\"'")
		if spec, ok := addrSpec(f); ok {
			name := strings.TrimSpace(strings.Replace(stripComment(text), f, "", 1))
			name = strings.Trim(name, "<>\"' ")
			name, _ = decodeWords(name)
			return newAddress(name, spec), lenient
		}
	}
	return message.Address{}, unparseable
}

// angleOpen returns the index of the "<" that opens a mailbox's
// angle-addr: the last one outside quoted strings and comments, or -1.
func angleOpen(s string) int {
	lt, depth, quoted := -1, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '"':
			quoted = true
		case c == '<':
			lt = i
		}
	}
	return lt
}

// cutRoute splits a source route (RFC 5322 §4.4 obs-route, "@a,@b:") from
// the start of s, the text after an angle-addr's "<".
func cutRoute(s string) (route, rest string, ok bool) {
	t := strings.TrimLeft(s, " \t")
	if !strings.HasPrefix(t, "@") {
		return "", s, false
	}
	colon := strings.IndexByte(t, ':')
	if colon < 0 {
		return "", s, false
	}
	if gt := strings.IndexByte(t, '>'); gt >= 0 && gt < colon {
		return "", s, false
	}
	return t[:colon+1], t[colon+1:], true
}

// addrSpec reads s as exactly one addr-spec (RFC 5322 §3.4.1) and returns
// it in canonical form.
func addrSpec(s string) (string, bool) {
	if s == "" || strings.ContainsAny(s, "<>") {
		return "", false
	}
	a, err := addrParser.Parse("<" + s + ">")
	if err != nil || a.Name != "" {
		return "", false
	}
	return canonical(a.Address)
}

// canonical writes an address as net/mail returns it (local part
// unquoted, then "@" and the domain, which holds no "@") as a well-formed
// addr-spec: the local part a dot-atom, or a quoted string when it is not
// one. `"x@bank.example"@evil.example` keeps its quotes, so that no reader
// takes bank.example for its domain.
func canonical(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", false
	}
	local, domain := addr[:at], addr[at+1:]
	if isDotAtom(local) {
		return addr, true
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range local {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteString(`"@`)
	b.WriteString(domain)
	return b.String(), true
}

// isDotAtom reports whether s is a dot-atom (RFC 5322 §3.2.3), with UTF-8
// allowed in atext (RFC 6532 §3.2).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return false
		}
	}
	return true
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		if strings.Contains(s, `\`) {
			var b strings.Builder
			for i := 0; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			s = b.String()
		}
	}
	return s
}

func newAddress(name, addr string) message.Address {
	clean := func(s string) string { return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "") }
	name, addr = clean(name), clean(addr)
	a := message.Address{Name: name, Address: addr, MailboxHash: mailboxHash(addr)}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return a
	}
	local, domain := addr[:at], addr[at+1:]
	if !isASCII([]byte(domain)) {
		if d, err := idna.Lookup.ToASCII(domain); err == nil && d != domain {
			a.AddressASCII = local + "@" + d
		}
	} else if strings.Contains(strings.ToLower(domain), "xn--") {
		if d, err := idna.Lookup.ToUnicode(domain); err == nil && d != domain {
			a.AddressUnicode = local + "@" + d
		}
	}
	return a
}

// mailboxHash returns the sub-address tag of an address: "tag" for
// user+tag@domain.
func mailboxHash(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	local := addr[:at]
	if strings.HasPrefix(local, `"`) {
		return ""
	}
	if plus := strings.IndexByte(local, '+'); plus >= 0 {
		return local[plus+1:]
	}
	return ""
}

// Recipients returns the envelope recipients with their sub-address tags.
func Recipients(rcpt []string) []message.Recipient {
	if len(rcpt) == 0 {
		return nil
	}
	out := make([]message.Recipient, len(rcpt))
	for i, r := range rcpt {
		r = strings.Trim(strings.TrimSpace(r), "<>")
		out[i] = message.Recipient{Address: r, MailboxHash: mailboxHash(r)}
	}
	return out
}

// fromField reads the From field (RFC 5322 §3.6.2) once for both of its
// readers: the parsed message's from, which is the first mailbox whatever
// the field holds, and DMARC's From identity (RFC 7489 §6.6.1), which is
// that same mailbox's domain, and a Problem (DMARC permerror, never pass)
// unless the header has exactly one From field naming exactly one
// mailbox, read as RFC 5322 writes it. Every problem is also a warning.
func (p *parser) fromField(h header, charset string) (*message.Address, mailauth.From) {
	vals := h.all("From")
	var (
		from  []message.Address
		clean = true
	)
	for _, v := range vals {
		t, w := headerText(v, charset)
		if w != "" {
			p.warn("header", "From: "+w)
		}
		as, warns, ok := parseAddressList(strings.ReplaceAll(t, "\x00", ""))
		for _, w := range warns {
			p.warn("header", "From: "+w)
		}
		clean = clean && ok
		from = append(from, as...)
	}
	var id mailauth.From
	switch {
	case len(vals) == 0:
		id.Problem = "no From field"
	case len(vals) > 1:
		id.Problem = itoa(len(vals)) + " From fields"
	case len(from) == 0:
		id.Problem = "From names no mailbox"
	case len(from) > 1:
		id.Problem = "From lists " + itoa(len(from)) + " mailboxes"
	case !clean:
		id.Problem = "From is not one well-formed mailbox"
	}
	if len(from) == 0 {
		// A missing From shows as a null from; only a present one that
		// names no mailbox is worth a warning.
		if len(vals) > 0 {
			p.warn("header", id.Problem+p.dmarcNote())
		}
		return nil, id
	}
	var problem string
	id.Domain, problem = authorDomain(from[0])
	if id.Problem == "" {
		id.Problem = problem
	}
	if strings.Contains(from[0].Name, "@") {
		p.warn("header", "From display name "+quote(from[0].Name)+" holds an \"@\"; the address is "+from[0].Address)
	}
	if id.Problem != "" {
		p.warn("header", id.Problem+"; from is the first mailbox, "+from[0].Address+p.dmarcNote())
	}
	return &from[0], id
}

// dmarcNote ends a warning about the From identity when DMARC is checked.
func (p *parser) dmarcNote() string {
	if p.opts.Auth == nil {
		return ""
	}
	return "; DMARC is permerror"
}

// authorDomain returns the domain DMARC evaluates for a From mailbox: its
// addr-spec's domain in lower case, with A-labels (RFC 7489 §6.6.1), or a
// problem when it cannot name a DNS domain.
func authorDomain(a message.Address) (domain, problem string) {
	addr := a.Address
	if a.AddressASCII != "" {
		addr = a.AddressASCII
	}
	d := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	switch {
	case strings.HasPrefix(d, "["):
		return d, "From domain is an address literal"
	case !isASCII([]byte(d)):
		return d, "From domain is not a valid IDNA name"
	}
	return d, ""
}
