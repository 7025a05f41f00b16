package parser

import (
	"io"
	"mime"
	"net/mail"
	"strings"

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
// or a word with an "@"), and reported in warns when nothing is found.
func parseAddressList(s string) (out []message.Address, warns []string) {
	for _, item := range splitAddressList(s) {
		if strings.TrimSpace(item.text) == "" {
			continue
		}
		a, ok := parseMailbox(item.text)
		if !ok {
			warns = append(warns, "unparseable address "+quote(strings.TrimSpace(item.text)))
			continue
		}
		if item.group != "" {
			g, _ := decodeWords(strings.TrimSpace(unquote(strings.TrimSpace(item.group))))
			a.Group = g
		}
		out = append(out, a)
	}
	return out, warns
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
			// Only a bracket closed before the next comma opens an address.
			if j := strings.IndexAny(s[i:], ">,"); j >= 0 && s[i+j] == '>' {
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

func parseMailbox(text string) (message.Address, bool) {
	text = strings.TrimSpace(text)
	if a, err := addrParser.Parse(text); err == nil {
		return newAddress(a.Name, a.Address), true
	}
	// Lenient recovery.
	if lt := strings.LastIndexByte(text, '<'); lt >= 0 {
		rest := text[lt+1:]
		if gt := strings.IndexByte(rest, '>'); gt >= 0 {
			rest = rest[:gt]
		}
		addr := strings.TrimSpace(rest)
		if strings.Contains(addr, "@") {
			name := strings.TrimSpace(stripComment(text[:lt]))
			name, _ = decodeWords(unquote(name))
			return newAddress(name, addr), true
		}
	}
	for _, f := range strings.Fields(stripComment(text)) {
		f = strings.Trim(f, "<>,;\"'")
		if strings.Count(f, "@") == 1 && !strings.HasPrefix(f, "@") && !strings.HasSuffix(f, "@") {
			name := strings.TrimSpace(strings.Replace(stripComment(text), f, "", 1))
			name = strings.Trim(name, "<>\"' ")
			name, _ = decodeWords(name)
			return newAddress(name, f), true
		}
	}
	return message.Address{}, false
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
