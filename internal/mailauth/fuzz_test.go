package mailauth

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// FuzzSPFRecord: no record, however malformed, makes the parser or the
// macro expander panic.
func FuzzSPFRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 a:%{ir}.%{v}.arpa/24//64 mx:%{d2r-}.example ~all redirect=_spf.%{o}",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{l1r+}._spf.%{d} ?all exp=%{h}.example",
		"v=spf1 include:%{p}.example ptr:example.org -all",
		"v=spf1 a:macro%%percent%_%-x.example +",
		"v=spf1 //", "v=spf1 a/", "v=spf1 %{", "v=spf1 a:%", "v=spf1 foo=%{z}",
	} {
		f.Add(s)
	}
	// %{p} asks DNS: an empty zone answers.
	res, err := newResolver(testenv.StartDNS(f).Addr, time.Second)
	if err != nil {
		f.Fatal(err)
	}
	s := &spfEval{ctx: context.Background(), ip: net.IPv4(192, 0, 2, 1).To4(), v4: true, sender: "a@example.org", helo: "mx.example.org", res: res}
	f.Fuzz(func(t *testing.T, rec string) {
		if len(rec) < 6 {
			return
		}
		terms, mods, err := parseSPF(rec)
		if err != nil {
			return
		}
		for _, term := range terms {
			if term.domain != nil {
				s.expand(term.domain, "example.org")
			}
		}
		if mods.exp != nil {
			s.expand(mods.exp, "example.org")
		}
		if parts, err := parseMacroString(rec, true); err == nil {
			s.expand(parts, "example.org")
		}
	})
}

// FuzzDMARCRecord: parseDMARC never panics, and a record it accepts has a
// policy unless it says why not.
func FuzzDMARCRecord(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=reject", "v=DMARC1; p=none; sp=quarantine; np=reject; psd=y",
		"v=DMARC1; p=sometimes; rua=mailto:a@example.org", "v=DMARC1", "v=DMARC1;;;=;p", "v=spf1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, ok := parseDMARC(txt)
		if ok && rec.p == "" && !rec.invalidP {
			t.Fatalf("parseDMARC(%q) = %+v: no policy and no error", txt, rec)
		}
	})
}
