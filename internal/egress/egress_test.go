package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		addr              string
		strict, loop, all bool
	}{
		{"93.184.215.14", true, true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true, true},
		{"127.0.0.1", false, true, true},
		{"::1", false, true, true},
		{"::ffff:127.0.0.1", false, true, true},
		{"10.1.2.3", false, false, true},
		{"172.31.255.255", false, false, true},
		{"192.168.1.1", false, false, true},
		{"169.254.169.254", false, false, true}, // cloud metadata
		{"100.64.0.1", false, false, true},
		{"fd00::1", false, false, true},
		{"fe80::1", false, false, true},
		{"0.0.0.0", false, false, true},
		{"::ffff:10.0.0.1", false, false, true},
		{"224.0.0.1", false, false, true},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := (egress.Policy{}).Allowed(a); got != tt.strict {
			t.Errorf("strict Allowed(%s) = %v", tt.addr, got)
		}
		if got := (egress.Policy{AllowLoopback: true}).Allowed(a); got != tt.loop {
			t.Errorf("loopback Allowed(%s) = %v", tt.addr, got)
		}
		if got := (egress.Policy{AllowPrivate: true}).Allowed(a); got != tt.all {
			t.Errorf("private Allowed(%s) = %v", tt.addr, got)
		}
	}
}

func TestDialRefusesLoopbackByName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	client := &http.Client{Transport: &http.Transport{DialContext: egress.Policy{}.DialContext}}
	// "localhost" resolves to loopback: the check is on the dialled address.
	_, err := client.Get("http://localhost:" + port + "/")
	if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
		t.Fatalf("Get = %v, want permanent ErrForbidden", err)
	}
	allowed := &http.Client{Transport: &http.Transport{DialContext: egress.Policy{AllowLoopback: true}.DialContext}}
	resp, err := allowed.Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback allowed: %v", err)
	}
	resp.Body.Close()
}

// TestRedirectToForbidden: a client that follows redirects (delivery's does
// not, but any other user of the dialer might) still checks every hop: a
// receiver the policy allows redirecting to the metadata endpoint, in any
// spelling, is refused before a connection is made.
func TestRedirectToForbidden(t *testing.T) {
	for _, target := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
		"http://[::ffff:a9fe:a9fe]/latest/meta-data/",
		"http://[::a9fe:a9fe]/latest/meta-data/",
		"http://[2002:a9fe:a9fe::1]/latest/meta-data/",
		"http://10.0.0.1/",
	} {
		t.Run(target, func(t *testing.T) {
			srv := httptest.NewServer(http.RedirectHandler(target, http.StatusTemporaryRedirect))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{DialContext: egress.Policy{AllowLoopback: true}.DialContext}}
			resp, err := client.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Get followed the redirect to %s: %s", target, resp.Status)
			}
			if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
				t.Fatalf("Get = %v, want permanent ErrForbidden", err)
			}
		})
	}
}

// rebinder is a DNS server on loopback whose A and AAAA answers for one name
// change between queries: answers[i] is the answer to the i-th query of
// that type, the last repeated.
type rebinder struct {
	mu      sync.Mutex
	answers map[uint16][]string
	asked   map[uint16]int
}

func (r *rebinder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	r.mu.Lock()
	n := r.asked[q.Qtype]
	r.asked[q.Qtype]++
	list := r.answers[q.Qtype]
	r.mu.Unlock()
	if len(list) > 0 {
		ip := net.ParseIP(list[min(n, len(list)-1)])
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Rrtype: q.Qtype, Ttl: 0}
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
		}
	}
	w.WriteMsg(m)
}

// startRebinder serves r on 127.0.0.1 and returns a resolver that asks it.
func startRebinder(t *testing.T, r *rebinder) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
}

// TestDNSRebinding: the name resolves to a public address when a caller
// checks it, and to a forbidden one when the connection is made. The guard
// checks the address dialled, so the second answer is refused, even when a
// server is listening there.
func TestDNSRebinding(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tt := range []struct {
		name string
		a    []string // answers to successive A queries
		aaaa []string // answers to successive AAAA queries
	}{
		{"loopback after public", []string{"93.184.215.14", "127.0.0.1"}, nil},
		{"metadata after public", []string{"93.184.215.14", "169.254.169.254"}, nil},
		{"NAT64 metadata after public", nil, []string{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::a9fe:a9fe"}},
		{"6to4 loopback after public", nil, []string{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", "2002:7f00:1::1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &rebinder{answers: map[uint16][]string{dns.TypeA: tt.a, dns.TypeAAAA: tt.aaaa}, asked: map[uint16]int{}}
			res := startRebinder(t, r)
			ctx := context.Background()
			// The check a caller might make first: the name looks public.
			ips, err := res.LookupNetIP(ctx, "ip", "hook.rebind.test")
			if err != nil || len(ips) != 1 || !(egress.Policy{}).Allowed(ips[0]) {
				t.Fatalf("first lookup = %v, %v; want one public address", ips, err)
			}
			d := egress.Policy{}.Dialer(5 * time.Second)
			d.Resolver = res
			client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			resp, err := client.Get("http://hook.rebind.test:" + port + "/")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Get connected: %s", resp.Status)
			}
			if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
				t.Fatalf("Get = %v, want permanent ErrForbidden", err)
			}
			r.mu.Lock()
			asked := r.asked[dns.TypeA] + r.asked[dns.TypeAAAA]
			r.mu.Unlock()
			if asked < 3 {
				t.Fatalf("the dial asked DNS %d times in all, want a fresh lookup", asked)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the receiver on loopback got %d requests", n)
			}
		})
	}
}
