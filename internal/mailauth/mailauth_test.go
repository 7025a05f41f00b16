package mailauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

const baseMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <q1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nthe numbers are attached.\r\n"

type env struct {
	ip, from, helo string
}

func (e *env) envelope() *message.Envelope {
	if e == nil {
		return nil
	}
	return &message.Envelope{ClientIP: e.ip, MailFrom: e.from, HELO: e.helo}
}

func newChecker(t testing.TB, addr string, timeout time.Duration) *Checker {
	t.Helper()
	c, err := New(Config{Resolver: addr, Timeout: timeout, AuthServID: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fromOf reads the From identity of the well-formed messages these tests
// build, standing in for package parser (which gives it to Check in
// production, and whose tests cover hostile From fields).
func fromOf(msg []byte) func() From {
	return func() From {
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return From{Problem: err.Error()}
		}
		if len(m.Header["From"]) != 1 {
			return From{Problem: "no From field"}
		}
		a, err := mail.ParseAddress(m.Header.Get("From"))
		if err != nil {
			return From{Problem: err.Error()}
		}
		return From{Domain: strings.ToLower(a.Address[strings.LastIndexByte(a.Address, '@')+1:])}
	}
}

func check(t testing.TB, c *Checker, e *env, msg []byte) *message.Auth {
	t.Helper()
	a, err := c.Check(context.Background(), e.envelope(), bytes.NewReader(msg), fromOf(msg))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func dkimSummary(a *message.Auth) string {
	var parts []string
	for _, d := range a.DKIM {
		parts = append(parts, d.Result+":"+d.Domain+"/"+d.Selector)
	}
	return strings.Join(parts, ",")
}

func TestCheck(t *testing.T) {
	rsaK := newRSAKey(t)
	edK := newEd25519Key(t)
	z := testenv.StartDNS(t)
	z.TXT("sel._domainkey.example.org", rsaK.record)
	z.TXT("ed._domainkey.example.org", edK.record)
	z.TXT("sel._domainkey.mail.example.org", rsaK.record)
	z.TXT("sel._domainkey.esp.example", rsaK.record)
	z.TXT("bad._domainkey.example.org", "v=DKIM1; k=rsa; p=")
	z.ServFail("down._domainkey.example.org")
	z.TXT("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("soft.example", "v=spf1 ~all")
	z.TXT("bounces.example.org", "v=spf1 ip4:192.0.2.10 -all")
	z.TXT("esp.example", "v=spf1 ip4:198.51.100.7 -all")
	z.ServFail("broken.example")
	z.TXT("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantine")
	z.TXT("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
	z.TXT("_dmarc.invalid.example", "v=DMARC1; p=sometimes")
	z.ServFail("_dmarc.tempfail.example")
	z.TXT("strict.example", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("sel._domainkey.strict.example", rsaK.record)
	z.TXT("sel._domainkey.sub.strict.example", rsaK.record)
	c := newChecker(t, z.Addr, 2*time.Second)

	withFrom := func(from string) []byte {
		return []byte(strings.Replace(baseMsg, "alice@example.org", from, 1))
	}
	signed := dkimSign(t, []byte(baseMsg), rsaK, "example.org", "sel")
	tests := []struct {
		name      string
		env       *env
		msg       []byte
		spf       string
		dkim      string
		dmarc     string
		policy    string
		dmarcHow  string // "spf", "dkim", "both" or ""
		arcResult string
	}{
		{"rsa signature, spf pass", &env{"192.0.2.1", "alice@example.org", "mx.example.org"}, signed,
			"pass", "pass:example.org/sel", "pass", "reject", "both", "none"},
		{"ed25519 signature, no envelope", nil, dkimSign(t, []byte(baseMsg), edK, "example.org", "ed"),
			"none", "pass:example.org/ed", "pass", "reject", "dkim", "none"},
		{"two signatures, one bad key", nil, dkimSign(t, dkimSign(t, []byte(baseMsg), rsaK, "example.org", "sel"), rsaK, "example.org", "bad"),
			"none", "permerror:example.org/bad,pass:example.org/sel", "pass", "reject", "dkim", "none"},
		{"body changed after signing", nil, bytes.Replace(signed, []byte("numbers"), []byte("NUMBERS"), 1),
			"none", "fail:example.org/sel", "fail", "reject", "", "none"},
		{"header changed after signing", nil, bytes.Replace(signed, []byte("Quarterly"), []byte("Annual"), 1),
			"none", "fail:example.org/sel", "fail", "reject", "", "none"},
		{"key lookup servfail", nil, dkimSign(t, []byte(baseMsg), rsaK, "example.org", "down"),
			"none", "temperror:example.org/down", "temperror", "reject", "", "none"},
		{"spf fail, unsigned", &env{"203.0.113.9", "alice@example.org", "mx.example.org"}, []byte(baseMsg),
			"fail", "", "fail", "reject", "", "none"},
		{"spf softfail", &env{"203.0.113.9", "x@soft.example", "mx.soft.example"}, []byte(baseMsg),
			"softfail", "", "fail", "reject", "", "none"},
		{"spf relaxed alignment via subdomain bounce address", &env{"192.0.2.10", "b@bounces.example.org", "mx"}, []byte(baseMsg),
			"pass", "", "pass", "reject", "spf", "none"},
		{"spf pass but not aligned (ESP)", &env{"198.51.100.7", "b@esp.example", "mx"}, []byte(baseMsg),
			"pass", "", "fail", "reject", "", "none"},
		{"aligned ESP signature", &env{"198.51.100.7", "b@esp.example", "mx"}, dkimSign(t, []byte(baseMsg), rsaK, "mail.example.org", "sel"),
			"pass", "pass:mail.example.org/sel", "pass", "reject", "dkim", "none"},
		{"unaligned ESP signature", nil, dkimSign(t, []byte(baseMsg), rsaK, "esp.example", "sel"),
			"none", "pass:esp.example/sel", "fail", "reject", "", "none"},
		{"subdomain uses sp from organizational record", nil, dkimSign(t, withFrom("alice@news.example.org"), rsaK, "example.org", "sel"),
			"none", "pass:example.org/sel", "pass", "quarantine", "dkim", "none"},
		{"strict dkim alignment rejects subdomain signer", nil, dkimSign(t, withFrom("a@strict.example"), rsaK, "sub.strict.example", "sel"),
			"none", "pass:sub.strict.example/sel", "fail", "reject", "", "none"},
		{"strict alignment, exact domain", &env{"192.0.2.5", "a@strict.example", "mx"}, dkimSign(t, withFrom("a@strict.example"), rsaK, "strict.example", "sel"),
			"pass", "pass:strict.example/sel", "pass", "reject", "both", "none"},
		{"no dmarc record", nil, withFrom("a@nodmarc.example"),
			"none", "", "none", "", "", "none"},
		{"invalid dmarc record", nil, withFrom("a@invalid.example"),
			"none", "", "permerror", "", "", "none"},
		{"dmarc lookup servfail", nil, withFrom("a@tempfail.example"),
			"none", "", "temperror", "", "", "none"},
		{"spf servfail", &env{"192.0.2.1", "a@broken.example", "mx"}, []byte(baseMsg),
			"temperror", "", "temperror", "reject", "", "none"},
		{"no From field", nil, []byte(strings.Replace(baseMsg, "From: Alice <alice@example.org>\r\n", "", 1)),
			"none", "", "permerror", "", "", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := check(t, c, tt.env, tt.msg)
			if a.SPF.Result != tt.spf {
				t.Errorf("spf = %+v, want %s", a.SPF, tt.spf)
			}
			if got := dkimSummary(a); got != tt.dkim {
				t.Errorf("dkim = %s, want %s (%+v)", got, tt.dkim, a.DKIM)
			}
			if a.DMARC.Result != tt.dmarc || a.DMARC.Policy != tt.policy {
				t.Errorf("dmarc = %+v, want %s policy %q", a.DMARC, tt.dmarc, tt.policy)
			}
			how := ""
			switch {
			case a.DMARC.SPFAligned && a.DMARC.DKIMAligned:
				how = "both"
			case a.DMARC.SPFAligned:
				how = "spf"
			case a.DMARC.DKIMAligned:
				how = "dkim"
			}
			if how != tt.dmarcHow {
				t.Errorf("dmarc alignment = %q, want %q", how, tt.dmarcHow)
			}
			if a.ARC.Result != tt.arcResult {
				t.Errorf("arc = %+v, want %s", a.ARC, tt.arcResult)
			}
			// The Authentication-Results value parses and agrees.
			id, results, err := authres.Parse(a.AuthenticationResults)
			if err != nil || id != "mx.test" {
				t.Fatalf("authres.Parse(%q) = %q, %v", a.AuthenticationResults, id, err)
			}
			for _, r := range results {
				switch r := r.(type) {
				case *authres.SPFResult:
					if string(r.Value) != tt.spf {
						t.Errorf("Authentication-Results spf=%s, want %s", r.Value, tt.spf)
					}
				case *authres.DMARCResult:
					if string(r.Value) != tt.dmarc {
						t.Errorf("Authentication-Results dmarc=%s, want %s", r.Value, tt.dmarc)
					}
				}
			}
		})
	}
}

func TestDNSTimeoutIsTempError(t *testing.T) {
	k := newRSAKey(t)
	z := testenv.StartDNS(t)
	z.Drop("slow._domainkey.example.org")
	z.Drop("_dmarc.example.org")
	z.Drop("example.org")
	c := newChecker(t, z.Addr, 150*time.Millisecond)
	msg := dkimSign(t, []byte(baseMsg), k, "example.org", "slow")
	start := time.Now()
	a := check(t, c, &env{"192.0.2.1", "alice@example.org", "mx"}, msg)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Check took %v despite a 150ms timeout", d)
	}
	if a.SPF.Result != TempError || dkimSummary(a) != "temperror:example.org/slow" || a.DMARC.Result != TempError {
		t.Fatalf("got spf=%+v dkim=%s dmarc=%+v, want temperror everywhere", a.SPF, dkimSummary(a), a.DMARC)
	}
}

func TestUnreachableResolver(t *testing.T) {
	// A port nobody listens on: every query fails at once or times out.
	c := newChecker(t, "127.0.0.1:1", 200*time.Millisecond)
	k := newRSAKey(t)
	a := check(t, c, &env{"192.0.2.1", "alice@example.org", "mx"}, dkimSign(t, []byte(baseMsg), k, "example.org", "sel"))
	if a.SPF.Result != TempError || a.DKIM[0].Result != TempError || a.DMARC.Result != TempError {
		t.Fatalf("got spf=%s dkim=%s dmarc=%s, want temperror", a.SPF.Result, a.DKIM[0].Result, a.DMARC.Result)
	}
}

func TestNewInvalidResolver(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", ":53", "host:"} {
		_, err := New(Config{Resolver: addr})
		want := fmt.Sprintf("mailauth: resolver %q: want host:port", addr)
		if err == nil || err.Error() != want {
			t.Errorf("New(%q) error = %v, want %q", addr, err, want)
		}
		if fault.IsTemporary(err) {
			t.Errorf("New(%q) error is temporary, want permanent", addr)
		}
	}
}

type failingReader struct{ after int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.after)
	copy(p, strings.Repeat("X-Filler: y\r\n", 1+n/13)[:n])
	f.after -= n
	return n, nil
}

func TestCheckReadError(t *testing.T) {
	c := newChecker(t, testenv.StartDNS(t).Addr, time.Second)
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"in the header", &failingReader{after: 100}},
		{"in the body", io.MultiReader(strings.NewReader(baseMsg), &failingReader{after: 0})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Check(context.Background(), nil, tt.r, func() From {
				t.Error("from called after a read error")
				return From{}
			})
			if err == nil || err.Error() != "mailauth: read message: disk on fire" {
				t.Fatalf("Check error = %v, want mailauth: read message: disk on fire", err)
			}
			if !fault.IsTemporary(err) {
				t.Fatal("read error should be temporary")
			}
		})
	}
}

func TestAuthenticationResultsFormat(t *testing.T) {
	k := newRSAKey(t)
	z := testenv.StartDNS(t)
	z.TXT("sel._domainkey.example.org", k.record)
	z.TXT("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("_dmarc.example.org", "v=DMARC1; p=none")
	c := newChecker(t, z.Addr, time.Second)
	a := check(t, c, &env{"192.0.2.1", "alice@example.org", "mx.example.org"}, dkimSign(t, []byte(baseMsg), k, "example.org", "sel"))
	want := "mx.test; spf=pass smtp.mailfrom=alice@example.org smtp.helo=mx.example.org; " +
		"dkim=pass header.d=example.org header.s=sel; dmarc=pass header.from=example.org policy.dmarc=none; arc=none"
	if a.AuthenticationResults != want {
		t.Fatalf("Authentication-Results =\n%s\nwant\n%s", a.AuthenticationResults, want)
	}
}

func TestCleanReason(t *testing.T) {
	in := "lookup _dmarc.example.org. on 10.255.255.53:53: read udp 127.0.0.1:1->127.0.0.1:1: read: connection refused"
	want := "lookup _dmarc.example.org.: read udp 127.0.0.1:1->127.0.0.1:1: read: connection refused"
	if got := cleanReason(in); got != want {
		t.Fatalf("cleanReason = %q, want %q", got, want)
	}
	if got := cleanReason("lookup a.example on [::1]:53: no such host"); got != "lookup a.example: no such host" {
		t.Fatalf("cleanReason = %q", got)
	}
}

func TestHugeHeaderLine(t *testing.T) {
	c := newChecker(t, testenv.StartDNS(t).Addr, time.Second)
	msg := "From: a@example.org\r\nX-Huge: " + strings.Repeat("x", 3<<20) + "\r\n\r\nbody\r\n"
	a, err := c.Check(context.Background(), nil, strings.NewReader(msg), fromOf([]byte(msg)))
	if err != nil || a.DMARC.Domain != "example.org" {
		t.Fatalf("Check = %+v, %v", a, err)
	}
}

// eofReader records that it was read to EOF.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

// TestDMARCFromIdentity: DMARC evaluates the From identity the caller
// read, asked for once the message is read; a Problem is permerror even
// when a signature aligned with its domain passes.
func TestDMARCFromIdentity(t *testing.T) {
	k := newRSAKey(t)
	z := testenv.StartDNS(t)
	z.TXT("sel._domainkey.example.org", k.record)
	z.TXT("_dmarc.example.org", "v=DMARC1; p=reject")
	c := newChecker(t, z.Addr, time.Second)
	signed := dkimSign(t, []byte(baseMsg), k, "example.org", "sel")
	tests := []struct {
		name   string
		from   *From
		result string // "" for no DMARC verdict
		domain string
		reason string
		ar     string // the dmarc part of Authentication-Results
	}{
		{"one mailbox", &From{Domain: "example.org"}, Pass, "example.org", "",
			"; dmarc=pass header.from=example.org policy.dmarc=reject"},
		{"a problem wins over an aligned pass", &From{Domain: "example.org", Problem: "From lists 2 mailboxes"}, PermError, "example.org", "From lists 2 mailboxes",
			`; dmarc=permerror reason="From lists 2 mailboxes" header.from=example.org`},
		{"no domain", &From{}, PermError, "", "no From domain", `; dmarc=permerror reason="no From domain"`},
		{"not asked", nil, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &eofReader{r: bytes.NewReader(signed)}
			var from func() From
			if tt.from != nil {
				from = func() From {
					if !r.eof {
						t.Error("from asked for before the message was read")
					}
					return *tt.from
				}
			}
			a, err := c.Check(context.Background(), nil, r, from)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.DKIM) != 1 || a.DKIM[0].Result != Pass {
				t.Fatalf("dkim = %+v", a.DKIM)
			}
			if tt.result == "" {
				if a.DMARC != nil || strings.Contains(a.AuthenticationResults, "dmarc=") {
					t.Fatalf("dmarc = %+v, Authentication-Results %q; want none", a.DMARC, a.AuthenticationResults)
				}
				return
			}
			if d := a.DMARC; d.Result != tt.result || d.Domain != tt.domain || d.Reason != tt.reason {
				t.Fatalf("dmarc = %+v, want %s %q %q", d, tt.result, tt.domain, tt.reason)
			}
			if !strings.Contains(a.AuthenticationResults, tt.ar+"; arc=") {
				t.Fatalf("Authentication-Results = %q, want %q", a.AuthenticationResults, tt.ar)
			}
		})
	}
}
