package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/miekg/dns"
)

// resolver sends every query to one DNS server (or, for the system's, the
// servers of /etc/resolv.conf in turn), with a timeout per query. Names are
// absolute: no search domain is appended.
//
// It is a DNS client of its own (miekg/dns) rather than net.Resolver so that
// the answer's RCODE is known exactly: RFC 7208 §5 and RFC 7489 §6.6.3 tell
// "no such record" (NXDOMAIN, or NOERROR with no answer) from a DNS error
// (SERVFAIL, REFUSED, a timeout), and net.Resolver reports REFUSED as a
// permanent error.
type resolver struct {
	servers []string
	timeout time.Duration
}

func newResolver(addr string, timeout time.Duration) (*resolver, error) {
	if addr == "" {
		return &resolver{servers: systemServers(), timeout: timeout}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fault.Permanentf("mailauth: resolver %q: want host:port", addr)
	}
	return &resolver{servers: []string{addr}, timeout: timeout}, nil
}

// systemServers reads the name servers of /etc/resolv.conf, as Go's own
// resolver does; without one it asks localhost, as Go's does too.
func systemServers() []string {
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(conf.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	var out []string
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	return out
}

var tracer = otel.Tracer("github.com/letterboxmail/letterbox/internal/mailauth")

// isNotFound reports a lookup that found no record: an answer, not a
// failure.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Lookup errors are *net.DNSError, the type go-msgauth inspects: IsNotFound
// for NXDOMAIN and NODATA, IsTemporary for every other failure.
func notFound(name, why string) error {
	return &net.DNSError{Err: why, Name: name, IsNotFound: true}
}

// errNXDomain is the Err of a NXDOMAIN answer.
const errNXDomain = "no such host"

// isNXDomain tells NXDOMAIN (the name does not exist, RFC 8020) from
// NODATA.
func isNXDomain(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound && de.Err == errNXDomain
}

func dnsFailure(name, why string) error {
	return &net.DNSError{Err: why, Name: name, IsTemporary: true}
}

// query asks for the records of qtype at name and returns those of the
// answer that belong to name or to the CNAME chain from it.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (rrs []dns.RR, err error) {
	name = dns.Fqdn(escapeName(name))
	ctx, span := tracer.Start(ctx, "dns.query", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("dns.question.name", name), attribute.String("dns.question.type", dns.TypeToString[qtype])))
	defer func() {
		if err != nil && !isNotFound(err) {
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(attribute.Int("dns.answers", len(rrs)))
		span.End()
	}()
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, notFound(name, "invalid domain name")
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.SetEdns0(4096, false)
	var resp *dns.Msg
	for _, server := range r.servers {
		c := &dns.Client{Net: "udp", Timeout: r.timeout}
		resp, _, err = c.ExchangeContext(ctx, req, server)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, req, server)
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, dnsFailure(name, err.Error())
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, notFound(name, errNXDomain)
	default:
		return nil, dnsFailure(name, "server answered "+dns.RcodeToString[resp.Rcode])
	}
	var out []dns.RR
	owner := name
	for range 10 {
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(unescapeTXT(h.Name), unescapeTXT(owner)) {
				continue
			}
			if h.Rrtype == qtype {
				out = append(out, rr)
			} else if cn, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				next = cn.Target
			}
		}
		if len(out) > 0 || next == "" {
			break
		}
		owner = next
	}
	if len(out) == 0 {
		return nil, notFound(name, "no "+dns.TypeToString[qtype]+" record")
	}
	return out, nil
}

// escapeName writes a name's bytes in miekg/dns's presentation format:
// SPF macros can make names with spaces and other bytes a host name has
// not (RFC 7208 §7.3), and DNS carries any byte in a label.
func escapeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03d", c)
		}
	}
	return b.String()
}

// LookupTXT returns the TXT records at name, the strings of each joined
// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	var out []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(unescapeTXT(s))
		}
		out = append(out, b.String())
	}
	return out, err
}

// unescapeTXT undoes miekg/dns's presentation escapes (\DDD and \c) to give
// the string's bytes.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		if i+3 < len(s) && isDigits(s[i+1:i+4]) {
			n, _ := strconv.Atoi(s[i+1 : i+4])
			b = append(b, byte(n))
			i += 3
			continue
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// LookupMX returns the MX records at name.
func (r *resolver) LookupMX(ctx context.Context, name string) ([]*dns.MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	var out []*dns.MX
	for _, rr := range rrs {
		out = append(out, rr.(*dns.MX))
	}
	return out, err
}

// LookupIP returns the addresses at name: A records for v4, AAAA
// otherwise.
func (r *resolver) LookupIP(ctx context.Context, name string, v4 bool) ([]net.IP, error) {
	qtype := dns.TypeAAAA
	if v4 {
		qtype = dns.TypeA
	}
	rrs, err := r.query(ctx, name, qtype)
	var out []net.IP
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A)
		case *dns.AAAA:
			out = append(out, rr.AAAA)
		}
	}
	return out, err
}

// LookupPTR returns the names of ip's reverse entry.
func (r *resolver) LookupPTR(ctx context.Context, ip net.IP) ([]string, error) {
	arpa, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return nil, notFound(ip.String(), err.Error())
	}
	rrs, err := r.query(ctx, arpa, dns.TypePTR)
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, err
}

// lookupTXTFunc adapts LookupTXT to go-msgauth's context-free callback.
func (r *resolver) lookupTXTFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
}

// dnsKind classifies a lookup error: "notfound", "temporary" or "error".
func dnsKind(err error) string {
	if err == nil {
		return ""
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return "notfound"
		case de.IsTimeout || de.IsTemporary:
			return "temporary"
		}
		return "error"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "temporary"
	}
	return "error"
}

// serverRe matches the server a Go DNS error names, which is the system's
// configured one even when queries go to Config.Resolver.
var serverRe = regexp.MustCompile(`(lookup \S+) on [^ ]+:( |$)`)

func describe(err error) string {
	if err == nil {
		return ""
	}
	return cleanReason(fmt.Sprint(err))
}

// cleanReason removes the misleading server name from DNS error texts.
func cleanReason(s string) string {
	return serverRe.ReplaceAllString(s, "$1:$2")
}
