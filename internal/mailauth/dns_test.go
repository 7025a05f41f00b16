package mailauth

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// zone is what the test DNS server answers. Names are absolute and
// lower-case. Anything else is NXDOMAIN.
type zone struct {
	mu       sync.Mutex
	txt      map[string][]string
	a        map[string][]string
	servfail map[string]bool
	drop     map[string]bool // never answered: the client times out
	queries  []string
}

func newZone() *zone {
	return &zone{txt: map[string][]string{}, a: map[string][]string{}, servfail: map[string]bool{}, drop: map[string]bool{}}
}

func (z *zone) TXT(name string, values ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[dns.Fqdn(strings.ToLower(name))] = append(z.txt[dns.Fqdn(strings.ToLower(name))], values...)
}

func (z *zone) ServFail(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.servfail[dns.Fqdn(strings.ToLower(name))] = true
}

func (z *zone) Drop(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop[dns.Fqdn(strings.ToLower(name))] = true
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.queries = append(z.queries, dns.TypeToString[q.Qtype]+" "+name)
	if z.drop[name] {
		return
	}
	if z.servfail[name] {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	_, hasTXT := z.txt[name]
	_, hasA := z.a[name]
	switch {
	case q.Qtype == dns.TypeTXT && hasTXT:
		for _, v := range z.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: splitTXT(v),
			})
		}
	case q.Qtype == dns.TypeA && hasA:
		for _, v := range z.a[name] {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(v),
			})
		}
	case hasTXT || hasA:
		// The name exists without this type: NODATA.
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
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

// startDNS serves z on UDP and TCP on a loopback port and returns the
// address for Config.Resolver.
func startDNS(t testing.TB, z *zone) string {
	t.Helper()
	// UDP and TCP on the same port: retry when another process holds the
	// TCP side of the port the kernel gave us for UDP.
	var (
		pc   net.PacketConn
		ln   net.Listener
		addr string
		err  error
	)
	for try := 0; try < 50; try++ {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = pc.LocalAddr().String()
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: ln, Handler: z, NotifyStartedFunc: started.Done}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ActivateAndServe()
		}()
	}
	// Shutdown before the servers run would leave them running for ever.
	started.Wait()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return addr
}
