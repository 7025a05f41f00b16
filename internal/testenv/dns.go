package testenv

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNS is a DNS server on loopback, UDP and TCP on one port, that answers
// from the records a test gives it. A name with no records is NXDOMAIN; a
// name with records of other types only, NODATA. Records may be added
// while it runs. Names are compared without regard to case.
type DNS struct {
	// Addr is the server's "127.0.0.1:port", for a resolver setting.
	Addr string

	stop chan struct{} // closed at cleanup: delayed answers give up

	mu      sync.Mutex
	names   map[string]*dnsName
	queries []string
}

// dnsName is what the server knows of one name.
type dnsName struct {
	txt      []string
	mx       []*dns.MX
	ips      []net.IP
	rrs      []dns.RR // records of any type, from RR
	rcode    int      // answered to every query when not zero
	servfail bool
	drop     bool
	delay    time.Duration
}

// StartDNS starts a DNS server with no records. It stops when the test
// ends.
func StartDNS(tb testing.TB) *DNS {
	tb.Helper()
	d := &DNS{stop: make(chan struct{}), names: map[string]*dnsName{}}
	// UDP and TCP on the same port: retry when another process holds the
	// TCP side of the port the kernel gave us for UDP.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 50 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		d.Addr = pc.LocalAddr().String()
		if ln, err = net.Listen("tcp", d.Addr); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: ln, Handler: d, NotifyStartedFunc: started.Done}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		wg.Go(func() { s.ActivateAndServe() })
	}
	// Shutdown before the servers run would leave them running for ever.
	started.Wait()
	tb.Cleanup(func() {
		close(d.stop)
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return d
}

// name returns the entry for a name, made on first use. d.mu is held.
func (d *DNS) name(name string) *dnsName {
	key := dns.Fqdn(strings.ToLower(name))
	n := d.names[key]
	if n == nil {
		n = &dnsName{}
		d.names[key] = n
	}
	return n
}

// TXT adds TXT records to name, one a value. A value longer than 255 bytes
// is sent as several strings, as DKIM keys are.
func (d *DNS) TXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.name(name)
	n.txt = append(n.txt, values...)
}

// MX adds an MX record to name; host "." is a null MX (RFC 7505).
func (d *DNS) MX(name string, pref uint16, host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.name(name)
	n.mx = append(n.mx, &dns.MX{Preference: pref, Mx: dns.Fqdn(host)})
}

// A adds addresses to name: the IPv4 ones answer A queries, the IPv6 ones
// AAAA queries.
func (d *DNS) A(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.name(name)
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			panic("testenv: DNS.A: bad address " + s)
		}
		n.ips = append(n.ips, ip)
	}
}

// RR adds records of any type, each to the name in its header. A CNAME
// answers a query of another type with itself and the target's records of
// that type, as a recursive resolver does.
func (d *DNS) RR(rrs ...dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rr := range rrs {
		n := d.name(rr.Header().Name)
		n.rrs = append(n.rrs, rr)
	}
}

// Rcode makes every query for name, of a type it has no RR records of,
// answer with rcode (dns.RcodeRefused, ...) and no records.
func (d *DNS) Rcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.name(name).rcode = rcode
}

// ServFail makes every query for name answer SERVFAIL.
func (d *DNS) ServFail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.name(name).servfail = true
}

// Drop makes queries for name go unanswered: the client times out.
func (d *DNS) Drop(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.name(name).drop = true
}

// Delay holds every answer for name back by delay.
func (d *DNS) Delay(name string, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.name(name).delay = delay
}

// Queries returns the questions asked so far, "TYPE name." each (name in
// lower case), in the order they came.
func (d *DNS) Queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.queries...)
}

// ServeDNS answers one query.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m, delay := d.answer(req)
	if m == nil {
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-d.stop:
			return
		}
	}
	w.WriteMsg(m)
}

// answer builds the reply to req, nil to drop it, and how long to hold it.
func (d *DNS) answer(req *dns.Msg) (*dns.Msg, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, 0
	}
	q := req.Question[0]
	key := strings.ToLower(q.Name)
	d.queries = append(d.queries, dns.TypeToString[q.Qtype]+" "+key)
	n := d.names[key]
	if n == nil {
		n = &dnsName{}
	}
	switch {
	case n.drop:
		return nil, 0
	case n.servfail:
		m.Rcode = dns.RcodeServerFailure
		return m, n.delay
	case n.rcode != 0 && !n.has(q.Qtype):
		m.Rcode = n.rcode
		return m, n.delay
	case len(n.txt)+len(n.mx)+len(n.ips)+len(n.rrs) == 0:
		m.Rcode = dns.RcodeNameError
		return m, n.delay
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	switch q.Qtype {
	case dns.TypeTXT:
		for _, v := range n.txt {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(v)})
		}
	case dns.TypeMX:
		for _, mx := range n.mx {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: mx.Preference, Mx: mx.Mx})
		}
	case dns.TypeA:
		for _, ip := range n.ips {
			if ip4 := ip.To4(); ip4 != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip4})
			}
		}
	case dns.TypeAAAA:
		for _, ip := range n.ips {
			if ip.To4() == nil {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
			}
		}
	}
	m.Answer = append(m.Answer, d.records(key, q.Qtype, 0)...)
	// No answer for a name that exists: NODATA.
	return m, n.delay
}

// has reports whether n has RR records of qtype.
func (n *dnsName) has(qtype uint16) bool {
	for _, rr := range n.rrs {
		if rr.Header().Rrtype == qtype {
			return true
		}
	}
	return false
}

// records returns the RR records of qtype at name, following a CNAME a
// few levels deep. d.mu is held.
func (d *DNS) records(name string, qtype uint16, depth int) []dns.RR {
	n := d.names[name]
	if n == nil || depth > 8 {
		return nil
	}
	var out []dns.RR
	for _, rr := range n.rrs {
		switch {
		case rr.Header().Rrtype == qtype:
			out = append(out, rr)
		case rr.Header().Rrtype == dns.TypeCNAME:
			out = append(out, rr)
			out = append(out, d.records(strings.ToLower(dns.Fqdn(rr.(*dns.CNAME).Target)), qtype, depth+1)...)
		}
	}
	return out
}

// splitTXT cuts a record into the 255-byte strings DNS carries.
func splitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
