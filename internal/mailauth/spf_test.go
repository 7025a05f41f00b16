package mailauth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
	"github.com/miekg/dns"
)

// TestSPFDNSErrorIsTempError: an answer with an error RCODE is temperror
// (RFC 7208 §5: "a DNS error ... temperror"), never permerror, for the
// record itself and for a mechanism's lookup; so are DKIM's key and DMARC's
// record lookups.
func TestSPFDNSErrorIsTempError(t *testing.T) {
	z := testenv.StartDNS(t)
	z.Rcode("refused.example", dns.RcodeRefused)
	z.Rcode("servfail.example", dns.RcodeServerFailure)
	z.TXT("inc-refused.example", "v=spf1 include:refused.example -all")
	z.TXT("a-refused.example", "v=spf1 a:refused.example -all")
	z.TXT("mx-refused.example", "v=spf1 mx:servfail.example -all")
	c := newChecker(t, z.Addr, 2*time.Second)
	tests := []struct {
		from, reason string
	}{
		{"a@refused.example", "lookup refused.example.: server answered REFUSED"},
		{"a@servfail.example", "lookup servfail.example.: server answered SERVFAIL"},
		{"a@inc-refused.example", "lookup refused.example.: server answered REFUSED"},
		{"a@a-refused.example", "lookup refused.example.: server answered REFUSED"},
		{"a@mx-refused.example", "lookup servfail.example.: server answered SERVFAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			a := check(t, c, &env{"192.0.2.1", tt.from, "mx.nowhere.example"}, []byte(baseMsg))
			if a.SPF.Result != TempError || a.SPF.Reason != tt.reason {
				t.Fatalf("spf = %+v, want temperror %q", a.SPF, tt.reason)
			}
		})
	}
	t.Run("dkim key and dmarc record", func(t *testing.T) {
		k := newRSAKey(t)
		z.Rcode("sel._domainkey.example.org", dns.RcodeRefused)
		z.Rcode("_dmarc.example.org", dns.RcodeRefused)
		a := check(t, c, nil, dkimSign(t, []byte(baseMsg), k, "example.org", "sel"))
		if a.DKIM[0].Result != TempError || a.DMARC.Result != TempError {
			t.Fatalf("dkim = %+v, dmarc = %+v, want temperror", a.DKIM, a.DMARC)
		}
	})
}

// TestSPFHelo: the HELO identity is checked on its own (RFC 7208 §2.3)
// and reported as auth.spf_helo; for a null reverse-path it is also the
// MAIL FROM result (§2.4).
func TestSPFHelo(t *testing.T) {
	z := testenv.StartDNS(t)
	z.TXT("mx.example.org", "v=spf1 ip4:192.0.2.1 -all")
	z.TXT("example.org", "v=spf1 -all")
	c := newChecker(t, z.Addr, 2*time.Second)
	tests := []struct {
		name           string
		env            *env
		spf, spfHelo   string
		spfDom, heloDm string
	}{
		{"helo passes, mail from fails", &env{"192.0.2.1", "alice@example.org", "mx.example.org"}, "fail", "pass", "example.org", "mx.example.org"},
		{"helo fails from another address", &env{"192.0.2.2", "alice@example.org", "mx.example.org"}, "fail", "fail", "example.org", "mx.example.org"},
		{"null reverse-path uses helo", &env{"192.0.2.1", "<>", "mx.example.org"}, "pass", "pass", "mx.example.org", "mx.example.org"},
		{"helo address literal is none", &env{"192.0.2.1", "alice@example.org", "[192.0.2.1]"}, "fail", "none", "example.org", "[192.0.2.1]"},
		{"single-label helo is none", &env{"192.0.2.1", "alice@example.org", "localhost"}, "fail", "none", "example.org", "localhost"},
		{"helo without record", &env{"192.0.2.1", "alice@example.org", "other.example.org"}, "fail", "none", "example.org", "other.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := check(t, c, tt.env, []byte(baseMsg))
			if a.SPF.Result != tt.spf || a.SPF.Domain != tt.spfDom {
				t.Errorf("spf = %+v, want %s for %s", a.SPF, tt.spf, tt.spfDom)
			}
			if a.SPFHelo == nil || a.SPFHelo.Result != tt.spfHelo || a.SPFHelo.Domain != tt.heloDm {
				t.Errorf("spf_helo = %+v, want %s for %s", a.SPFHelo, tt.spfHelo, tt.heloDm)
			}
		})
	}
	t.Run("in the message JSON", func(t *testing.T) {
		a := check(t, c, &env{"192.0.2.1", "alice@example.org", "mx.example.org"}, []byte(baseMsg))
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"spf_helo":{"result":"pass","domain":"mx.example.org"}`; !strings.Contains(string(b), want) {
			t.Fatalf("auth JSON %s lacks %s", b, want)
		}
	})
	t.Run("no envelope, no spf_helo", func(t *testing.T) {
		if a := check(t, c, nil, []byte(baseMsg)); a.SPFHelo != nil {
			t.Fatalf("spf_helo = %+v, want none", a.SPFHelo)
		}
	})
	t.Run("no helo, no spf_helo", func(t *testing.T) {
		a := check(t, c, &env{"192.0.2.1", "alice@example.org", ""}, []byte(baseMsg))
		if a.SPFHelo != nil || a.SPF.Result != Fail {
			t.Fatalf("spf = %+v, spf_helo = %+v", a.SPF, a.SPFHelo)
		}
	})
}

// TestSPFExplanation: a fail carries the domain's exp= text (RFC 7208
// §6.2); other results do not.
func TestSPFExplanation(t *testing.T) {
	z := testenv.StartDNS(t)
	z.TXT("example.org", "v=spf1 ip4:192.0.2.1 -all exp=why.example.org")
	z.TXT("why.example.org", "%{i} is not a mail server of %{d}")
	c := newChecker(t, z.Addr, 2*time.Second)
	a := check(t, c, &env{"192.0.2.9", "alice@example.org", "mx"}, []byte(baseMsg))
	want := message.SPFResult{Result: Fail, Domain: "example.org", Reason: "matched -all", Explanation: "192.0.2.9 is not a mail server of example.org"}
	if *a.SPF != want {
		t.Fatalf("spf = %+v, want %+v", a.SPF, want)
	}
	a = check(t, c, &env{"192.0.2.1", "alice@example.org", "mx"}, []byte(baseMsg))
	if a.SPF.Result != Pass || a.SPF.Explanation != "" {
		t.Fatalf("spf = %+v, want pass without explanation", a.SPF)
	}
}

// TestSPFInvalidClientIP: an envelope whose client IP does not parse is
// permerror for both identities, naming the address.
func TestSPFInvalidClientIP(t *testing.T) {
	c := newChecker(t, testenv.StartDNS(t).Addr, time.Second)
	a := check(t, c, &env{"192.0.2.300", "alice@example.org", "mx.example.org"}, []byte(baseMsg))
	want := message.SPFResult{Result: PermError, Reason: "invalid client IP 192.0.2.300"}
	if *a.SPF != want || a.SPFHelo == nil || *a.SPFHelo != want {
		t.Fatalf("spf = %+v, spf_helo = %+v, want %+v", a.SPF, a.SPFHelo, want)
	}
}
