package links_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/links"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

const attKey = "attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/1/Café order.pdf"

// b64url is the base64url alphabet (RFC 4648 §5), in order.
const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func secret(c byte) []byte { return []byte(strings.Repeat(string(c), links.MinKeyBytes)) }

func keyring(t *testing.T, current []byte, older ...[]byte) *links.Keyring {
	t.Helper()
	kr, err := links.NewKeyring(current, older...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// token signs key for ttl at t0 and returns the link's token.
func token(t *testing.T, kr *links.Keyring, key string, ttl time.Duration) string {
	t.Helper()
	s := &links.Signer{Base: "https://abc.lambda-url.eu-west-1.on.aws/", Keys: kr, Now: func() time.Time { return t0 }}
	u, err := s.PresignGet(context.Background(), key, ttl)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(u, "https://abc.lambda-url.eu-west-1.on.aws/")
	if !ok {
		t.Fatalf("link %s is not under the base URL", u)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	kr := keyring(t, secret('a'))
	tok := token(t, kr, attKey, 7*24*time.Hour)
	if strings.Trim(tok, b64url+".") != "" {
		t.Errorf("token %q has characters outside base64url and '.'", tok)
	}
	if !strings.HasPrefix(tok, "v1."+kr.CurrentID()+".") {
		t.Errorf("token %q does not start with the version and key id", tok)
	}
	got, err := kr.Verify(tok, t0.Add(7*24*time.Hour-time.Second))
	if err != nil || got != attKey {
		t.Fatalf("Verify = %q, %v; want %q", got, err, attKey)
	}
}

func TestExpired(t *testing.T) {
	kr := keyring(t, secret('a'))
	tok := token(t, kr, attKey, time.Hour)
	if _, err := kr.Verify(tok, t0.Add(time.Hour-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	got, err := kr.Verify(tok, t0.Add(time.Hour))
	if !errors.Is(err, links.ErrExpired) || got != attKey {
		t.Fatalf("at expiry: %q, %v; want %q, ErrExpired", got, err, attKey)
	}
}

func TestTampered(t *testing.T) {
	kr := keyring(t, secret('a'))
	tok := token(t, kr, attKey, time.Hour)
	other := token(t, kr, "attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/2/invoice.pdf", time.Hour)
	f, o := strings.Split(tok, "."), strings.Split(other, ".")
	set := func(i int, v string) string {
		g := append([]string(nil), f...)
		g[i] = v
		return strings.Join(g, ".")
	}
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for name, bad := range map[string]string{
		"another key, same MAC":     set(3, o[3]),
		"later expiry":              set(2, "1796558400"),
		"expiry with a leading 0":   set(2, "0"+f[2]),
		"MAC changed":               set(4, flip(f[4], 5)),
		"MAC's unused bits changed": set(4, f[4][:len(f[4])-1]+string(b64url[strings.IndexByte(b64url, f[4][len(f[4])-1])^1])),
		"MAC truncated":             set(4, f[4][:20]),
		"version v2":                set(0, "v2"),
		"unknown key id":            set(1, "AAAAAAAA"),
		"key not base64":            set(3, "a+b/c"),
		"a field missing":           strings.Join(f[:4], "."),
		"a field more":              tok + ".x",
		"empty":                     "",
	} {
		t.Run(name, func(t *testing.T) {
			if bad == tok {
				t.Fatal("the tampered token is the token")
			}
			if got, err := kr.Verify(bad, t0); !errors.Is(err, links.ErrInvalid) || got != "" {
				t.Fatalf("Verify = %q, %v; want ErrInvalid", got, err)
			}
		})
	}
}

// Rotation: links signed with the previous key still work; links signed
// with the key before it are refused, which is how links are revoked.
func TestRotation(t *testing.T) {
	a, b, c := secret('a'), secret('b'), secret('c')
	tokA := token(t, keyring(t, a), attKey, time.Hour)
	afterOne := keyring(t, b, a) // AWSCURRENT b, AWSPREVIOUS a
	tokB := token(t, afterOne, attKey, time.Hour)
	for _, tok := range []string{tokA, tokB} {
		if _, err := afterOne.Verify(tok, t0); err != nil {
			t.Errorf("after one rotation: %v", err)
		}
	}
	afterTwo := keyring(t, c, b)
	if _, err := afterTwo.Verify(tokB, t0); err != nil {
		t.Errorf("after two rotations, the previous key's link: %v", err)
	}
	if _, err := afterTwo.Verify(tokA, t0); !errors.Is(err, links.ErrInvalid) {
		t.Errorf("after two rotations, the oldest key's link: %v, want ErrInvalid", err)
	}
}

func TestOnlyLinkablePrefixes(t *testing.T) {
	kr := keyring(t, secret('a'))
	s := &links.Signer{Base: "https://x.example/", Keys: kr}
	for _, key := range []string{"raw/01JF8ZQ3V2M9N4X7C5B6A0D1EF.eml", "deliveries/01JF8ZQ3V2M9N4X7C5B6A0D1EF/j.json", "parsed/x.json",
		"attachments/", "attachments/../raw/x.eml", "attachments/a//b", "attachments/./a", "/attachments/a", "../attachments/a"} {
		t.Run(key, func(t *testing.T) {
			if links.IsLinkable(key) {
				t.Fatal("IsLinkable = true")
			}
			if _, err := s.PresignGet(context.Background(), key, time.Hour); err == nil || fault.IsTemporary(err) {
				t.Fatalf("PresignGet: %v, want a permanent error", err)
			}
			// Validly signed all the same (Token does not check): refused.
			if _, err := kr.Verify(kr.Token(key, t0.Add(time.Hour)), t0); !errors.Is(err, links.ErrInvalid) {
				t.Fatalf("Verify: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestTTLBounds(t *testing.T) {
	s := &links.Signer{Base: "https://x.example", Keys: keyring(t, secret('a'))}
	for _, ttl := range []time.Duration{0, -time.Second, links.MaxTTL + time.Second} {
		if _, err := s.PresignGet(context.Background(), attKey, ttl); err == nil || fault.IsTemporary(err) {
			t.Errorf("ttl %v: %v, want a permanent error", ttl, err)
		}
	}
	u, err := s.PresignGet(context.Background(), attKey, links.MaxTTL)
	if err != nil || !strings.HasPrefix(u, "https://x.example/v1.") {
		t.Errorf("ttl %v: %q, %v", links.MaxTTL, u, err)
	}
}

func TestShortKeyRefused(t *testing.T) {
	short := "0123456789abcdef0123456789abcde" // 31 bytes
	_, err := links.NewKeyring([]byte(short))
	if err == nil || strings.Contains(err.Error(), short) {
		t.Fatalf("NewKeyring(31 bytes) = %v; want an error not quoting the key", err)
	}
	if _, err := links.NewKeyring(secret('a'), []byte(short)); err == nil {
		t.Fatal("NewKeyring with a 31-byte older key: no error")
	}
}

// Verify never panics, and a token it accepts is exactly the one Token
// makes for that key and expiry: one spelling per link.
func FuzzVerify(f *testing.F) {
	kr, err := links.NewKeyring(secret('a'), secret('b'))
	if err != nil {
		f.Fatal(err)
	}
	old, _ := links.NewKeyring(secret('b'))
	f.Add(kr.Token(attKey, t0.Add(time.Hour)))
	f.Add(old.Token(attKey, t0.Add(time.Hour)))
	f.Add(kr.Token("raw/x.eml", t0.Add(time.Hour)))
	f.Add("v1...." + strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, tok string) {
		key, err := kr.Verify(tok, t0)
		if err != nil {
			return
		}
		if !links.IsLinkable(key) {
			t.Fatalf("accepted a token for %q", key)
		}
		exp, _ := strconv.ParseInt(strings.Split(tok, ".")[2], 10, 64)
		if want, prev := kr.Token(key, time.Unix(exp, 0)), old.Token(key, time.Unix(exp, 0)); tok != want && tok != prev {
			t.Fatalf("accepted %q; the canonical token is %q", tok, want)
		}
	})
}
