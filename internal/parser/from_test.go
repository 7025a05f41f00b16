package parser

import (
	"crypto/rsa"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/message"
	"golang.org/x/net/idna"
)

// signAs DKIM-signs raw for domain with selector s1, over the fields a
// signer would pick (each named once: the last instance, RFC 6376 §5.4.2).
func signAs(t testing.TB, k *rsa.PrivateKey, domain, raw string) string {
	t.Helper()
	var out strings.Builder
	err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: domain, Selector: "s1", Signer: k,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "Sender", "To", "Subject"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// checkFromInvariant checks what a receiver relies on: from.address, when
// set, is exactly one addr-spec whose domain is the DMARC domain; with no
// from there is no DMARC domain and no pass.
func checkFromInvariant(t testing.TB, m *message.Message) {
	t.Helper()
	if m.Auth == nil || m.Auth.DMARC == nil {
		t.Fatalf("no DMARC verdict: %+v", m.Auth)
	}
	d := m.Auth.DMARC
	if m.From == nil {
		if d.Domain != "" || d.Result == mailauth.Pass {
			t.Fatalf("no from, but DMARC %+v", d)
		}
		return
	}
	addr := m.From.Address
	as, err := mail.ParseAddressList(addr)
	if err != nil || len(as) != 1 || as[0].Name != "" || strings.ContainsAny(addr, "<>") {
		t.Fatalf("from.address %q is not one addr-spec: %v %v", addr, as, err)
	}
	// net/mail unquotes the local part; the domain after its last "@" is
	// the one a conforming reader finds.
	domain := as[0].Address[strings.LastIndexByte(as[0].Address, '@')+1:]
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		domain = a
	}
	if !strings.EqualFold(domain, d.Domain) {
		t.Fatalf("from.address %q has domain %q, DMARC checked %q (%+v)", addr, domain, d.Domain, d)
	}
}

// TestFromComposition runs the receiver-side attacks of "Composition
// Kills" (Chen et al., USENIX Security 2020) against the parser and DMARC
// together. The attacker owns evil.example: a DKIM key, an SPF record for
// its IP and a DMARC record, so every message below really can pass DMARC
// for evil.example. Each tries to make the JSON show bank.example while
// DMARC passes for evil.example; for each, from.address and the DMARC
// domain are the same domain, or DMARC does not pass.
func TestFromComposition(t *testing.T) {
	evilKey, evilRec := signingKey(t)
	_, bankRec := signingKey(t)
	addr := txtServer(t, map[string]string{
		"s1._domainkey.evil.example.": evilRec,
		"evil.example.":               "v=spf1 ip4:192.0.2.66 -all",
		"mx.evil.example.":            "v=spf1 ip4:192.0.2.66 -all",
		"_dmarc.evil.example.":        "v=DMARC1; p=reject",
		"s1._domainkey.bank.example.": bankRec,
		"bank.example.":               "v=spf1 ip4:198.51.100.1 -all",
		"_dmarc.bank.example.":        "v=DMARC1; p=reject",
	})
	checker, err := mailauth.New(mailauth.Config{Resolver: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	attacker := &message.Envelope{ClientIP: "192.0.2.66", MailFrom: "y@evil.example", HELO: "mx.evil.example", RcptTo: []string{"v@victim.example"}}
	const permerror, fail, pass = mailauth.PermError, mailauth.Fail, mailauth.Pass

	tests := []struct {
		name   string
		header string // the fields before To and Subject
		env    *message.Envelope
		from   string // want from.address; "" for null
		dmarc  string // want auth.dmarc.result
	}{
		{"control: the attacker's own From passes", "From: y@evil.example\r\n", nil, "y@evil.example", pass},

		// Multiple From fields (A1): the first is shown, the last signed.
		{"two From fields", "From: x@bank.example\r\nFrom: y@evil.example\r\n", nil, "x@bank.example", permerror},
		{"two From fields, signed one first", "From: y@evil.example\r\nFrom: x@bank.example\r\n", nil, "y@evil.example", permerror},
		{"From and From with space before colon", "From : x@bank.example\r\nFrom: y@evil.example\r\n", nil, "x@bank.example", permerror},
		{"From fields in other cases", "FROM: x@bank.example\r\nfrom: y@evil.example\r\n", nil, "x@bank.example", permerror},

		// Multiple addresses in one From (A2).
		{"two mailboxes", "From: x@bank.example, y@evil.example\r\n", nil, "x@bank.example", permerror},
		{"two mailboxes in a group", "From: g: x@bank.example, y@evil.example;\r\n", nil, "x@bank.example", permerror},
		{"backslash before the comma", "From: x@bank.example\\, y@evil.example\r\n", nil, "y@evil.example", permerror},
		{"garbage after the angle-addr", "From: <x@bank.example>y@evil.example\r\n", nil, "x@bank.example", permerror},

		// An address in the display name (A3).
		{"address as display name", "From: x@bank.example <y@evil.example>\r\n", nil, "y@evil.example", permerror},
		{"quoted address as display name", "From: \"x@bank.example\" <y@evil.example>\r\n", nil, "y@evil.example", pass},

		// Encoded words hiding an address (A4): never decoded in an addr-spec.
		{"encoded display name", "From: =?utf-8?b?eEBiYW5rLmV4YW1wbGU=?= <y@evil.example>\r\n", nil, "y@evil.example", pass},
		{"encoded address and comma before the real one", "From: =?utf-8?b?eEBiYW5rLmV4YW1wbGUsIA==?=y@evil.example\r\n", nil,
			"=?utf-8?b?eEBiYW5rLmV4YW1wbGUsIA==?=y@evil.example", pass},
		{"encoded word as the whole From", "From: =?utf-8?b?eEBiYW5rLmV4YW1wbGU=?=\r\n", nil, "", permerror},

		// Comments and quoted strings (A5).
		{"address in a trailing comment", "From: x@bank.example (y@evil.example)\r\n", nil, "x@bank.example", fail},
		{"address in a leading comment", "From: (x@bank.example) y@evil.example\r\n", nil, "y@evil.example", permerror},
		{"quoted local part holding an address", "From: \"x@bank.example\"@evil.example\r\n", nil, "\"x@bank.example\"@evil.example", pass},
		{"quoted local part holding a comma", "From: \"x@bank.example, y\"@evil.example\r\n", nil, "\"x@bank.example, y\"@evil.example", pass},

		// A source route (A6): its domains are not the author's.
		{"route through bank to evil", "From: <@bank.example:y@evil.example>\r\n", nil, "y@evil.example", permerror},
		{"route through evil to bank", "From: <@evil.example,@relay.example:x@bank.example>\r\n", nil, "x@bank.example", permerror},

		// An empty From (A7).
		{"empty From", "From: \r\n", nil, "", permerror},
		{"empty group", "From: undisclosed-recipients:;\r\n", nil, "", permerror},
		{"no From field", "", nil, "", permerror}, // a null from, and no warning

		// Bytes that readers treat differently.
		{"NUL inside the address", "From: x@bank.example\x00@evil.example\r\n", nil, "", permerror},
		{"bare CR before a second From", "From: x@bank.example\rFrom: y@evil.example\r\n", nil, "x@bank.example", permerror},

		// Sender differing from From (A8): DMARC is about From only.
		{"Sender is the signer", "Sender: y@evil.example\r\nFrom: x@bank.example\r\n", nil, "x@bank.example", fail},

		// A null MAIL FROM with a forged HELO (A9): SPF checks the HELO
		// name, which must then align with From.
		{"null MAIL FROM, attacker HELO", "From: x@bank.example\r\n",
			&message.Envelope{ClientIP: "192.0.2.66", HELO: "mx.evil.example"}, "x@bank.example", fail},
		{"null MAIL FROM, HELO claims bank", "From: x@bank.example\r\n",
			&message.Envelope{ClientIP: "192.0.2.66", HELO: "bank.example"}, "x@bank.example", fail},
		{"null MAIL FROM, HELO with bank before a parenthesis", "From: x@bank.example\r\n",
			&message.Envelope{ClientIP: "192.0.2.66", HELO: "bank.example(.evil.example"}, "x@bank.example", fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = attacker
			}
			raw := signAs(t, evilKey, "evil.example", tt.header+"To: v@victim.example\r\nSubject: invoice\r\n\r\nPay now.\r\n")
			m, _ := parse(t, raw, Options{Auth: checker, Envelope: env})
			if len(m.Auth.DKIM) != 1 || m.Auth.DKIM[0].Result != pass || m.Auth.DKIM[0].Domain != "evil.example" {
				t.Fatalf("the attacker's signature should verify: %+v", m.Auth.DKIM)
			}
			got := ""
			if m.From != nil {
				got = m.From.Address
			}
			if got != tt.from || m.Auth.DMARC.Result != tt.dmarc {
				t.Fatalf("from.address %q, dmarc %+v; want %q, %s (warnings %q)", got, m.Auth.DMARC, tt.from, tt.dmarc, m.Warnings)
			}
			checkFromInvariant(t, m)
			if tt.dmarc == permerror && tt.header != "" && !containsWarning(m.Warnings, "DMARC is permerror") {
				t.Fatalf("permerror without a warning: %q", m.Warnings)
			}
			if !strings.Contains(m.Auth.AuthenticationResults, "dmarc="+tt.dmarc) {
				t.Fatalf("Authentication-Results %q disagrees with %s", m.Auth.AuthenticationResults, tt.dmarc)
			}
		})
	}
}

func containsWarning(warns []string, s string) bool {
	for _, w := range warns {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

// FuzzFrom checks the invariant a receiver relies on, for any header: from
// .address, if set, parses back as exactly one addr-spec and its domain is
// the DMARC From domain; a DMARC pass (possible here: SPF passes for
// evil.example) is only ever for evil.example or a subdomain.
func FuzzFrom(f *testing.F) {
	for _, s := range []string{
		"From: y@evil.example\r\n", "From: x@bank.example\r\nFrom: y@evil.example\r\n", "From: x@bank.example, y@evil.example\r\n",
		"From: x@bank.example <y@evil.example>\r\n", "From: =?utf-8?b?eEBiYW5rLmV4YW1wbGUsIA==?=y@evil.example\r\n",
		"From: x@bank.example (y@evil.example)\r\n", "From: \"x@bank.example\"@evil.example\r\n", "From: <@bank.example:y@evil.example>\r\n",
		"From: \r\n", "From: g: y@evil.example;\r\n", "From: x@bank.example\\, y@evil.example\r\n", "Sender: y@evil.example\r\nFrom: x@bank.example\r\n",
		"From: \"a\\\"b\" <\"q\\\\\"@evil.example>\r\n", "From: j\xf6rg@b\xfccher.example\r\n", "From: x@[192.0.2.1]\r\n", "From: Y@EVIL.example.\r\n",
		"From: x@sub.evil.example\r\n", "From: <x@bank.example\r\n",
	} {
		f.Add(s)
	}
	dns := txtServer(f, map[string]string{
		"evil.example.":        "v=spf1 ip4:192.0.2.66 -all",
		"_dmarc.evil.example.": "v=DMARC1; p=reject",
	})
	checker, err := mailauth.New(mailauth.Config{Resolver: dns, Timeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	env := &message.Envelope{ClientIP: "192.0.2.66", MailFrom: "y@evil.example", HELO: "mx.evil.example"}
	f.Fuzz(func(t *testing.T, header string) {
		m, err := Parse(t.Context(), strings.NewReader(header+"To: v@victim.example\r\n\r\nbody\r\n"), Options{Auth: checker, Envelope: env})
		if err != nil {
			t.Fatal(err)
		}
		checkFromInvariant(t, m)
		if d := m.Auth.DMARC; d.Result == mailauth.Pass && d.Domain != "evil.example" && !strings.HasSuffix(d.Domain, ".evil.example") {
			t.Fatalf("DMARC passed for %q", d.Domain)
		}
	})
}
