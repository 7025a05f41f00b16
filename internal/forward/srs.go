package forward

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SRS is the Sender Rewriting Scheme in the form of libsrs2 and postsrsd
// (the "Guarded" scheme of Shevek's SRS paper): a forwarded message's
// envelope sender becomes an address at the SRS domain, which the
// forwarder's SPF record covers, and which still says where a bounce would
// go.
//
//	alice@example.org                     → SRS0=HHHH=TT=example.org=alice@fwd.example.net
//	SRS0=HHHH=TT=example.org=alice@fwd1   → SRS1=GGGG=fwd1==HHHH=TT=example.org=alice@fwd.example.net
//	SRS1=GGGG=fwd1==HHHH=…@fwdN           → SRS1=KKKK=fwd1==HHHH=…@fwd.example.net
//
// HHHH is the first four characters of base64(HMAC-SHA1(secret,
// lower(TT + domain + local))), GGGG and KKKK of HMAC-SHA1(secret,
// lower("fwd1" + "=HHHH=…")). TT is the day number modulo 1024 in two
// base32 characters (RFC 4648 alphabet). An address already at the SRS
// domain and the null sender are not rewritten. A sender already rewritten
// by another forwarder (SRS0) becomes SRS1, naming that forwarder, so a
// bounce can be walked back hop by hop without growing the address at each
// hop; an SRS1 address is re-signed for this domain keeping its first hop.
// The output is byte-compatible with postsrsd given the same secret, which
// the tests check.
type SRS struct {
	// Domain is the SRS domain: the domain part of rewritten senders.
	Domain string
	// Secrets: the first signs, all verify (for a rotation).
	Secrets []string
	// MaxAge bounds how old a timestamp Reverse accepts (default 21 days,
	// as libsrs2; it must stay under 1024 days).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SRS constants (libsrs2).
const (
	srsHashLen    = 4
	srsDay        = 24 * time.Hour
	srsSlots      = 1024 // two base32 characters
	srsDefaultAge = 21 * srsDay
	srsBase32     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)

// Errors of Reverse. Each is wrapped with the address concerned.
var (
	ErrNotSRS       = errors.New("srs: not an SRS address")
	ErrSRSDomain    = errors.New("srs: not at the SRS domain")
	ErrSRSMalformed = errors.New("srs: malformed SRS address")
	ErrSRSHash      = errors.New("srs: hash does not match")
	ErrSRSExpired   = errors.New("srs: timestamp expired")
)

// NewSRS returns an SRS for domain, signing with secrets[0].
func NewSRS(domain string, secrets ...string) (*SRS, error) {
	domain = strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if domain == "" || strings.ContainsAny(domain, "@ \t\r\n<>") {
		return nil, fmt.Errorf("srs: domain %q is not a domain name", domain)
	}
	if len(secrets) == 0 {
		return nil, errors.New("srs: no secret")
	}
	for _, s := range secrets {
		if len(s) < 16 {
			return nil, errors.New("srs: a secret must be at least 16 characters (e.g. openssl rand -base64 24)")
		}
	}
	return &SRS{Domain: domain, Secrets: secrets}, nil
}

func (s *SRS) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *SRS) maxAge() time.Duration {
	if s.MaxAge > 0 {
		return s.MaxAge
	}
	return srsDefaultAge
}

// hash is the truncated base64 HMAC-SHA1 of the lower-cased parts.
func srsHash(secret string, parts ...string) string {
	m := hmac.New(sha1.New, []byte(secret))
	for _, p := range parts {
		m.Write(asciiLower(p))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))[:srsHashLen]
}

// asciiLower lower-cases ASCII letters only, as libsrs2 does (so UTF-8
// local parts hash the same on both sides).
func asciiLower(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// checkHash compares case-insensitively, as libsrs2 does: some MTAs
// lower-case local parts.
func (s *SRS) checkHash(hash string, parts ...string) bool {
	if len(hash) != srsHashLen {
		return false
	}
	for _, sec := range s.Secrets {
		want := srsHash(sec, parts...)
		if hmac.Equal(asciiLower(hash), asciiLower(want)) {
			return true
		}
	}
	return false
}

func (s *SRS) timestamp() string {
	day := s.now().Unix() / int64(srsDay/time.Second)
	return string([]byte{srsBase32[(day>>5)&31], srsBase32[day&31]})
}

// checkTimestamp accepts a stamp no older than MaxAge (stamps from the
// future of the 1024-day cycle count as old, as in libsrs2).
func (s *SRS) checkTimestamp(ts string) error {
	if len(ts) != 2 {
		return ErrSRSMalformed
	}
	var then int64
	for _, c := range []byte(strings.ToUpper(ts)) {
		i := strings.IndexByte(srsBase32, c)
		if i < 0 {
			return ErrSRSMalformed
		}
		then = then<<5 | int64(i)
	}
	now := (s.now().Unix() / int64(srsDay/time.Second)) % srsSlots
	for now < then {
		now += srsSlots
	}
	if time.Duration(now-then)*srsDay > s.maxAge() {
		return ErrSRSExpired
	}
	return nil
}

func isSep(c byte) bool { return c == '=' || c == '-' || c == '+' }

// srsTag reports whether local starts with SRS0 or SRS1 and a separator.
func srsTag(local string) string {
	if len(local) < 5 || !isSep(local[4]) {
		return ""
	}
	switch strings.ToUpper(local[:4]) {
	case "SRS0":
		return "SRS0"
	case "SRS1":
		return "SRS1"
	}
	return ""
}

// splitAddr splits at the last @.
func splitAddr(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// Forward rewrites an envelope sender. The null sender stays null, and so
// does an address already at the SRS domain.
func (s *SRS) Forward(sender string) (string, error) {
	if sender == "" {
		return "", nil
	}
	local, domain, ok := splitAddr(sender)
	if !ok {
		return "", fmt.Errorf("srs: sender %q has no domain", sender)
	}
	if strings.EqualFold(strings.TrimSuffix(domain, "."), s.Domain) {
		return sender, nil
	}
	if !validHost(domain) || strings.ContainsAny(domain, "=+") {
		return "", fmt.Errorf("srs: sender %q: domain cannot be encoded", sender)
	}
	secret := s.Secrets[0]
	switch srsTag(local) {
	case "SRS0":
		// Another forwarder's SRS0: name it, keep its opaque part
		// (which starts with its separator, hence "==").
		rest := local[4:]
		return "SRS1=" + srsHash(secret, domain, rest) + "=" + domain + "=" + rest + "@" + s.Domain, nil
	case "SRS1":
		// SRS1=HHHH=firsthop=rest: re-sign, keeping the first hop.
		parts := strings.SplitN(local[5:], "=", 3)
		if len(parts) == 3 && validHost(parts[1]) && parts[2] != "" && isSep(parts[2][0]) {
			hop, rest := parts[1], parts[2]
			return "SRS1=" + srsHash(secret, hop, rest) + "=" + hop + "=" + rest + "@" + s.Domain, nil
		}
		// Not well-formed: treat as an ordinary address.
	}
	ts := s.timestamp()
	return "SRS0=" + srsHash(secret, ts, domain, local) + "=" + ts + "=" + domain + "=" + local + "@" + s.Domain, nil
}

// Reverse recovers the address an SRS address stands for: the original
// sender for SRS0, the previous forwarder's SRS0 address for SRS1. It
// checks the domain, the hash and (for SRS0) the timestamp's age. Errors
// wrap ErrNotSRS, ErrSRSDomain, ErrSRSMalformed, ErrSRSHash or
// ErrSRSExpired.
func (s *SRS) Reverse(addr string) (string, error) {
	local, domain, ok := splitAddr(addr)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrNotSRS, addr)
	}
	tag := srsTag(local)
	if tag == "" {
		return "", fmt.Errorf("%w: %q", ErrNotSRS, addr)
	}
	if !strings.EqualFold(strings.TrimSuffix(domain, "."), s.Domain) {
		return "", fmt.Errorf("%w: %q", ErrSRSDomain, addr)
	}
	if tag == "SRS1" {
		// SRS1=HHHH=hop==opaque (the opaque part keeps its separator).
		parts := strings.SplitN(local[5:], "=", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" || !isSep(parts[2][0]) || !validHost(parts[1]) {
			return "", fmt.Errorf("%w: %q", ErrSRSMalformed, addr)
		}
		hash, hop, rest := parts[0], parts[1], parts[2]
		if !s.checkHash(hash, hop, rest) {
			return "", fmt.Errorf("%w: %q", ErrSRSHash, addr)
		}
		return "SRS0" + rest + "@" + hop, nil
	}
	// SRS0=HHHH=TT=domain=local; local may itself contain "=".
	parts := strings.SplitN(local[5:], "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" || !validHost(parts[2]) {
		return "", fmt.Errorf("%w: %q", ErrSRSMalformed, addr)
	}
	hash, ts, host, user := parts[0], parts[1], parts[2], parts[3]
	if err := s.checkTimestamp(ts); err != nil {
		return "", fmt.Errorf("%w: %q", err, addr)
	}
	if !s.checkHash(hash, ts, host, user) {
		return "", fmt.Errorf("%w: %q", ErrSRSHash, addr)
	}
	return user + "@" + host, nil
}

// IsSRS reports whether addr looks like an SRS address at the SRS domain,
// without checking its hash.
func (s *SRS) IsSRS(addr string) bool {
	local, domain, ok := splitAddr(addr)
	return ok && srsTag(local) != "" && strings.EqualFold(strings.TrimSuffix(domain, "."), s.Domain)
}

// validHost is a loose check that a recovered domain cannot smuggle
// anything into an address.
func validHost(h string) bool {
	return h != "" && !strings.ContainsAny(h, "@<> \t\r\n\\\"")
}
