package mailauth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// errTemp marks a key lookup that may succeed later.
type tempError struct{ err error }

func (e tempError) Error() string { return e.err.Error() }
func (e tempError) Unwrap() error { return e.err }

// publicKey is a DKIM key record (RFC 6376 §3.6.1).
type publicKey struct {
	rsa     *rsa.PublicKey
	ed25519 ed25519.PublicKey
	hashes  []string
}

// fetchKey looks up selector._domainkey.domain. A DNS failure other than
// "no such name" is a tempError.
func (c *Checker) fetchKey(ctx context.Context, domain, selector string) (*publicKey, error) {
	if domain == "" || selector == "" {
		return nil, errors.New("missing d= or s=")
	}
	name := selector + "._domainkey." + domain
	txts, err := c.res.LookupTXT(ctx, name)
	if err != nil {
		if k := dnsKind(err); k == "temporary" || k == "error" {
			return nil, tempError{fmt.Errorf("key %s: %w", name, err)}
		}
		return nil, fmt.Errorf("no key at %s", name)
	}
	if len(txts) != 1 {
		return nil, fmt.Errorf("%d key records at %s", len(txts), name)
	}
	return parseKey(txts[0])
}

func parseKey(txt string) (*publicKey, error) {
	tags, err := parseTags(txt)
	if err != nil {
		return nil, fmt.Errorf("key record: %w", err)
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, errors.New("key record: bad version")
	}
	if s, ok := tags["s"]; ok {
		found := false
		for _, t := range strings.Split(s, ":") {
			if t == "*" || t == "email" {
				found = true
			}
		}
		if !found {
			return nil, errors.New("key record: not for email")
		}
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("key record: no p=")
	}
	if p == "" {
		return nil, errors.New("key revoked")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key record: %w", err)
	}
	k := &publicKey{}
	if h, ok := tags["h"]; ok {
		k.hashes = strings.Split(h, ":")
	}
	switch tags["k"] {
	case "", "rsa":
		var pub any
		pub, err = x509.ParsePKIXPublicKey(der)
		if err != nil {
			pub, err = x509.ParsePKCS1PublicKey(der)
		}
		if err != nil {
			return nil, fmt.Errorf("key record: %w", err)
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("key record: not an RSA key")
		}
		if rk.Size()*8 < 1024 {
			return nil, fmt.Errorf("key record: RSA key of %d bits is too short (RFC 8301)", rk.Size()*8)
		}
		k.rsa = rk
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, errors.New("key record: bad Ed25519 key size")
		}
		k.ed25519 = ed25519.PublicKey(der)
	default:
		return nil, fmt.Errorf("key record: unknown key type %q", tags["k"])
	}
	return k, nil
}

// verify checks a signature over a SHA-256 digest with algorithm a
// ("rsa-sha256" or "ed25519-sha256").
func (k *publicKey) verify(a string, digest, sig []byte) error {
	if len(k.hashes) > 0 {
		ok := false
		for _, h := range k.hashes {
			if h == "sha256" {
				ok = true
			}
		}
		if !ok {
			return errors.New("key does not allow sha256")
		}
	}
	switch a {
	case "rsa-sha256":
		if k.rsa == nil {
			return errors.New("algorithm does not match the key")
		}
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest, sig)
	case "ed25519-sha256":
		if k.ed25519 == nil {
			return errors.New("algorithm does not match the key")
		}
		if !ed25519.Verify(k.ed25519, digest, sig) {
			return errors.New("Ed25519 signature did not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported algorithm %q", a)
}
