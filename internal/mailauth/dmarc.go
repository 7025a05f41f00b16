package mailauth

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/letterboxmail/letterbox/message"
	"golang.org/x/net/publicsuffix"
)

// From is the message's RFC5322.From identity, which DMARC evaluates (RFC
// 7489 §3.1, §6.6.1). The caller reads it from the header it parses
// (package parser, which reports the same mailbox as the parsed message's
// from), so that the verdict and what a receiver shows come from one
// reading of the field.
type From struct {
	// Domain is the domain of the From mailbox, lower case, with A-labels
	// (§6.6.1); empty when the header names no mailbox.
	Domain string
	// Problem, when set, says why the header does not name exactly one
	// mailbox: no From field or several, no mailbox or several, or one
	// that could only be read leniently. DMARC is then permerror with
	// Problem as the reason: it never passes for an ambiguous From.
	Problem string
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

func (c *Checker) dmarc(ctx context.Context, f From, env *message.Envelope, spfRes message.SPFResult, dkims []message.DKIMResult) *message.DMARCResult {
	out := &message.DMARCResult{Domain: f.Domain}
	switch {
	case f.Problem != "":
		out.Result, out.Reason = PermError, f.Problem
		return out
	case f.Domain == "":
		out.Result, out.Reason = PermError, "no From domain"
		return out
	}
	from := f.Domain
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
