// Package links makes and checks letterbox's attachment links: URLs that
// stay valid for a webhook's whole link_ttl (up to 7 days), whatever the
// lifetime of the credentials of the function that made them, and that can
// be revoked by rotating a key.
//
// A link is BASE/TOKEN. The token is URL-safe (RFC 3986 unreserved
// characters only) and versioned:
//
//	v1.KID.EXPIRY.KEY.MAC
//
// KID names the signing key (the first 6 bytes of SHA-256 over it,
// base64url), EXPIRY is the Unix time in seconds after which the link is
// refused, KEY is the object's store key (base64url, RFC 4648 §5, no
// padding) and MAC is HMAC-SHA256 (RFC 2104) under that key over the
// version, KID, EXPIRY and KEY, base64url. Verification compares MACs in
// constant time and only then looks at the expiry, so an unsigned request
// learns nothing.
//
// A Signer makes links (it is a store.Presigner, so the webhook code asks
// for a link the same way whatever the backend). A Handler serves them: on
// AWS (functions/link, behind a Lambda function URL) it answers with a
// redirect to a short-lived S3 URL presigned with the link function's own
// current credentials; in `letterbox dev` it streams the object itself.
//
// Only keys under Linkable prefixes are linked: a Signer refuses to sign
// others and a Handler refuses tokens naming them, even when validly
// signed, so that a leaked or misused key cannot reach raw mail or
// delivery records.
package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
)

// Version is the token format this package makes.
const Version = "v1"

// MaxTTL is the longest a link may live: link_ttl's upper bound.
const MaxTTL = 7 * 24 * time.Hour

// MinKeyBytes is the shortest signing key accepted.
const MinKeyBytes = 32

// Linkable are the store prefixes whose objects may be linked.
var Linkable = []string{store.AttachmentsPrefix}

// Errors of Verify. A Handler answers ErrInvalid with 403 Forbidden and
// ErrExpired with 410 Gone.
var (
	// ErrInvalid: malformed, signed with an unknown (e.g. rotated-out) key,
	// tampered with, or naming a key that may not be linked.
	ErrInvalid = errors.New("links: invalid link")
	// ErrExpired: a valid link past its expiry.
	ErrExpired = errors.New("links: link expired")
)

// b64 is strict: a token has one spelling (no ignored padding bits).
var b64 = base64.RawURLEncoding.Strict()

// Key is one signing key and its id.
type Key struct {
	ID     string
	secret []byte
}

// NewKey returns the key for secret, which must be at least MinKeyBytes
// long. Errors never quote the secret.
func NewKey(secret []byte) (Key, error) {
	if len(secret) < MinKeyBytes {
		return Key{}, fmt.Errorf("links: a signing key of %d bytes; want at least %d", len(secret), MinKeyBytes)
	}
	sum := sha256.Sum256(append([]byte("letterbox link key id\x00"), secret...))
	return Key{ID: b64.EncodeToString(sum[:6]), secret: append([]byte(nil), secret...)}, nil
}

func (k Key) mac(kid, exp, key string) []byte {
	m := hmac.New(sha256.New, k.secret)
	// Fields are NUL-separated; the store key comes last, so no choice of
	// key can make two different field lists sign alike.
	fmt.Fprintf(m, "%s\x00%s\x00%s\x00%s", Version, kid, exp, key)
	return m.Sum(nil)
}

// Keyring is the current signing key and the older ones still accepted.
type Keyring struct {
	current Key
	byID    map[string]Key
}

// NewKeyring makes a keyring that signs with current and also accepts
// older (the previous version of a rotated secret). Empty older secrets
// are skipped.
func NewKeyring(current []byte, older ...[]byte) (*Keyring, error) {
	c, err := NewKey(current)
	if err != nil {
		return nil, err
	}
	kr := &Keyring{current: c, byID: map[string]Key{c.ID: c}}
	for _, o := range older {
		if len(o) == 0 {
			continue
		}
		k, err := NewKey(o)
		if err != nil {
			return nil, fmt.Errorf("older key: %w", err)
		}
		if _, dup := kr.byID[k.ID]; !dup {
			kr.byID[k.ID] = k
		}
	}
	return kr, nil
}

// CurrentID is the id of the key that signs.
func (kr *Keyring) CurrentID() string { return kr.current.ID }

// Token returns the token naming key, valid until exp.
func (kr *Keyring) Token(key string, exp time.Time) string {
	kid, e := kr.current.ID, strconv.FormatInt(exp.Unix(), 10)
	return strings.Join([]string{Version, kid, e, b64.EncodeToString([]byte(key)), b64.EncodeToString(kr.current.mac(kid, e, key))}, ".")
}

// Verify returns the store key a token names, or ErrInvalid, or the key
// and ErrExpired (at now). A token is expired from its EXPIRY second on.
func (kr *Keyring) Verify(token string, now time.Time) (string, error) {
	f := strings.Split(token, ".")
	if len(f) != 5 || f[0] != Version {
		return "", ErrInvalid
	}
	kid, e, k64, m64 := f[1], f[2], f[3], f[4]
	k, ok := kr.byID[kid]
	if !ok {
		return "", ErrInvalid
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || strconv.FormatInt(exp, 10) != e {
		return "", ErrInvalid // one spelling per expiry
	}
	raw, err := b64.DecodeString(k64)
	if err != nil {
		return "", ErrInvalid
	}
	mac, err := b64.DecodeString(m64)
	if err != nil || !hmac.Equal(mac, k.mac(kid, e, string(raw))) {
		return "", ErrInvalid
	}
	key := string(raw)
	if !IsLinkable(key) {
		return "", ErrInvalid
	}
	if now.Unix() >= exp {
		return key, ErrExpired
	}
	return key, nil
}

// IsLinkable says whether key may be linked: it is under a Linkable prefix
// and has no empty, "." or ".." segment (which a file store could resolve
// outside its root).
func IsLinkable(key string) bool {
	ok := false
	for _, p := range Linkable {
		if rest, found := strings.CutPrefix(key, p); found && rest != "" {
			ok = true
		}
	}
	if !ok {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
