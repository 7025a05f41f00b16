// Package egress guards outbound connections to user-supplied targets
// (webhook URLs, smart hosts) against server-side request forgery: after DNS
// resolution, and for every address a connection actually dials, it refuses
// loopback, private (RFC 1918, RFC 4193), link-local (RFC 3927, RFC 4291),
// shared (RFC 6598), unspecified, multicast and other special-purpose
// addresses (RFC 6890), including the cloud metadata endpoint 169.254.169.254,
// unless explicitly allowed. Checking the dialled address, not the name,
// defeats DNS rebinding.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// Policy says which special-purpose destinations are allowed.
type Policy struct {
	// AllowLoopback permits 127.0.0.0/8 and ::1 (letterbox dev sets it).
	AllowLoopback bool
	// AllowPrivate permits every non-public address.
	AllowPrivate bool
}

// ErrForbidden is returned (wrapped, permanent) for a refused destination.
var ErrForbidden = errors.New("destination address is not allowed (private, loopback, link-local or reserved)")

var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Allowed reports whether the policy permits connecting to addr.
func (p Policy) Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() {
		return p.AllowLoopback || p.AllowPrivate
	}
	if p.AllowPrivate {
		return true
	}
	for _, pre := range special {
		if pre.Contains(addr) {
			return false
		}
	}
	return addr.IsValid()
}

// Control is a net.Dialer Control function enforcing the policy on the
// address about to be dialled.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fault.Permanent(fmt.Errorf("egress: %s: %w", address, ErrForbidden))
	}
	if !p.Allowed(ap.Addr()) {
		return fault.Permanent(fmt.Errorf("egress: %s: %w", ap.Addr(), ErrForbidden))
	}
	return nil
}

// Dialer returns a dialer that enforces the policy.
func (p Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.Control}
}

// DialContext dials with the policy enforced.
func (p Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.Dialer(10*time.Second).DialContext(ctx, network, addr)
}
