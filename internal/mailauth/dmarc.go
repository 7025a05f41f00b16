package mailauth

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/letterboxmail/letterbox/message"
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

// DMARC follows RFC 9989 (DMARCbis, draft-ietf-dmarc-dmarcbis-41, whose
// section numbers these comments cite) where it differs from RFC 7489:
// the organizational domain comes from the DNS Tree Walk (§4.10), not a
// public suffix list; psd= and np= are honoured; pct=, rf= and ri= are
// ignored (Appendix C.5.2 removes them). Where the two agree (record at
// the From domain first, p/sp, adkim/aspf, a record with an invalid p=
// and a usable rua= acting as p=none) nothing changed.

// dmarcMaxQueries bounds one tree walk (RFC 9989 §4.10).
const dmarcMaxQueries = 8

// dmarcRecord is a DMARC Policy Record (RFC 9989 §4.7).
type dmarcRecord struct {
	p, sp, np   string // "" when absent
	strictDKIM  bool
	strictSPF   bool
	psd         byte // 'y', 'n' or 0
	invalidP    bool // p, sp or np present with a value not allowed
	hasValidRUA bool
	invalidWhy  string
}

// parseDMARC parses a TXT record; ok is false when it is not a DMARC
// record at all (no leading v=DMARC1), which the walk discards (§4.10
// step 2). Unknown tags, and the removed pct, rf and ri, are ignored
// (§4.7, Appendix C.5.2).
func parseDMARC(txt string) (rec *dmarcRecord, ok bool) {
	parts := strings.Split(txt, ";")
	if k, v, _ := strings.Cut(parts[0], "="); strings.TrimSpace(k) != "v" || strings.TrimSpace(v) != "DMARC1" {
		return nil, false
	}
	rec = &dmarcRecord{}
	policy := func(tag, v string) string {
		switch v {
		case "none", "quarantine", "reject":
			return v
		}
		rec.invalidP = true
		rec.invalidWhy = fmt.Sprintf("invalid %s=%q", tag, v)
		return ""
	}
	for _, part := range parts[1:] {
		k, v, _ := strings.Cut(part, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "p":
			rec.p = policy(k, strings.ToLower(v))
		case "sp":
			rec.sp = policy(k, strings.ToLower(v))
		case "np":
			rec.np = policy(k, strings.ToLower(v))
		case "adkim":
			// An unknown value keeps the default, relaxed.
			rec.strictDKIM = strings.EqualFold(v, "s")
		case "aspf":
			rec.strictSPF = strings.EqualFold(v, "s")
		case "psd":
			if l := strings.ToLower(v); l == "y" || l == "n" {
				rec.psd = l[0]
			}
		case "rua":
			for _, u := range strings.Split(v, ",") {
				if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.Scheme != "" && pu.Opaque+pu.Host+pu.Path != "" {
					rec.hasValidRUA = true
				}
			}
		}
	}
	if rec.invalidP && rec.hasValidRUA {
		// §4.10.1: act as if the record said p=none.
		rec.p, rec.sp, rec.np, rec.invalidP = "none", "", "", false
	}
	if rec.p == "" && !rec.invalidP {
		rec.p = "none" // §4.7, p: absent means p=none
	}
	return rec, true
}

// dmarcFound is a record found at a domain.
type dmarcFound struct {
	domain string
	rec    *dmarcRecord
}

// dmarcWalker answers DMARC record queries for one message, each name
// asked once.
type dmarcWalker struct {
	c     *Checker
	ctx   context.Context
	cache map[string]dmarcLookup
}

type dmarcLookup struct {
	rec *dmarcRecord
	err error // a DNS error other than "no such record"
}

func (c *Checker) newDMARCWalker(ctx context.Context) *dmarcWalker {
	return &dmarcWalker{c: c, ctx: ctx, cache: map[string]dmarcLookup{}}
}

// record returns the single DMARC record at domain, nil when there is none
// or several (§4.10 step 2).
func (w *dmarcWalker) record(domain string) (*dmarcRecord, error) {
	if l, ok := w.cache[domain]; ok {
		return l.rec, l.err
	}
	var l dmarcLookup
	txts, err := w.c.res.LookupTXT(w.ctx, "_dmarc."+domain)
	switch dnsKind(err) {
	case "":
		var found []*dmarcRecord
		for _, t := range txts {
			if r, ok := parseDMARC(t); ok {
				found = append(found, r)
			}
		}
		if len(found) == 1 {
			l.rec = found[0]
		}
	case "notfound":
	default:
		l.err = err
	}
	w.cache[domain] = l
	return l.rec, l.err
}

// walk is the DNS Tree Walk (§4.10) from domain: the records found, from
// the longest name to the shortest, up to the first with psd=y or psd=n.
// It asks at most eight names: a name of more than eight labels is
// followed by its last seven. first says whether domain itself is asked.
func (w *dmarcWalker) walk(domain string, first bool) ([]dmarcFound, error) {
	labels := strings.Split(domain, ".")
	var targets []string
	if first {
		targets = append(targets, domain)
	}
	start := 1
	if len(labels) > dmarcMaxQueries {
		start = len(labels) - (dmarcMaxQueries - 1)
	}
	for i := start; i < len(labels); i++ {
		targets = append(targets, strings.Join(labels[i:], "."))
	}
	var found []dmarcFound
	for _, t := range targets {
		rec, err := w.record(t)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		found = append(found, dmarcFound{t, rec})
		if rec.psd != 0 {
			break
		}
	}
	return found, nil
}

// selectOrg picks the organizational domain of start from the records its
// walk found (§4.10.2): a psd=n record's domain; else the name one label
// below a psd=y record other than start's; else the shortest name with a
// record; else start itself.
func selectOrg(start string, found []dmarcFound) string {
	for _, f := range found {
		if f.rec.psd == 'n' {
			return f.domain
		}
		if f.rec.psd == 'y' && f.domain != start {
			labels := strings.Split(start, ".")
			n := len(strings.Split(f.domain, "."))
			return strings.Join(labels[len(labels)-n-1:], ".")
		}
	}
	if len(found) > 0 {
		return found[len(found)-1].domain
	}
	return start
}

// orgDomain returns the organizational domain of d by the tree walk
// (§4.10.2).
func (w *dmarcWalker) orgDomain(d string) (string, error) {
	d = normDomain(d)
	found, err := w.walk(d, true)
	if err != nil {
		return "", err
	}
	return selectOrg(d, found), nil
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(d), ".")
}

// aligned reports identifier alignment (§4.4): strict means the same
// domain, relaxed the same organizational domain. pol.org, the From
// domain's organizational domain, is found on first need (§4.10.2: none
// is needed when the identifier is the From domain).
func (w *dmarcWalker) aligned(id, from string, pol *dmarcPolicy, strict bool) (bool, error) {
	id, from = normDomain(id), normDomain(from)
	if id == "" || from == "" {
		return false, nil
	}
	if id == from {
		return true, nil
	}
	if strict {
		return false, nil
	}
	if pol.org == "" {
		org, err := w.orgDomain(from)
		if err != nil {
			return false, err
		}
		pol.org = org
	}
	org, err := w.orgDomain(id)
	return org == pol.org, err
}

// dmarcPolicy is the outcome of policy discovery (§4.10.1).
type dmarcPolicy struct {
	rec    *dmarcRecord
	domain string // where rec was found
	org    string // the From domain's organizational domain, "" until known
}

// lookupDMARC finds the policy record for the From domain (§4.10.1): the
// From domain's own, else its organizational domain's, else its public
// suffix domain's. rec is nil when there is none; err is a DNS error.
func (w *dmarcWalker) lookupDMARC(from string) (dmarcPolicy, error) {
	from = normDomain(from)
	own, err := w.record(from)
	if err != nil {
		return dmarcPolicy{}, err
	}
	if own != nil {
		// The organizational domain waits until alignment needs it.
		return dmarcPolicy{rec: own, domain: from}, nil
	}
	found, err := w.walk(from, false)
	if err != nil {
		return dmarcPolicy{}, err
	}
	pol := dmarcPolicy{org: selectOrg(from, found)}
	for _, f := range found {
		if f.domain == pol.org {
			pol.rec, pol.domain = f.rec, f.domain
			return pol, nil
		}
	}
	for _, f := range found {
		if f.rec.psd == 'y' {
			pol.rec, pol.domain = f.rec, f.domain
		}
	}
	return pol, nil
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
	w := c.newDMARCWalker(ctx)
	pol, err := w.lookupDMARC(from)
	switch {
	case err != nil:
		out.Result, out.Reason = TempError, describe(err)
		return out
	case pol.rec == nil:
		out.Result, out.Reason = None, "no DMARC record"
		return out
	case pol.rec.invalidP:
		out.Result, out.Reason = PermError, "DMARC record at "+pol.domain+": "+pol.rec.invalidWhy
		return out
	}
	out.Policy = c.policyFor(ctx, from, pol)
	rec := pol.rec
	alignTemp := false
	// SPF's authenticated identifier is the MAIL FROM domain, or HELO for
	// a null reverse-path; spfRes.Domain holds whichever was checked.
	if spfRes.Result == Pass && env != nil {
		ok, err := w.aligned(spfRes.Domain, from, &pol, rec.strictSPF)
		out.SPFAligned = ok
		alignTemp = alignTemp || err != nil
	}
	for _, d := range dkims {
		if d.Result == Pass && !out.DKIMAligned {
			ok, err := w.aligned(d.Domain, from, &pol, rec.strictDKIM)
			out.DKIMAligned = ok
			alignTemp = alignTemp || err != nil
		}
	}
	if out.SPFAligned || out.DKIMAligned {
		out.Result = Pass
		return out
	}
	out.Result, out.Reason = Fail, "no aligned identifier passed"
	if hasTemp(spfRes, dkims) || alignTemp {
		out.Result, out.Reason = TempError, "an identifier could not be checked"
	}
	return out
}

// policyFor is the Domain Owner Assessment Policy for from (§4.10.1): p
// for the domain's own record; for a subdomain, np when the From domain
// does not exist (§3.2.13: NXDOMAIN), else sp, else p.
func (c *Checker) policyFor(ctx context.Context, from string, pol dmarcPolicy) string {
	rec := pol.rec
	if pol.domain == normDomain(from) {
		return rec.p
	}
	if rec.np != "" {
		if _, err := c.res.LookupIP(ctx, from, true); isNXDomain(err) {
			return rec.np
		}
	}
	if rec.sp != "" {
		return rec.sp
	}
	return rec.p
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
