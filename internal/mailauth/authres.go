package mailauth

import (
	"strings"

	"github.com/letterboxmail/letterbox/message"
)

// authResults formats the verdicts as an Authentication-Results header
// field value (RFC 8601 §2.2). It is not go-msgauth's authres.Format,
// which cannot give this value and quotes some values wrongly
// (docs/parsing.md, TestAuthresFormatGaps).
func (c *Checker) authResults(env *message.Envelope, a *message.Auth, from string) string {
	var b strings.Builder
	b.WriteString(c.cfg.AuthServID)
	add := func(method, result string, props ...string) {
		b.WriteString("; ")
		b.WriteString(method + "=" + result)
		if r := reasonOf(method, a); r != "" && result != Pass && result != None {
			b.WriteString(" reason=" + quoteValue(r))
		}
		for i := 0; i+1 < len(props); i += 2 {
			if props[i+1] != "" {
				b.WriteString(" " + props[i] + "=" + pvalue(props[i+1]))
			}
		}
	}
	if a.SPF != nil {
		mailFrom, helo := "", ""
		if env != nil {
			mailFrom = strings.Trim(env.MailFrom, "<>")
			helo = env.HELO
		}
		add("spf", a.SPF.Result, "smtp.mailfrom", mailFrom, "smtp.helo", helo)
	}
	if len(a.DKIM) == 0 {
		add("dkim", None)
	}
	for _, d := range a.DKIM {
		b.WriteString("; dkim=" + d.Result)
		if d.Reason != "" && d.Result != Pass {
			b.WriteString(" reason=" + quoteValue(d.Reason))
		}
		if d.Domain != "" {
			b.WriteString(" header.d=" + pvalue(d.Domain))
		}
		if d.Selector != "" {
			b.WriteString(" header.s=" + pvalue(d.Selector))
		}
	}
	if a.DMARC != nil {
		add("dmarc", a.DMARC.Result, "header.from", from, "policy.dmarc", a.DMARC.Policy)
	}
	if a.ARC != nil {
		add("arc", a.ARC.Result)
	}
	return b.String()
}

func reasonOf(method string, a *message.Auth) string {
	switch method {
	case "spf":
		return a.SPF.Reason
	case "dmarc":
		return a.DMARC.Reason
	case "arc":
		return a.ARC.Reason
	}
	return ""
}

// pvalue writes a property value (RFC 8601 §2.2): as is when it is a token
// or a mailbox/domain, quoted otherwise.
func pvalue(s string) string {
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>,;:\"[]?=`, r) {
			return quoteValue(s)
		}
	}
	return s
}

func quoteValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
