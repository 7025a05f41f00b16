package smtpgw

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

// proxied connects as a load balancer would: a PROXY header for client,
// then SMTP.
func proxied(t *testing.T, addr string, header *proxyproto.Header) *rawClient {
	t.Helper()
	c := dialRawNoGreeting(t, addr)
	b, err := header.Format()
	if err != nil {
		t.Fatal(err)
	}
	c.send(string(b))
	c.expect(220, "")
	return c
}

func proxyHeader(version byte, client string) *proxyproto.Header {
	src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
	dst := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25}
	if src.IP.To4() == nil {
		dst = &net.TCPAddr{IP: net.ParseIP("2001:db8::25"), Port: 25}
	}
	return proxyproto.HeaderProxyFromAddrs(version, src, dst)
}

// TestProxyProtocol: from a trusted load balancer the client address comes
// from the PROXY header (v1 and v2) and reaches the envelope, the Received
// field, the logs and the per-address limit.
func TestProxyProtocol(t *testing.T) {
	h := startGateway(t, Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxConnectionsPerIP: 1})
	for _, tt := range []struct {
		name    string
		version byte
		client  string
		ip      string
		literal string
	}{
		{"v1", 1, "203.0.113.9:51000", "203.0.113.9", "[203.0.113.9]"},
		{"v2", 2, "198.51.100.7:40000", "198.51.100.7", "[198.51.100.7]"},
		{"v2 IPv6", 2, "[2001:db8::1]:40000", "2001:db8::1", "[IPv6:2001:db8::1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := proxied(t, h.addr, proxyHeader(tt.version, tt.client))
			c.hello("client.test")
			c.envelope("s@remote.test", "a@example.test")
			c.cmd("DATA", 354, "")
			c.send(testMessage("proxied") + ".\r\n")
			id := queuedID(t, c.expect(250, "2.0.0"))
			body, env := h.with(t).stored(id)
			if env.ClientIP != tt.ip {
				t.Errorf("envelope client IP %q, want %q", env.ClientIP, tt.ip)
			}
			if !strings.HasPrefix(string(body), "Received: from client.test ("+tt.literal+")\r\n") {
				t.Errorf("Received: %q", body[:80])
			}
			// The per-address limit counts the real client.
			over := dialRawNoGreeting(t, h.addr)
			b, _ := proxyHeader(tt.version, tt.client).Format()
			over.send(string(b))
			if text := over.expect(421, "4.7.0"); !strings.Contains(text, "["+tt.ip+"]") {
				t.Errorf("reply %q", text)
			}
			c.cmd("QUIT", 221, "2.0.0")
			h.with(t).waitLog("transaction", "message_id", id, "client_ip", tt.ip)
		})
	}
}

// TestProxyProtocolRequired: a trusted source without a valid header is
// refused; a LOCAL header (health check) keeps the peer's address.
func TestProxyProtocolRequired(t *testing.T) {
	h := startGateway(t, Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := dialRawNoGreeting(t, h.addr)
	c.send("EHLO no-header.test\r\n")
	c.expectClosed()
	if got := h.metric("letterbox_smtp_connections_total", "result", reasonProxyHeader); got != 1 {
		t.Errorf("refused connections = %v", got)
	}

	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	c = proxied(t, h.addr, local)
	c.hello("health.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("local") + ".\r\n")
	_, env := h.stored(queuedID(t, c.expect(250, "2.0.0")))
	if env.ClientIP != "127.0.0.1" {
		t.Errorf("client IP %q", env.ClientIP)
	}
}

// TestProxyProtocolUntrusted: a source outside --proxy-protocol-from cannot
// claim another address; its PROXY line is an unknown command.
func TestProxyProtocolUntrusted(t *testing.T) {
	h := startGateway(t, Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	c := dialRaw(t, h.addr)
	c.cmd("PROXY TCP4 203.0.113.9 192.0.2.25 51000 25", 501, "5.5.2")
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("untrusted") + ".\r\n")
	_, env := h.stored(queuedID(t, c.expect(250, "2.0.0")))
	if env.ClientIP != "127.0.0.1" {
		t.Errorf("client IP %q", env.ClientIP)
	}
}

// TestPerIPLimitIPv6: IPv6 clients are counted per /64.
func TestPerIPLimitIPv6(t *testing.T) {
	h := startGateway(t, Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxConnectionsPerIP: 1})
	proxied(t, h.addr, proxyHeader(2, "[2001:db8::1]:40000"))
	over := dialRawNoGreeting(t, h.addr)
	b, _ := proxyHeader(2, "[2001:db8::2]:40001").Format()
	over.send(string(b))
	over.expect(421, "4.7.0")
	proxied(t, h.addr, proxyHeader(2, "[2001:db8:0:1::1]:40002"))
}
