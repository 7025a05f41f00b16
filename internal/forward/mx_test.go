package forward

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// TestForwardMX delivers by MX lookup through a DNS server on loopback.
// Every MX host resolves to a loopback address; the MX port is the test
// server's.
func TestForwardMX(t *testing.T) {
	fx := newFixture(t, rawMsg)
	primary := startSMTP(t, serverOpts{})
	// A second server on the same port at another loopback address.
	backup := startSMTP(t, serverOpts{addr: net.JoinHostPort("127.0.0.3", primary.Port)})
	serverTLS, _ := selfSigned(t)
	port := atoi(primary.Port)

	z := testenv.StartDNS(t)
	// Listed out of order: the lower preference wins.
	z.MX("pref.test", 20, "mx-b.pref.test")
	z.MX("pref.test", 10, "mx-a.pref.test")
	z.A("mx-a.pref.test", "127.0.0.3")
	z.A("mx-b.pref.test", "127.0.0.1")
	// The preferred host refuses connections: the next one is tried.
	z.MX("fallback.test", 10, "down.fallback.test")
	z.MX("fallback.test", 20, "up.fallback.test")
	z.A("down.fallback.test", "127.0.0.2")
	z.A("up.fallback.test", "127.0.0.1")
	z.A("implicit.test", "127.0.0.1") // no MX: the domain itself (RFC 5321 §5.1)
	z.MX("null.test", 0, ".")         // RFC 7505
	z.ServFail("broken.test")
	z.MX("private.test", 10, "mx.private.test")
	z.A("mx.private.test", "10.0.0.25") // refused by the egress policy before any packet
	z.MX("dangling.test", 10, "missing.dangling.test")
	z.MX("down.test", 10, "mx.down.test")
	z.A("mx.down.test", "127.0.0.2")
	dnsAddr := z.Addr
	f := testForwarder(t, fx.st, func(c *Config) { c.Resolver = dnsAddr; c.MXPort = port })

	tests := []struct {
		name      string
		to        []string
		wantErr   string
		temporary bool
		status    int
		server    *smtpServer
		rcpts     []string
	}{
		{"preference order", []string{"bob@pref.test"}, "", false, 250, backup, []string{"bob@pref.test"}},
		{"next MX when the first refuses", []string{"bob@fallback.test"}, "", false, 250, primary, []string{"bob@fallback.test"}},
		{"implicit MX", []string{"bob@implicit.test"}, "", false, 250, primary, []string{"bob@implicit.test"}},
		{"one transaction per domain", []string{"a@implicit.test", "b@Implicit.test"}, "", false, 250, primary, []string{"a@implicit.test", "b@Implicit.test"}},
		{"null MX", []string{"bob@null.test"}, `^forward: <bob@null.test>: null.test does not accept mail \(null MX, RFC 7505\)$`, false, 0, nil, nil},
		{"no such domain", []string{"bob@nx.test"}, `^forward: <bob@nx.test>: nx.test: no such host$`, false, 0, nil, nil},
		{"MX host without address", []string{"bob@dangling.test"}, `missing.dangling.test: no such host$`, false, 0, nil, nil},
		{"DNS failure", []string{"bob@broken.test"}, `MX lookup for broken.test: `, true, 0, nil, nil},
		{"MX at a private address", []string{"bob@private.test"}, `mx.private.test: connect 10.0.0.25:\d+: .*destination address is not allowed`, false, 0, nil, nil},
		{"every MX down", []string{"bob@down.test"}, `mx.down.test: connect 127.0.0.2:\d+: .*connection refused`, true, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[*smtpServer]int{primary: len(primary.Messages()), backup: len(backup.Messages())}
			res := f.Forward(context.Background(), fx.job, fx.msg, &routing.ForwardAction{To: tt.to}, noExpand)
			wantResult(t, res, tt.wantErr, tt.temporary, tt.status)
			for _, s := range []*smtpServer{primary, backup} {
				got := s.Messages()[before[s]:]
				switch {
				case s == tt.server && (len(got) != 1 || !slices.Equal(got[0].To, tt.rcpts)):
					t.Fatalf("server %s got %+v, want one message to %q", s.Addr, got, tt.rcpts)
				case s != tt.server && len(got) != 0:
					t.Fatalf("server %s got %+v, want nothing", s.Addr, got)
				}
			}
		})
	}

	t.Run("two domains, two transactions, one failing", func(t *testing.T) {
		n := len(primary.Messages())
		res := f.Forward(context.Background(), fx.job, fx.msg, &routing.ForwardAction{To: []string{"a@implicit.test", "b@null.test", "c@fallback.test"}}, noExpand)
		wantResult(t, res, `^forward: <b@null.test>: null.test does not accept mail \(null MX, RFC 7505\) \(1 of 3 refused; delivered to a@implicit.test, c@fallback.test\)$`, false, 0)
		if got := primary.Messages()[n:]; len(got) != 2 {
			t.Fatalf("got %+v, want two transactions", got)
		}
	})
	t.Run("opportunistic STARTTLS to the MX", func(t *testing.T) {
		tlsSrv := startSMTP(t, serverOpts{tls: serverTLS})
		z.A("tls.test", "127.0.0.1")
		f := testForwarder(t, fx.st, func(c *Config) { c.Resolver = dnsAddr; c.MXPort = atoi(tlsSrv.Port) })
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, &routing.ForwardAction{To: []string{"bob@tls.test"}}, noExpand), "", false, 250)
		if m := tlsSrv.Messages(); len(m) != 1 || !m[0].TLS {
			t.Fatalf("got %+v, want one message over TLS", m)
		}
	})
	t.Run("starttls true to an MX that has none", func(t *testing.T) {
		a := &routing.ForwardAction{To: []string{"bob@implicit.test"}, StartTLS: ptr(true)}
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), `server does not offer STARTTLS`, true, 0)
	})
}
