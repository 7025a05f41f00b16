package mailauth

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// TestDMARCbis checks policy discovery and alignment by the RFC 9989 DNS
// Tree Walk (§4.10) against a loopback DNS server: where the public
// suffix list and the walk disagree, the walk wins; psd= and np= are
// honoured; pct=, rf= and ri= are ignored.
func TestDMARCbis(t *testing.T) {
	z := testenv.StartDNS(t)
	// Records at two levels: the organizational domain is the shortest.
	z.TXT("_dmarc.mail.two.example", "v=DMARC1; p=reject")
	z.TXT("_dmarc.two.example", "v=DMARC1; p=none; sp=quarantine")
	// psd=n: mail.org.example is an organization of its own, not a part
	// of org.example as the public suffix list would have it.
	z.TXT("_dmarc.mail.org.example", "v=DMARC1; p=reject; sp=quarantine; psd=n")
	z.TXT("_dmarc.org.example", "v=DMARC1; p=none")
	// psd=y: a public suffix domain's record covers its registrants.
	z.TXT("_dmarc.psd", "v=DMARC1; p=reject; sp=quarantine; np=reject; psd=y")
	z.A("bank.psd", "192.0.2.1")
	z.A("sub.bank.psd", "192.0.2.1")
	// np for a subdomain that does not exist (NXDOMAIN).
	z.TXT("_dmarc.np.example", "v=DMARC1; p=none; sp=quarantine; np=reject")
	z.A("real.np.example", "192.0.2.1")
	// Removed tags are ignored, even with values RFC 7489 refused.
	z.TXT("_dmarc.pct.example", "v=DMARC1; p=reject; pct=0; rf=xml; ri=soon")
	// An invalid p= with a usable rua= acts as p=none (§4.10.1).
	z.TXT("_dmarc.rua.example", "v=DMARC1; p=sometimes; rua=mailto:d@rua.example")
	// No p= at all is p=none (§4.7).
	z.TXT("_dmarc.nop.example", "v=DMARC1; adkim=s")
	// Two records at one name are discarded and the walk goes on.
	z.TXT("_dmarc.two-records.par.example", "v=DMARC1; p=none", "v=DMARC1; p=quarantine")
	z.TXT("_dmarc.par.example", "v=DMARC1; p=reject; sp=reject")
	// A record that is not DMARC is discarded.
	z.TXT("_dmarc.notdmarc.par.example", "v=spf1 -all")
	z.ServFail("_dmarc.broken.example")
	z.TXT("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
	c := newChecker(t, z.Addr, 2*time.Second)

	tests := []struct {
		name     string
		from     string
		dkim     string // domain of a passing DKIM signature
		spf      string // domain of a passing SPF check
		result   string
		policy   string
		reason   string
		spfAlign bool
	}{
		{"org domain is the shortest name with a record", "a.mail.two.example", "two.example", "", Pass, "quarantine", "", false},
		{"record at the From domain is used as is", "mail.two.example", "a.two.example", "", Pass, "reject", "", false},
		{"psd=n stops relaxed alignment with the parent", "a.mail.org.example", "org.example", "", Fail, "quarantine", "no aligned identifier passed", false},
		{"psd=n aligns below it", "a.mail.org.example", "b.mail.org.example", "", Pass, "quarantine", "", false},
		{"psd=y: registrant aligns with its subdomain", "sub.bank.psd", "bank.psd", "", Pass, "quarantine", "", false},
		{"psd=y: two registrants do not align", "bank.psd", "evil.psd", "", Fail, "quarantine", "no aligned identifier passed", false},
		{"psd=y: np for a name that does not exist", "ghost.psd", "ghost.psd", "", Pass, "reject", "", false},
		{"np for a subdomain that does not exist", "ghost.np.example", "", "", Fail, "reject", "no aligned identifier passed", false},
		{"sp for a subdomain that exists", "real.np.example", "", "np.example", Pass, "quarantine", "", true},
		{"pct, rf and ri are ignored", "pct.example", "", "", Fail, "reject", "no aligned identifier passed", false},
		{"invalid p with rua acts as p=none", "rua.example", "rua.example", "", Pass, "none", "", false},
		{"no p is p=none", "nop.example", "nop.example", "", Pass, "none", "", false},
		{"two records at the From domain: the parent's applies", "two-records.par.example", "", "", Fail, "reject", "no aligned identifier passed", false},
		{"non-DMARC record at the From domain: the parent's applies", "notdmarc.par.example", "par.example", "", Pass, "reject", "", false},
		{"strict alignment", "strict.example", "a.strict.example", "", Fail, "reject", "no aligned identifier passed", false},
		{"no record anywhere", "nothing.example", "nothing.example", "", None, "", "no DMARC record", false},
		{"servfail during the walk", "a.broken.example", "a.broken.example", "", TempError, "", "lookup _dmarc.broken.example.: server answered SERVFAIL", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dkims []message.DKIMResult
			if tt.dkim != "" {
				dkims = append(dkims, message.DKIMResult{Result: Pass, Domain: tt.dkim, Selector: "s"})
			}
			spfRes := message.SPFResult{Result: None}
			var env *message.Envelope
			if tt.spf != "" {
				spfRes = message.SPFResult{Result: Pass, Domain: tt.spf}
				env = &message.Envelope{ClientIP: "192.0.2.1", MailFrom: "b@" + tt.spf}
			}
			got := c.dmarc(context.Background(), From{Domain: tt.from}, env, spfRes, dkims)
			if got.Result != tt.result || got.Policy != tt.policy || got.Reason != tt.reason || got.SPFAligned != tt.spfAlign {
				t.Fatalf("dmarc = %+v, want result %s policy %q reason %q spf_aligned %v", got, tt.result, tt.policy, tt.reason, tt.spfAlign)
			}
		})
	}
}

// TestDMARCTreeWalkQueries: a From domain of more than eight labels costs
// at most eight queries, the names RFC 9989 §4.10 lists for its example.
func TestDMARCTreeWalkQueries(t *testing.T) {
	z := testenv.StartDNS(t)
	c := newChecker(t, z.Addr, 2*time.Second)
	from := "a.b.c.d.e.f.g.h.i.j.mail.example.com"
	got := c.dmarc(context.Background(), From{Domain: from}, nil, message.SPFResult{Result: None}, nil)
	if got.Result != None {
		t.Fatalf("dmarc = %+v, want none", got)
	}
	var asked []string
	for _, q := range z.Queries() {
		if name, ok := strings.CutPrefix(q, "TXT "); ok && strings.HasPrefix(name, "_dmarc.") {
			asked = append(asked, strings.TrimSuffix(strings.TrimPrefix(name, "_dmarc."), "."))
		}
	}
	want := []string{"a.b.c.d.e.f.g.h.i.j.mail.example.com", "g.h.i.j.mail.example.com", "h.i.j.mail.example.com",
		"i.j.mail.example.com", "j.mail.example.com", "mail.example.com", "example.com", "com"}
	if !slices.Equal(asked, want) {
		t.Fatalf("queried\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
}

// TestDMARCNoWalkWhenAligned: with a record at the From domain and a
// signature by that domain, one query is all it takes (RFC 9989 §4.10.2:
// no organizational domain is needed).
func TestDMARCNoWalkWhenAligned(t *testing.T) {
	z := testenv.StartDNS(t)
	z.TXT("_dmarc.mail.example.org", "v=DMARC1; p=reject")
	c := newChecker(t, z.Addr, 2*time.Second)
	got := c.dmarc(context.Background(), From{Domain: "mail.example.org"}, nil, message.SPFResult{Result: None},
		[]message.DKIMResult{{Result: Pass, Domain: "mail.example.org"}})
	if got.Result != Pass || got.Policy != "reject" {
		t.Fatalf("dmarc = %+v, want pass, reject", got)
	}
	if q := z.Queries(); !slices.Equal(q, []string{"TXT _dmarc.mail.example.org."}) {
		t.Fatalf("queries %v, want the From domain's record only", q)
	}
}
