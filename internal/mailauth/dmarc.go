package mailauth

import (
	"context"
	"errors"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/letterboxmail/letterbox/internal/dkimcanon"
	"github.com/letterboxmail/letterbox/message"
	"golang.org/x/net/publicsuffix"
)

// fromDomain returns the domain of the RFC5322.From mailbox. DMARC needs
// exactly one (RFC 7489 §6.6.1).
func fromDomain(fields []dkimcanon.Field) (string, error) {
	var from []dkimcanon.Field
	for _, f := range fields {
		if strings.EqualFold(f.Name, "From") {
			from = append(from, f)
		}
	}
	if len(from) != 1 {
		return "", errors.New("not exactly one From field")
	}
	v := strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "").Replace(from[0].Value()))
	addrs, err := mail.ParseAddressList(v)
	if err != nil || len(addrs) != 1 {
		// Lenient: take the last "@domain" before an optional ">".
		at := strings.LastIndexByte(v, '@')
		if at < 0 {
			return "", errors.New("no domain in From")
		}
		d := v[at+1:]
		if i := strings.IndexAny(d, "> \t;,"); i >= 0 {
			d = d[:i]
		}
		if d == "" {
			return "", errors.New("no domain in From")
		}
		return strings.ToLower(d), nil
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", errors.New("no domain in From")
	}
	return strings.ToLower(addrs[0].Address[at+1:]), nil
}

// orgDomain returns the organizational domain (RFC 7489 §3.2) from the
// public suffix list.
func orgDomain(d string) string {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	if o, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return o
	}
	return d
}

// aligned reports identifier alignment (RFC 7489 §3.1): strict means the
// same domain, relaxed the same organizational domain.
func aligned(id, from string, mode dmarc.AlignmentMode) bool {
	id = strings.TrimSuffix(strings.ToLower(id), ".")
	from = strings.TrimSuffix(strings.ToLower(from), ".")
	if id == "" || from == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return id == from
	}
	return orgDomain(id) == orgDomain(from)
}

// lookupDMARC finds the policy record for domain, falling back to the
// organizational domain (RFC 7489 §6.6.3). kind is "" when found,
// "notfound", "temporary" or "invalid".
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (rec *dmarc.Record, org bool, kind string, err error) {
	candidates := []string{domain}
	if o := orgDomain(domain); o != domain {
		candidates = append(candidates, o)
	}
	for _, d := range candidates {
		var dnsErr error
		opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
			txts, err := c.res.LookupTXT(ctx, name)
			dnsErr = err
			return txts, err
		}}
		rec, err = dmarc.LookupWithOptions(d, opts)
		switch {
		case err == nil:
			return rec, d != domain, "", nil
		case errors.Is(err, dmarc.ErrNoPolicy) || dnsKind(dnsErr) == "notfound":
			continue
		case dnsErr != nil:
			return nil, false, "temporary", dnsErr
		default:
			return nil, false, "invalid", err
		}
	}
	return nil, false, "notfound", nil
}

func (c *Checker) dmarc(ctx context.Context, from string, fromErr error, env *message.Envelope, spfRes message.SPFResult, dkims []message.DKIMResult) *message.DMARCResult {
	if fromErr != nil {
		return &message.DMARCResult{Result: PermError, Reason: fromErr.Error()}
	}
	out := &message.DMARCResult{Domain: from}
	rec, org, kind, err := c.lookupDMARC(ctx, from)
	switch kind {
	case "notfound":
		out.Result, out.Reason = None, "no DMARC record"
		return out
	case "temporary":
		out.Result, out.Reason = TempError, describe(err)
		return out
	case "invalid":
		out.Result, out.Reason = PermError, describe(err)
		return out
	}
	out.Policy = string(rec.Policy)
	if org && rec.SubdomainPolicy != "" {
		out.Policy = string(rec.SubdomainPolicy)
	}
	// SPF's authenticated identifier is the MAIL FROM domain, or HELO for
	// a null reverse-path; spfRes.Domain holds whichever was checked.
	if spfRes.Result == Pass && env != nil {
		out.SPFAligned = aligned(spfRes.Domain, from, rec.SPFAlignment)
	}
	for _, d := range dkims {
		if d.Result == Pass && aligned(d.Domain, from, rec.DKIMAlignment) {
			out.DKIMAligned = true
		}
	}
	if out.SPFAligned || out.DKIMAligned {
		out.Result = Pass
		return out
	}
	out.Result, out.Reason = Fail, "no aligned identifier passed"
	if hasTemp(spfRes, dkims) {
		out.Result, out.Reason = TempError, "an identifier could not be checked"
	}
	return out
}

func hasTemp(spfRes message.SPFResult, dkims []message.DKIMResult) bool {
	if spfRes.Result == TempError {
		return true
	}
	for _, d := range dkims {
		if d.Result == TempError {
			return true
		}
	}
	return false
}
