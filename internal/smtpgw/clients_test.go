package smtpgw

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// routesWithPolicy is testRoutes with a policy: key.
func routesWithPolicy(policy string) string {
	return testRoutes + "policy:\n" + policy
}

func TestRateLimiterWindow(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(clk.now)
	p := &routing.RatePolicy{PerIP: 3, Window: routing.Duration(time.Hour)}
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 3 {
		if _, ref := l.reserve(ip, p); ref != nil {
			t.Fatalf("message %d refused: %+v", i+1, ref)
		}
		clk.advance(time.Minute)
	}
	if _, ref := l.reserve(ip, p); ref == nil || ref.limit != "per_ip" || ref.current != 3 || ref.max != 3 {
		t.Fatalf("4th message: %+v", ref)
	}
	if _, ref := l.reserve(netip.MustParseAddr("192.0.2.2"), p); ref != nil {
		t.Fatalf("another address refused: %+v", ref)
	}
	// Slots are 6 minutes: the three messages (t=0, 1m, 2m) share the
	// first one. They count until 9/10 of the window at least...
	clk.advance(57*time.Minute - 3*time.Minute) // t = 57m
	if _, ref := l.reserve(ip, p); ref == nil {
		t.Fatal("messages stopped counting before 9/10 of the window")
	}
	// ...and not after the whole window.
	clk.advance(3 * time.Minute) // t = 60m
	var last *rateReservation
	for i := range 3 {
		r, ref := l.reserve(ip, p)
		if ref != nil {
			t.Fatalf("message %d after the window: %+v", i+1, ref)
		}
		last = r
	}
	if _, ref := l.reserve(ip, p); ref == nil {
		t.Fatal("limit not reached again")
	}
	// A cancelled reservation is uncounted.
	last.cancel()
	last.cancel() // idempotent
	if _, ref := l.reserve(ip, p); ref != nil {
		t.Fatalf("cancel did not uncount: %+v", ref)
	}
	if _, ref := l.reserve(ip, p); ref == nil {
		t.Fatal("a second cancel uncounted twice")
	}
}

func TestRateLimiterNetworks(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(clk.now)
	p := &routing.RatePolicy{PerIP: 100, Per24: 2, Per64: 2, Window: routing.Duration(time.Minute)}
	for _, tt := range []struct{ a, b, other, key string }{
		{"198.51.100.1", "198.51.100.200", "198.51.101.1", "198.51.100.0/24"},
		{"2001:db8:0:1::1", "2001:db8:0:1:ffff::9", "2001:db8:0:2::1", "2001:db8:0:1::/64"},
	} {
		for _, a := range []string{tt.a, tt.b} {
			if _, ref := l.reserve(netip.MustParseAddr(a), p); ref != nil {
				t.Fatalf("%s refused: %+v", a, ref)
			}
		}
		_, ref := l.reserve(netip.MustParseAddr(tt.a), p)
		if ref == nil || ref.key.String() != tt.key || (ref.limit != "per_24" && ref.limit != "per_64") {
			t.Fatalf("third from %s: %+v", tt.key, ref)
		}
		if _, ref := l.reserve(netip.MustParseAddr(tt.other), p); ref != nil {
			t.Fatalf("neighbour network %s refused: %+v", tt.other, ref)
		}
	}
	// An IPv4-mapped address counts as its IPv4 form.
	if _, ref := l.reserve(netip.MustParseAddr("::ffff:198.51.100.7"), p); ref == nil || ref.limit != "per_24" {
		t.Fatalf("mapped address: %+v", ref)
	}
	// A new window resets the counts.
	p2 := *p
	p2.Window = routing.Duration(2 * time.Minute)
	if _, ref := l.reserve(netip.MustParseAddr("198.51.100.1"), &p2); ref != nil {
		t.Fatalf("after a window change: %+v", ref)
	}
}

// TestClientDeny: a client in clients.deny gets 554 5.7.1 at connect, and
// the connection closes; a client in clients.allow is let in even when a
// deny range covers it. The lists follow the live routes file.
func TestClientDeny(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(routesWithPolicy("  clients: {deny: [127.0.0.0/8]}\n"))
	live, err := routing.NewLive(t.Context(), routing.FileLoader(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	h := startGatewayLive(t, Config{}, tmpStore(t), live)
	c := dialRawNoGreeting(t, h.addr)
	text := c.expect(554, "5.7.1")
	if !strings.Contains(text, "client [127.0.0.1] is not allowed by policy") {
		t.Errorf("greeting %q", text)
	}
	c.expectClosed()
	if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonClientDenied); got != 1 {
		t.Errorf("client_denied rejections = %v", got)
	}
	h.waitLog("connection refused", "reason", reasonClientDenied, "code", float64(554))

	write(routesWithPolicy("  clients: {deny: [127.0.0.0/8], allow: [127.0.0.1]}\n"))
	c = dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")

	write(routesWithPolicy("  clients: {deny: [\"::1\", 10.0.0.0/8]}\n"))
	c = dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
}

// sendMsg sends one message in an open session and returns the reply code
// to MAIL FROM (and checks the rest when it is 250).
func sendMsg(t *testing.T, c *rawClient, mailCode int, enhanced string) string {
	t.Helper()
	text := c.cmd("MAIL FROM:<s@remote.test>", mailCode, enhanced)
	if mailCode != 250 {
		return text
	}
	c.cmd("RCPT TO:<a@example.test>", 250, "2.0.0")
	c.cmd("DATA", 354, "")
	c.send(testMessage("rate") + ".\r\n")
	return c.expect(250, "2.0.0")
}

// TestClientRate: the message-rate limits per IP, per IPv4 /24 and per
// IPv6 /64 answer 450 4.7.1 at MAIL FROM; a refused or abandoned
// transaction does not count; the window slides with the clock; allowed
// clients are exempt.
func TestClientRate(t *testing.T) {
	clk := newFakeClock()
	routes := routesWithPolicy(`  clients:
    allow: [203.0.113.5]
    rate: {per_ip: 2, per_24: 3, per_64: 2, window: 10m}
`)
	h := startGatewayWith(t, Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxErrors: 100, now: clk.now}, tmpStore(t), routes)
	dial := func(t *testing.T, client string) *rawClient {
		c := proxied(t, h.addr, proxyHeader(2, client))
		c.hello("client.test")
		return c
	}

	t.Run("per ip", func(t *testing.T) {
		c := dial(t, "192.0.2.1:1000")
		sendMsg(t, c, 250, "")
		// A transaction refused later (unknown domain at RCPT) or reset is
		// not counted.
		c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
		c.cmd("RCPT TO:<a@elsewhere.test>", 550, "5.7.1")
		c.cmd("RSET", 250, "")
		sendMsg(t, c, 250, "")
		text := sendMsg(t, c, 450, "4.7.1")
		if !strings.Contains(text, "Too many messages from your address [192.0.2.1] (limit 2 per 10m0s)") {
			t.Errorf("reply %q", text)
		}
		// A new connection is refused too; the window slides.
		c2 := dial(t, "192.0.2.1:1001")
		sendMsg(t, c2, 450, "4.7.1")
		clk.advance(10 * time.Minute)
		sendMsg(t, c2, 250, "")
	})
	t.Run("per /24", func(t *testing.T) {
		for i, client := range []string{"198.51.100.1:1", "198.51.100.2:1", "198.51.100.3:1"} {
			sendMsg(t, dial(t, client), 250, "")
			_ = i
		}
		text := sendMsg(t, dial(t, "198.51.100.4:1"), 450, "4.7.1")
		if !strings.Contains(text, "Too many messages from your network [198.51.100.0/24] (limit 3 per 10m0s)") {
			t.Errorf("reply %q", text)
		}
		sendMsg(t, dial(t, "198.51.101.4:1"), 250, "")
	})
	t.Run("per /64", func(t *testing.T) {
		sendMsg(t, dial(t, "[2001:db8:5:6::1]:1"), 250, "")
		sendMsg(t, dial(t, "[2001:db8:5:6::2]:1"), 250, "")
		text := sendMsg(t, dial(t, "[2001:db8:5:6:ffff::3]:1"), 450, "4.7.1")
		if !strings.Contains(text, "your network [2001:db8:5:6::/64]") {
			t.Errorf("reply %q", text)
		}
		sendMsg(t, dial(t, "[2001:db8:5:7::1]:1"), 250, "")
	})
	t.Run("allowed client is exempt", func(t *testing.T) {
		c := dial(t, "203.0.113.5:1")
		for range 5 {
			sendMsg(t, c, 250, "")
		}
	})
	if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonRateLimit); got != 4 {
		t.Errorf("rate_limited rejections = %v, want 4", got)
	}
	h.waitLog("client over its message rate", "limit", "per_24", "key", "198.51.100.0/24", "code", float64(450))
}

// TestClientRateErrorLimit: a client that keeps trying over its limit is
// disconnected with 421 4.7.0 once it passes --max-errors.
func TestClientRateErrorLimit(t *testing.T) {
	h := startGatewayWith(t, Config{MaxErrors: 2, now: newFakeClock().now}, tmpStore(t),
		routesWithPolicy("  clients: {rate: {per_ip: 1, window: 1h}}\n"))
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	sendMsg(t, c, 250, "")
	sendMsg(t, c, 450, "4.7.1")
	sendMsg(t, c, 450, "4.7.1")
	c.cmd("MAIL FROM:<s@remote.test>", 421, "4.7.0")
	c.expectClosed()
}

// TestAllowSkipsDNSBL: an allowed client is not looked up in the DNS
// blocklists that list it.
func TestAllowSkipsDNSBL(t *testing.T) {
	ns := startDNS(t, map[string]dnsAnswer{"1.0.0.127.bl.test.": {a: "127.0.0.2"}})
	h := startGatewayWith(t, Config{Resolver: ns, DNSBL: []string{"bl.test"}}, tmpStore(t),
		routesWithPolicy("  clients: {allow: [127.0.0.1/32]}\n"))
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	sendMsg(t, c, 250, "")
	h2 := startGatewayWith(t, Config{Resolver: ns, DNSBL: []string{"bl.test"}}, tmpStore(t),
		routesWithPolicy("  clients: {allow: [127.0.0.2/32]}\n"))
	c = dialRaw(t, h2.addr)
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 554, "5.7.1")
}

// BenchmarkRateReserve: one MAIL FROM's rate check, over many clients.
func BenchmarkRateReserve(b *testing.B) {
	l := newRateLimiter(nil)
	p := &routing.RatePolicy{PerIP: 1 << 30, Per24: 1 << 30, Window: routing.Duration(time.Hour)}
	ips := make([]netip.Addr, 4096)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r, _ := l.reserve(ips[i%len(ips)], p)
		if i%2 == 0 {
			r.cancel()
		}
	}
}
