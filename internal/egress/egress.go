// Package egress guards outbound connections to user-supplied targets
// (webhook URLs, smart hosts) against server-side request forgery: for every
// address a connection actually dials, after DNS resolution, it refuses the
// special-purpose addresses of the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890 and its updates: loopback, RFC 1918 and RFC 4193
// private, RFC 3927 and RFC 4291 link-local, RFC 6598 shared, documentation,
// benchmarking, 6to4 (RFC 3056), Teredo (RFC 4380), NAT64 (RFC 6052, RFC
// 8215), the IPv4-mapped and IPv4-compatible forms (RFC 4291 §2.5.5), SRv6
// SIDs (RFC 9602)), multicast, and every IPv6 address outside global unicast
// 2000::/3, unless explicitly allowed. 64:ff9b::a9fe:a9fe, the NAT64 form of
// the cloud metadata endpoint 169.254.169.254, is refused like the endpoint.
//
// The deny lists come from code.dny.dev/ssrf, generated from the IANA
// registries; the tests check every registry entry (testdata/). Checking
// the dialled address in the dialer's Control function, not the name,
// defeats DNS rebinding: the address checked is the address connected to.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"code.dny.dev/ssrf"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// Policy says which special-purpose destinations are allowed.
type Policy struct {
	// AllowLoopback permits 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104:
	// letterbox dev and the tests' httptest receivers set it.
	AllowLoopback bool
	// AllowPrivate permits every address (an action's
	// allow_private_network, letterbox dev --allow-private-webhooks).
	AllowPrivate bool
}

// ErrForbidden is returned (wrapped, permanent) for a refused destination.
var ErrForbidden = errors.New("destination address is not allowed (private, loopback, link-local or reserved)")

var (
	strict   = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())
	loopback = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork(),
		ssrf.WithAllowedV4Prefixes(netip.MustParsePrefix("127.0.0.0/8")),
		ssrf.WithAllowedV6Prefixes(netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("::ffff:127.0.0.0/104")))
)

// Allowed reports whether the policy permits connecting to addr.
func (p Policy) Allowed(addr netip.Addr) bool {
	return p.check(addr) == nil
}

func (p Policy) check(addr netip.Addr) error {
	if !addr.IsValid() {
		return ErrForbidden
	}
	if p.AllowPrivate {
		return nil
	}
	g := strict
	if p.AllowLoopback {
		g = loopback
	}
	if err := g.SafeAddr(addr.WithZone("")); err != nil {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return nil
}

// Control is a net.Dialer Control function enforcing the policy on the
// address about to be dialled: the address the resolver returned at connect
// time, whatever an earlier lookup said.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fault.Permanent(fmt.Errorf("egress: %s: %w", address, ErrForbidden))
	}
	if err := p.check(ap.Addr()); err != nil {
		return fault.Permanent(fmt.Errorf("egress: %s: %w", ap.Addr(), err))
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
