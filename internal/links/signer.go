package links

import (
	"context"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Signer makes links served by a Handler at Base.
type Signer struct {
	// Base is where the Handler serves, e.g. the link function's URL
	// (https://ID.lambda-url.REGION.on.aws/) or http://HOST:PORT/dev/links.
	Base string
	Keys *Keyring
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ store.Presigner = (*Signer)(nil)

// PresignGet returns a link to key valid for ttl (at most MaxTTL). Keys
// that may not be linked (IsLinkable) are refused, permanently. It does
// not check that the key exists.
func (s *Signer) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > MaxTTL {
		return "", fault.Permanentf("links: link to %s: ttl %v outside (0, %v]", key, ttl, MaxTTL)
	}
	if !IsLinkable(key) {
		return "", fault.Permanentf("links: %s may not be linked (only keys under %s)", key, strings.Join(Linkable, ", "))
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	return strings.TrimSuffix(s.Base, "/") + "/" + s.Keys.Token(key, now().Add(ttl)), nil
}
