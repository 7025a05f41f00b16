package testenv

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, d *DNS, net, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, d.Addr)
	return r, err
}

func TestDNS(t *testing.T) {
	d := StartDNS(t)
	long := strings.Repeat("k", 300)
	d.TXT("Example.ORG", "v=spf1 -all")
	d.TXT("sel._domainkey.example.org", long)
	d.MX("example.org", 10, "mx.example.org")
	d.A("mx.example.org", "192.0.2.1", "2001:db8::1")
	d.ServFail("broken.example")
	d.Drop("silent.example")
	d.Delay("slow.example", 300*time.Millisecond)
	d.TXT("slow.example", "late")

	tests := []struct {
		name, qname string
		qtype       uint16
		rcode       int
		answers     []string // the records' data, as miekg/dns prints it after the header
	}{
		{"TXT, case-insensitive", "EXAMPLE.org.", dns.TypeTXT, dns.RcodeSuccess, []string{`"v=spf1 -all"`}},
		{"long TXT in strings of 255", "sel._domainkey.example.org.", dns.TypeTXT, dns.RcodeSuccess, []string{`"` + long[:255] + `" "` + long[255:] + `"`}},
		{"MX", "example.org.", dns.TypeMX, dns.RcodeSuccess, []string{"10 mx.example.org."}},
		{"A", "mx.example.org.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}},
		{"AAAA", "mx.example.org.", dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::1"}},
		{"NODATA", "mx.example.org.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"NXDOMAIN", "nowhere.example.", dns.TypeA, dns.RcodeNameError, nil},
		{"SERVFAIL", "broken.example.", dns.TypeTXT, dns.RcodeServerFailure, nil},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+" "+network, func(t *testing.T) {
				r, err := query(t, d, network, tt.qname, tt.qtype, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				var got []string
				for _, rr := range r.Answer {
					got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
				}
				if strings.Join(got, "|") != strings.Join(tt.answers, "|") {
					t.Fatalf("answers %q, want %q", got, tt.answers)
				}
			})
		}
	}

	t.Run("drop", func(t *testing.T) {
		if _, err := query(t, d, "udp", "silent.example.", dns.TypeTXT, 200*time.Millisecond); err == nil {
			t.Fatal("answered")
		}
	})
	t.Run("delay", func(t *testing.T) {
		if _, err := query(t, d, "udp", "slow.example.", dns.TypeTXT, 100*time.Millisecond); err == nil {
			t.Fatal("answered before the delay")
		}
		start := time.Now()
		r, err := query(t, d, "udp", "slow.example.", dns.TypeTXT, 2*time.Second)
		if err != nil || len(r.Answer) != 1 || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("%v %v after %v", r, err, time.Since(start))
		}
	})
	t.Run("added while running", func(t *testing.T) {
		d.A("late.example", "192.0.2.9")
		r, err := query(t, d, "udp", "late.example.", dns.TypeA, 2*time.Second)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("%v %v", r, err)
		}
	})
	if q := d.Queries(); len(q) == 0 || q[0] != "TXT example.org." {
		t.Errorf("queries %q", q)
	}
}
