package egress_test

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
)

// registryEntry is one line of testdata/iana-special-purpose.txt.
type registryEntry struct {
	prefix netip.Prefix
	name   string
}

func readRegistry(t *testing.T) []registryEntry {
	t.Helper()
	f, err := os.Open("testdata/iana-special-purpose.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []registryEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		p, err := netip.ParsePrefix(fields[0])
		if err != nil || len(fields) != 3 || p != p.Masked() {
			t.Fatalf("testdata line %d: %q: want block<TAB>name<TAB>reference (%v)", n, line, err)
		}
		out = append(out, registryEntry{p, fields[1]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("testdata: %d entries, want the whole registries", len(out))
	}
	return out
}

// samples returns the first, a middle and the last address of p.
func samples(p netip.Prefix) []netip.Addr {
	first := p.Addr()
	b := first.AsSlice()
	last := append([]byte(nil), b...)
	mid := append([]byte(nil), b...)
	for i := p.Bits(); i < len(b)*8; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	if i := p.Bits(); i < len(b)*8 {
		mid[i/8] |= 0x80 >> (i % 8) // the first address of the upper half
	}
	l, _ := netip.AddrFromSlice(last)
	m, _ := netip.AddrFromSlice(mid)
	return []netip.Addr{first, m, l}
}

// v6Forms returns the IPv6 spellings of an IPv4 address a guard must see
// through: IPv4-mapped (RFC 4291 §2.5.5.2), IPv4-compatible (§2.5.5.1),
// NAT64 well-known and local-use prefixes (RFC 6052, RFC 8215), 6to4
// (RFC 3056) and Teredo (RFC 4380, the client address obfuscated).
func v6Forms(a netip.Addr) map[string]netip.Addr {
	v4 := a.As4()
	with := func(prefix []byte, at int, ip [4]byte) netip.Addr {
		var b [16]byte
		copy(b[:], prefix)
		copy(b[at:], ip[:])
		return netip.AddrFrom16(b)
	}
	obf := [4]byte{^v4[0], ^v4[1], ^v4[2], ^v4[3]}
	return map[string]netip.Addr{
		"IPv4-mapped":     with([]byte{10: 0xff, 11: 0xff}, 12, v4),
		"IPv4-compatible": with(nil, 12, v4),
		"NAT64":           with([]byte{0, 0x64, 0xff, 0x9b}, 12, v4),
		"NAT64 local-use": with([]byte{0, 0x64, 0xff, 0x9b, 0, 1}, 12, v4),
		"6to4":            with([]byte{0x20, 0x02}, 2, v4),
		"Teredo":          with([]byte{0x20, 0x01, 0, 0, 0xc0, 0, 2, 1}, 12, obf),
	}
}

func isLoopback(a netip.Addr) bool {
	return a.Unmap().IsLoopback() && (a.Is4() || a.Is4In6() || a == netip.IPv6Loopback())
}

// TestSpecialPurposeRegistry: every entry of the IANA special-purpose
// registries (and multicast) is refused by the default policy, and by the
// loopback policy except loopback itself; the IPv6 forms of each IPv4 block
// are refused as well.
func TestSpecialPurposeRegistry(t *testing.T) {
	for _, e := range readRegistry(t) {
		t.Run(e.prefix.String(), func(t *testing.T) {
			addrs := map[string]netip.Addr{}
			for _, a := range samples(e.prefix) {
				addrs[a.String()] = a
				if a.Is4() {
					for form, b := range v6Forms(a) {
						addrs[form+" "+b.String()] = b
					}
				}
			}
			for label, a := range addrs {
				if (egress.Policy{}).Allowed(a) {
					t.Errorf("%s (%s): allowed by the default policy", label, e.name)
				}
				if got, want := (egress.Policy{AllowLoopback: true}).Allowed(a), isLoopback(a); got != want {
					t.Errorf("%s (%s): loopback policy allows = %v, want %v", label, e.name, got, want)
				}
				if !(egress.Policy{AllowPrivate: true}).Allowed(a) {
					t.Errorf("%s (%s): refused with AllowPrivate", label, e.name)
				}
				// The dialer's path: a permanent ErrForbidden.
				err := (egress.Policy{}).Control("tcp", netip.AddrPortFrom(a, 443).String(), nil)
				if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
					t.Errorf("%s: Control = %v, want permanent ErrForbidden", label, err)
				}
			}
		})
	}
}

// TestPublicAllowed: global unicast addresses next to the special blocks
// pass, so the guard is not simply refusing everything.
func TestPublicAllowed(t *testing.T) {
	for _, s := range []string{
		"93.184.215.14", "8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255",
		"100.128.0.0", "169.253.255.255", "172.32.0.0", "192.0.3.0", "192.169.0.0", "198.20.0.0",
		"223.255.255.255",
		"2606:2800:21f:cb07:6820:80da:af6b:8b2c", "2001:4860:4860::8888", "2001:200::1",
		"2003::1", "2620:4f:8001::1", "3ffe::1", "2a00:1450:4001::1",
	} {
		a := netip.MustParseAddr(s)
		for _, p := range []egress.Policy{{}, {AllowLoopback: true}, {AllowPrivate: true}} {
			if !p.Allowed(a) {
				t.Errorf("%+v.Allowed(%s) = false", p, s)
			}
		}
		if err := (egress.Policy{}).Control("tcp4", netip.AddrPortFrom(a, 25).String(), nil); err != nil {
			t.Errorf("Control(%s) = %v", s, err)
		}
	}
	if (egress.Policy{AllowPrivate: true}).Allowed(netip.Addr{}) {
		t.Error("the zero Addr is allowed")
	}
	if err := (egress.Policy{AllowPrivate: true}).Control("tcp", "no-port", nil); !errors.Is(err, egress.ErrForbidden) {
		t.Errorf("Control(unparsable) = %v", err)
	}
}
