package smtpgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/letterboxmail/letterbox/internal/mailauth"
)

// SPF results (RFC 7208 §2.6).
const (
	spfFail      = mailauth.Fail
	spfTempError = mailauth.TempError
)

type spfResult struct {
	result string // a mailauth result: pass, fail, softfail, ...
	domain string // the domain checked: MAIL FROM's, or HELO's for <>
	sender string
}

// newSPFChecker returns the SPF evaluator of package mailauth, the one the
// ingest function uses too, asking c.Resolver (or the system's resolver)
// with c.DNSTimeout per query.
func newSPFChecker(c Config) (*mailauth.Checker, error) {
	chk, err := mailauth.New(mailauth.Config{Resolver: c.Resolver, Timeout: c.DNSTimeout, AuthServID: c.Hostname})
	if err != nil {
		return nil, fmt.Errorf("smtpgw: --resolver: %w", err)
	}
	return chk, nil
}

// checkSPF evaluates SPF (RFC 7208 §4) for the client's IP and the MAIL
// FROM domain; for the null reverse-path it checks postmaster@HELO
// (§2.4). A DNS error of any kind is temperror (mailauth.CheckSPF).
func (g *Gateway) checkSPF(ctx context.Context, ip netip.Addr, helo, from string) *spfResult {
	sender := from
	if sender == "" {
		sender = "postmaster@" + helo
	}
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DNSTimeout)
	defer cancel()
	res := g.spf.CheckSPF(ctx, net.IP(ip.Unmap().AsSlice()), sender, helo)
	return &spfResult{result: res.Result, domain: domain, sender: sender}
}

// receivedSPF formats the Received-SPF header field (RFC 7208 §9.1).
func receivedSPF(host string, r *spfResult, ip netip.Addr, from, helo string) string {
	var comment string
	switch r.result {
	case mailauth.Pass:
		comment = fmt.Sprintf("domain of %s designates %s as permitted sender", r.sender, ip)
	case mailauth.Fail:
		comment = fmt.Sprintf("domain of %s does not designate %s as permitted sender", r.sender, ip)
	case mailauth.SoftFail:
		comment = fmt.Sprintf("domain of transitioning %s does not designate %s as permitted sender", r.sender, ip)
	case mailauth.Neutral:
		comment = fmt.Sprintf("%s is neither permitted nor denied by domain of %s", ip, r.sender)
	case mailauth.None:
		comment = fmt.Sprintf("domain of %s does not publish SPF", r.sender)
	case mailauth.TempError:
		comment = "temporary error in processing during lookup of " + r.sender
	default:
		comment = "error in processing during lookup of " + r.sender
	}
	envFrom := from
	if envFrom == "" {
		envFrom = "<>"
	}
	return fmt.Sprintf("Received-SPF: %s (%s: %s)\r\n\tclient-ip=%s; envelope-from=%s; helo=%s;\r\n",
		r.result, host, commentSafeSpaces(comment), ip, quoteValue(envFrom), quoteValue(helo))
}

// quoteValue quotes a key-value-pair value unless it is a dot-atom
// (RFC 7208 §9.1, RFC 5322 §3.2.3).
func quoteValue(s string) string {
	atom := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.@", c) >= 0) {
			atom = false
			break
		}
	}
	if atom {
		return s
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s) && i < 512; i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			sb.WriteByte('?')
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

func commentSafeSpaces(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '(' || r == ')' || r == '\\' || r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// lookupDNSBL queries each blocklist zone for ip (RFC 5782 §2.1: the
// address's reversed octets, or nibbles for IPv6, under the zone). An A
// record in 127.0.0.0/8 lists the client, except 127.255.255.0/24, which
// blocklists use for errors such as "query refused". Lookup failures do
// not list a client: they are logged and the mail flows.
func (g *Gateway) lookupDNSBL(ctx context.Context, log *slog.Logger, ip netip.Addr) *dnsblResult {
	rev := reverseName(ip)
	for _, zone := range g.cfg.DNSBL {
		name := rev + "." + strings.TrimSuffix(zone, ".") + "."
		addrs, err := g.resolver.LookupNetIP(ctx, "ip4", name)
		if err != nil {
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				continue
			}
			log.Warn("DNSBL lookup failed; not treating the client as listed", "zone", zone, "err", err)
			continue
		}
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is4() && a.As4()[0] == 127 && !(a.As4()[1] == 255 && a.As4()[2] == 255) {
				return &dnsblResult{zone: zone, answer: a}
			}
			log.Warn("DNSBL answered outside 127.0.0.0/8 or with an error code; ignoring it", "zone", zone, "answer", a.String())
		}
	}
	return &dnsblResult{}
}

// reverseName is the DNSBL query label of ip: "4.3.2.1" for 1.2.3.4, 32
// nibbles for IPv6.
func reverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	const hexdigits = "0123456789abcdef"
	var sb strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		sb.WriteByte(hexdigits[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hexdigits[b[i]>>4])
		if i > 0 {
			sb.WriteByte('.')
		}
	}
	return sb.String()
}
