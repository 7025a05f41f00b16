package mailauth

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/message"
)

// This file is an SPF evaluator written against RFC 7208, measured by the
// openspf conformance suite (spf_suite_test.go). It replaced
// blitiri.com.ar/go/spf, which accepts records with syntax errors that
// RFC 7208 §4.6 makes a permerror and reports a REFUSED answer as one.

// SPF limits (RFC 7208 §4.6.4).
const (
	spfMaxLookups = 10 // terms that query DNS
	spfMaxVoid    = 2  // lookups that find nothing
	spfMaxMX      = 10 // MX records of one mx mechanism
	spfMaxPTR     = 10 // PTR names of one ptr mechanism or %{p}
	spfMaxDomain  = 253
)

// checkSPF checks the MAIL FROM identity (or HELO's for a null
// reverse-path, RFC 7208 §2.4) and the HELO identity (§2.3).
func (c *Checker) checkSPF(ctx context.Context, env *message.Envelope) (mailFrom, helo message.SPFResult) {
	ip := net.ParseIP(env.ClientIP)
	if ip == nil {
		r := message.SPFResult{Result: PermError, Reason: "invalid client IP " + env.ClientIP}
		return r, r
	}
	heloName := strings.TrimSuffix(env.HELO, ".")
	sender := strings.Trim(strings.TrimSpace(env.MailFrom), "<>")
	if sender == "" {
		helo = c.spfIdentity(ctx, ip, heloName, "postmaster@"+heloName, heloName)
		return helo, helo
	}
	// The two identities are independent: check them at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		helo = c.spfIdentity(ctx, ip, heloName, "postmaster@"+heloName, heloName)
	}()
	mailFrom = c.CheckSPF(ctx, ip, sender, heloName)
	<-done
	return mailFrom, helo
}

// CheckSPF runs check_host() (RFC 7208 §4) for one identity: the client's
// ip, the sender (a MAIL FROM address, or postmaster@HELO for the null
// reverse-path, §2.4) and the HELO name the client gave (%{h}, §7.3). A
// sender without a local-part is postmaster's (§4.3). The result is one
// of the Result values; any DNS error (SERVFAIL, REFUSED, a timeout) gives
// TempError, never PermError (§2.6.6).
func (c *Checker) CheckSPF(ctx context.Context, ip net.IP, sender, helo string) message.SPFResult {
	domain := sender
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
		if at == 0 {
			sender = "postmaster" + sender
		}
	} else {
		sender = "postmaster@" + sender
	}
	return c.spfIdentity(ctx, ip, domain, sender, helo)
}

// spfIdentity runs check_host for one identity.
func (c *Checker) spfIdentity(ctx context.Context, ip net.IP, domain, sender, helo string) message.SPFResult {
	out := message.SPFResult{Domain: strings.ToLower(domain)}
	if domain == "" {
		out.Result, out.Reason = None, "no domain"
		return out
	}
	s := &spfEval{ctx: ctx, res: c.res, ip: ip, sender: sender, helo: helo, receiver: c.cfg.AuthServID}
	if v4 := ip.To4(); v4 != nil {
		s.ip, s.v4 = v4, true
	}
	r := s.checkHost(domain, 0, true)
	out.Result, out.Reason, out.Explanation = r.result, r.reason, r.explanation
	if r.result == Pass || r.result == None {
		out.Reason = "" // message.SPFResult: a reason explains other results
	}
	return out
}

// spfEval is one check_host evaluation with its shared limits.
type spfEval struct {
	ctx      context.Context
	res      *resolver
	ip       net.IP // 4 bytes for IPv4 (also an IPv4-mapped IPv6 client)
	v4       bool
	sender   string
	helo     string
	receiver string
	lookups  int
	voids    int
}

type spfResult struct {
	result, reason, explanation string
}

// spfErr ends an evaluation with temperror or permerror.
type spfErr struct{ result, reason string }

func (e *spfErr) Error() string { return e.reason }

func permErr(format string, args ...any) *spfErr {
	return &spfErr{PermError, fmt.Sprintf(format, args...)}
}

// validDomain reports whether d may be queried (RFC 7208 §4.3): labels of
// 1 to 63 characters, more than one label, not a literal.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > spfMaxDomain || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return !strings.HasPrefix(d, "[")
}

// checkHost is check_host() (RFC 7208 §4). top is false inside include
// and redirect, where exp= of the record is not ours to use (§6.2).
func (s *spfEval) checkHost(domain string, depth int, top bool) spfResult {
	if !validDomain(domain) {
		return spfResult{result: None, reason: "malformed domain " + domain}
	}
	rec, err := s.record(domain)
	if err != nil {
		return spfResult{result: err.result, reason: err.reason}
	}
	if rec == "" {
		return spfResult{result: None, reason: "no SPF record at " + domain}
	}
	terms, mod, perr := parseSPF(rec)
	if perr != nil {
		return spfResult{result: PermError, reason: domain + ": " + perr.reason}
	}
	for _, t := range terms {
		match, err := s.match(t, domain, depth)
		if err != nil {
			return spfResult{result: err.result, reason: err.reason}
		}
		if !match {
			continue
		}
		r := spfResult{result: t.qualifier, reason: "matched " + t.text}
		if r.result == Fail && top && mod.exp != nil {
			r.explanation = s.explain(mod.exp, domain)
		}
		return r
	}
	if mod.redirect != nil {
		// RFC 7208 §6.1: the result is the target's, but none is permerror.
		if err := s.countLookup(); err != nil {
			return spfResult{result: err.result, reason: err.reason}
		}
		target := s.expandDomain(mod.redirect, domain)
		if depth >= spfMaxLookups {
			return spfResult{result: PermError, reason: "too many nested records"}
		}
		r := s.checkHost(target, depth+1, top)
		if r.result == None {
			return spfResult{result: PermError, reason: "redirect to " + target + ": " + r.reason}
		}
		return r
	}
	return spfResult{result: Neutral, reason: "no mechanism matched"}
}

// record fetches the one SPF record at domain (RFC 7208 §4.5); "" when
// there is none.
func (s *spfEval) record(domain string) (string, *spfErr) {
	txts, err := s.res.LookupTXT(s.ctx, domain)
	switch dnsKind(err) {
	case "":
	case "notfound":
		return "", nil
	default:
		return "", &spfErr{TempError, describe(err)}
	}
	var found []string
	for _, t := range txts {
		if len(t) >= 6 && strings.EqualFold(t[:6], "v=spf1") && (len(t) == 6 || t[6] == ' ') {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", permErr("%d SPF records at %s", len(found), domain)
}

// spfTerm is a parsed directive (RFC 7208 §4.6.1).
type spfTerm struct {
	text      string
	qualifier string // pass, fail, softfail, neutral
	mech      string
	domain    []macroPart // nil: the current domain
	ip        *net.IPNet
	cidr4     int
	cidr6     int
}

type spfMods struct {
	redirect, exp []macroPart
}

var qualifiers = map[byte]string{'+': Pass, '-': Fail, '~': SoftFail, '?': Neutral}

// parseSPF parses a whole record before anything is evaluated: a syntax
// error anywhere is permerror (RFC 7208 §4.6).
func parseSPF(rec string) ([]spfTerm, spfMods, *spfErr) {
	var (
		terms []spfTerm
		mods  spfMods
	)
	for i := 0; i < len(rec); i++ {
		if rec[i] >= 0x7f || (rec[i] < ' ' && rec[i] != '\t') {
			return nil, mods, permErr("non-ASCII or control character in record")
		}
	}
	for _, text := range strings.Split(rec[6:], " ") {
		if text == "" {
			continue
		}
		// modifier = name "=" macro-string (§4.6.1, §6).
		if n := modName(text); n > 0 && n < len(text) && text[n] == '=' {
			name, value := strings.ToLower(text[:n]), text[n+1:]
			switch name {
			case "redirect", "exp":
				ds, err := parseDomainSpec(value, false)
				if err != nil {
					return nil, mods, err
				}
				p := &mods.redirect
				if name == "exp" {
					p = &mods.exp
				}
				if *p != nil {
					return nil, mods, permErr("%s= appears twice", name)
				}
				*p = ds
			default:
				if _, err := parseMacroString(value, false); err != nil {
					return nil, mods, err
				}
			}
			continue
		}
		t, err := parseDirective(text)
		if err != nil {
			return nil, mods, err
		}
		terms = append(terms, t)
	}
	return terms, mods, nil
}

// modName returns the length of a modifier name at the start of s.
func modName(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c|0x20 >= 'a' && c|0x20 <= 'z'
		if alpha || (i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')) {
			continue
		}
		return i
	}
	return len(s)
}

func parseDirective(text string) (spfTerm, *spfErr) {
	t := spfTerm{text: text, qualifier: Pass, cidr4: 32, cidr6: 128}
	rest := text
	if q, ok := qualifiers[rest[0]]; ok {
		t.qualifier, rest = q, rest[1:]
	}
	name := rest
	arg, hasArg := "", false
	if i := strings.IndexAny(rest, ":/"); i >= 0 {
		name = rest[:i]
		arg = rest[i:]
		hasArg = true
	}
	t.mech = strings.ToLower(name)
	var err *spfErr
	switch t.mech {
	case "all":
		if hasArg {
			return t, permErr("all takes no argument: %s", text)
		}
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return t, permErr("%s needs a domain: %s", t.mech, text)
		}
		t.domain, err = parseDomainSpec(arg[1:], false)
	case "a", "mx", "ptr":
		spec := arg
		if t.mech != "ptr" {
			spec, err = t.parseDualCIDR(arg)
			if err != nil {
				return t, err
			}
		}
		if spec != "" {
			if !strings.HasPrefix(spec, ":") {
				return t, permErr("bad argument: %s", text)
			}
			t.domain, err = parseDomainSpec(spec[1:], false)
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return t, permErr("%s needs an address: %s", t.mech, text)
		}
		t.ip, err = parseIPNet(arg[1:], t.mech == "ip4")
	default:
		return t, permErr("unknown mechanism %q", name)
	}
	return t, err
}

// parseDualCIDR takes dual-cidr-length off the end of a or mx's argument
// (RFC 7208 §5.6) and returns what is left.
func (t *spfTerm) parseDualCIDR(arg string) (string, *spfErr) {
	if i := strings.LastIndex(arg, "//"); i >= 0 && isDigits(arg[i+2:]) {
		n, err := cidrLen(arg[i+2:], 128)
		if err != nil {
			return "", err
		}
		t.cidr6, arg = n, arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 && isDigits(arg[i+1:]) {
		n, err := cidrLen(arg[i+1:], 32)
		if err != nil {
			return "", err
		}
		t.cidr4, arg = n, arg[:i]
	}
	return arg, nil
}

// cidrLen parses a prefix length: no leading zero, at most max.
func cidrLen(s string, max int) (int, *spfErr) {
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || (len(s) > 1 && s[0] == '0') || n > max {
		return 0, permErr("bad prefix length /%s", s)
	}
	return n, nil
}

func parseIPNet(s string, v4 bool) (*net.IPNet, *spfErr) {
	addr, plen := s, ""
	if i := strings.IndexByte(s, '/'); i >= 0 {
		addr, plen = s[:i], s[i+1:]
	}
	ip := net.ParseIP(addr)
	bits := 128
	if v4 {
		bits = 32
		if ip != nil {
			ip = ip.To4()
		}
		if strings.Contains(addr, ":") {
			ip = nil
		}
	} else if !strings.Contains(addr, ":") {
		ip = nil
	}
	if ip == nil {
		return nil, permErr("bad address %q", addr)
	}
	n := bits
	if plen != "" || strings.Contains(s, "/") {
		var err *spfErr
		if n, err = cidrLen(plen, bits); err != nil {
			return nil, err
		}
	}
	return &net.IPNet{IP: ip.Mask(net.CIDRMask(n, bits)), Mask: net.CIDRMask(n, bits)}, nil
}

// countLookup counts a term that queries DNS (RFC 7208 §4.6.4).
func (s *spfEval) countLookup() *spfErr {
	s.lookups++
	if s.lookups > spfMaxLookups {
		return permErr("more than %d DNS lookups", spfMaxLookups)
	}
	return nil
}

// lookupErr turns a lookup error into a result: nothing found counts as a
// void lookup (RFC 7208 §4.6.4), a DNS error is temperror (§5).
func (s *spfEval) lookupErr(err error) *spfErr {
	switch dnsKind(err) {
	case "":
		return nil
	case "notfound":
		s.voids++
		if s.voids > spfMaxVoid {
			return permErr("more than %d void lookups", spfMaxVoid)
		}
		return nil
	}
	return &spfErr{TempError, describe(err)}
}

// match evaluates one mechanism (RFC 7208 §5).
func (s *spfEval) match(t spfTerm, domain string, depth int) (bool, *spfErr) {
	switch t.mech {
	case "all":
		return true, nil
	case "ip4", "ip6":
		return (t.mech == "ip4") == s.v4 && t.ip.Contains(s.ip), nil
	}
	if err := s.countLookup(); err != nil {
		return false, err
	}
	target := domain
	if t.domain != nil {
		target = s.expandDomain(t.domain, domain)
	}
	switch t.mech {
	case "include":
		if depth >= spfMaxLookups {
			return false, permErr("too many nested records")
		}
		r := s.checkHost(target, depth+1, false)
		switch r.result {
		case Pass:
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, &spfErr{TempError, r.reason}
		}
		return false, permErr("include:%s: %s", target, r.reason)
	case "exists":
		if !validDomain(target) {
			return false, nil
		}
		ips, err := s.res.LookupIP(s.ctx, target, true)
		return len(ips) > 0, s.lookupErr(err)
	case "a":
		if !validDomain(target) {
			return false, nil
		}
		return s.hostMatches(target, t)
	case "mx":
		if !validDomain(target) {
			return false, nil
		}
		mxs, err := s.res.LookupMX(s.ctx, target)
		if e := s.lookupErr(err); e != nil {
			return false, e
		}
		if len(mxs) > spfMaxMX {
			return false, permErr("more than %d MX records at %s", spfMaxMX, target)
		}
		for _, mx := range mxs {
			if mx.Mx == "." {
				continue // null MX (RFC 7505)
			}
			ok, err := s.hostMatches(mx.Mx, t)
			if ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	case "ptr":
		if !validDomain(target) {
			return false, nil
		}
		target = strings.ToLower(strings.TrimSuffix(target, "."))
		names, err := s.validatedNames()
		if err != nil {
			return false, err
		}
		for _, n := range names {
			if n == target || strings.HasSuffix(n, "."+target) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, permErr("unknown mechanism %q", t.mech)
}

// hostMatches reports whether an address of host is in the client's
// network with the term's prefix lengths.
func (s *spfEval) hostMatches(host string, t spfTerm) (bool, *spfErr) {
	ips, err := s.res.LookupIP(s.ctx, host, s.v4)
	if e := s.lookupErr(err); e != nil {
		return false, e
	}
	bits, n := 128, t.cidr6
	if s.v4 {
		bits, n = 32, t.cidr4
	}
	mask := net.CIDRMask(n, bits)
	for _, ip := range ips {
		if s.v4 {
			ip = ip.To4()
		}
		if ip != nil && ip.Mask(mask).Equal(s.ip.Mask(mask)) {
			return true, nil
		}
	}
	return false, nil
}

// validatedNames are the client's PTR names whose addresses include it
// (RFC 7208 §5.5), lower case. Lookup failures only make the list shorter.
func (s *spfEval) validatedNames() ([]string, *spfErr) {
	names, err := s.res.LookupPTR(s.ctx, s.ip)
	if dnsKind(err) == "notfound" {
		if e := s.lookupErr(err); e != nil {
			return nil, e
		}
	}
	if len(names) > spfMaxPTR {
		names = names[:spfMaxPTR]
	}
	var out []string
	for _, n := range names {
		ips, _ := s.res.LookupIP(s.ctx, n, s.v4)
		for _, ip := range ips {
			if s.v4 {
				ip = ip.To4()
			}
			if ip != nil && ip.Equal(s.ip) {
				out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
				break
			}
		}
	}
	return out, nil
}

// explain returns the exp= text (RFC 7208 §6.2), "" when it cannot be had.
func (s *spfEval) explain(spec []macroPart, domain string) string {
	target := s.expandDomain(spec, domain)
	if !validDomain(target) {
		return ""
	}
	txts, lerr := s.res.LookupTXT(s.ctx, target)
	if lerr != nil || len(txts) != 1 {
		return ""
	}
	parts, err := parseMacroString(txts[0], true)
	if err != nil {
		return ""
	}
	text := s.expand(parts, domain)
	for i := 0; i < len(text); i++ {
		if text[i] < ' ' || text[i] >= 0x7f {
			return ""
		}
	}
	return text
}

// macroPart is a literal or a macro-expand (RFC 7208 §7.1).
type macroPart struct {
	literal string
	letter  byte // 0 for a literal
	digits  int  // 0: all parts
	reverse bool
	delims  string
}

// parseMacroString parses a macro-string; exp allows the c, r and t
// macros, which only explanations may use (§7.2).
func parseMacroString(s string, exp bool) ([]macroPart, *spfErr) {
	var out []macroPart
	lit := func(l string) {
		if n := len(out); n > 0 && out[n-1].letter == 0 {
			out[n-1].literal += l
			return
		}
		out = append(out, macroPart{literal: l})
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if (c < 0x21 || c > 0x7e) && !(exp && c == ' ') {
				return nil, permErr("bad character %q in %q", c, s)
			}
			lit(string(c))
			continue
		}
		if i+1 == len(s) {
			return nil, permErr("%% at the end of %q", s)
		}
		i++
		switch s[i] {
		case '%':
			lit("%")
		case '_':
			lit(" ")
		case '-':
			lit("%20")
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, permErr("unterminated macro in %q", s)
			}
			m, err := parseMacro(s[i+1:i+end], exp)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			i += end
		default:
			return nil, permErr("bad macro %%%c in %q", s[i], s)
		}
	}
	return out, nil
}

func parseMacro(body string, exp bool) (macroPart, *spfErr) {
	m := macroPart{}
	if body == "" {
		return m, permErr("empty macro")
	}
	m.letter = body[0]
	switch m.letter | 0x20 {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !exp {
			return m, permErr("macro %%{%c} outside exp=", m.letter)
		}
	default:
		return m, permErr("unknown macro letter %q", m.letter)
	}
	rest := body[1:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j > 0 {
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n == 0 || n > 128 {
			return m, permErr("bad macro transformer %q", rest[:j])
		}
		m.digits = n
	}
	rest = rest[j:]
	if rest != "" && rest[0]|0x20 == 'r' {
		m.reverse, rest = true, rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return m, permErr("bad macro delimiter %q", rest[i])
		}
	}
	m.delims = rest
	return m, nil
}

// parseDomainSpec parses a domain-spec: a macro-string ending in a macro
// or in "." toplabel [ "." ] (RFC 7208 §7.1).
func parseDomainSpec(s string, exp bool) ([]macroPart, *spfErr) {
	parts, err := parseMacroString(s, exp)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, permErr("empty domain")
	}
	last := parts[len(parts)-1]
	if last.letter != 0 || strings.HasSuffix(s, "%%") || strings.HasSuffix(s, "%_") || strings.HasSuffix(s, "%-") {
		return parts, nil
	}
	d := strings.TrimSuffix(last.literal, ".")
	dot := strings.LastIndexByte(d, '.')
	if dot < 0 || !isTopLabel(d[dot+1:]) {
		return nil, permErr("bad domain %q", s)
	}
	return parts, nil
}

// isTopLabel: alphanumerics and inner hyphens, not all digits.
func isTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	alpha := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c|0x20 >= 'a' && c|0x20 <= 'z':
			alpha = true
		case c >= '0' && c <= '9':
		case c == '-':
			alpha = true
		default:
			return false
		}
	}
	return alpha
}

// expandDomain expands a domain-spec and shortens it from the left to 253
// characters (RFC 7208 §4.8).
func (s *spfEval) expandDomain(spec []macroPart, domain string) string {
	d := strings.TrimSuffix(s.expand(spec, domain), ".")
	for len(d) > spfMaxDomain {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return d
}

// expand expands a parsed macro-string (RFC 7208 §7.3, §7.4); parsing
// refused what cannot be expanded.
func (s *spfEval) expand(parts []macroPart, domain string) string {
	var b strings.Builder
	for _, p := range parts {
		if p.letter == 0 {
			b.WriteString(p.literal)
			continue
		}
		v := s.macroValue(p.letter|0x20, domain)
		delims := p.delims
		if delims == "" {
			delims = "."
		}
		labels := splitAny(v, delims)
		if p.reverse {
			for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
				labels[i], labels[j] = labels[j], labels[i]
			}
		}
		if p.digits > 0 && p.digits < len(labels) {
			labels = labels[len(labels)-p.digits:]
		}
		v = strings.Join(labels, ".")
		if p.letter >= 'A' && p.letter <= 'Z' {
			v = urlEscape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func splitAny(s, delims string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// urlEscape escapes all but the unreserved characters (RFC 7208 §7.3).
func urlEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func (s *spfEval) macroValue(letter byte, domain string) string {
	switch letter {
	case 's':
		return s.sender
	case 'l':
		return s.sender[:strings.LastIndexByte(s.sender, '@')]
	case 'o':
		return s.sender[strings.LastIndexByte(s.sender, '@')+1:]
	case 'd':
		return domain
	case 'i':
		if s.v4 {
			return s.ip.String()
		}
		// Upper-case nibbles, as pyspf writes them and the RFC 7208 suite
		// expects in explanations (DNS ignores the case).
		const hex = "0123456789ABCDEF"
		var nib []string
		for _, b := range s.ip.To16() {
			nib = append(nib, string(hex[b>>4]), string(hex[b&15]))
		}
		return strings.Join(nib, ".")
	case 'p':
		return s.pMacro(domain)
	case 'v':
		if s.v4 {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return s.helo
	case 'c':
		return s.ip.String()
	case 'r':
		if s.receiver != "" {
			return s.receiver
		}
		return "unknown"
	case 't':
		return strconv.FormatInt(time.Now().Unix(), 10)
	}
	return ""
}

// pMacro is the validated name of the client (RFC 7208 §7.3): the domain
// itself or a subdomain of it first, else any, else "unknown".
func (s *spfEval) pMacro(domain string) string {
	names, err := s.validatedNames()
	if err != nil || len(names) == 0 {
		return "unknown"
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, n := range names {
		if n == domain {
			return n
		}
	}
	for _, n := range names {
		if strings.HasSuffix(n, "."+domain) {
			return n
		}
	}
	return names[0]
}
