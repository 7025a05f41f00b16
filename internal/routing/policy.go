package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// Policy is the routes file's top-level policy: key, what the SMTP gateway
// decides during the session: spam and virus verdicts, the scanners'
// failure mode, client allow and deny lists and rates, and the policy
// hook. The zero value decides nothing (every check off).
type Policy struct {
	Position
	Spam     *SpamPolicy    `yaml:"spam"`
	Virus    *VirusPolicy   `yaml:"virus"`
	Scanners *ScannerPolicy `yaml:"scanners"`
	Clients  *ClientPolicy  `yaml:"clients"`
	Hook     *HookPolicy    `yaml:"hook"`
}

// SpamPolicy refuses (550 5.7.1) or quarantines a message by its spam
// score; a nil threshold is off.
type SpamPolicy struct {
	Position
	RejectAt     *float64 `yaml:"reject_at"`
	QuarantineAt *float64 `yaml:"quarantine_at"`
}

// VirusPolicy says what an infected message gets: "reject" (554 5.7.1),
// "quarantine" or "tag" (accepted, with the verdict in the JSON).
type VirusPolicy struct {
	Position
	Infected string `yaml:"infected"`
}

// ScannerPolicy bounds the scanners: Fail is "open" (accept with verdict
// "error") or "closed" (451 4.7.0); Timeout is each scanner's deadline.
type ScannerPolicy struct {
	Position
	Fail    string   `yaml:"fail"`
	Timeout Duration `yaml:"timeout"`
}

// ClientPolicy checks the connecting client: Allow and Deny are CIDRs
// checked at connect (554 5.7.1), Rate bounds messages per client.
type ClientPolicy struct {
	Position
	Allow []string    `yaml:"allow"`
	Deny  []string    `yaml:"deny"`
	Rate  *RatePolicy `yaml:"rate"`

	allow, deny []netip.Prefix
}

// RatePolicy bounds accepted messages per client IP, per IPv4 /24 and per
// IPv6 /64 within Window; zero is no limit.
type RatePolicy struct {
	Position
	PerIP  int      `yaml:"per_ip"`
	Per24  int      `yaml:"per_24"`
	Per64  int      `yaml:"per_64"`
	Window Duration `yaml:"window"`
}

// HookPolicy is the policy hook asked at RCPT and at the end of DATA.
type HookPolicy struct {
	Position
	URL       string   `yaml:"url"`
	Secret    string   `yaml:"secret"`
	SecretEnv string   `yaml:"secret_env"`
	Timeout   Duration `yaml:"timeout"`
	Fail      string   `yaml:"fail"`
}

// Policy defaults and bounds.
const (
	// DefaultHookTimeout is the policy hook's deadline when hook.timeout
	// is not set.
	DefaultHookTimeout = 5 * time.Second
	// MaxHookTimeout bounds hook.timeout: the hook answers inside an SMTP
	// command, whose client waits five minutes for RCPT and ten for the
	// end of DATA (RFC 5321 §4.5.3.2), and every other message from the
	// same connection waits with it.
	MaxHookTimeout = 30 * time.Second
	// MaxScannerTimeout bounds scanners.timeout, well inside the ten
	// minutes a client waits for the reply to the end of DATA (RFC 5321
	// §4.5.3.2.6).
	MaxScannerTimeout = 5 * time.Minute
	// MaxRateWindow bounds clients.rate.window.
	MaxRateWindow = 24 * time.Hour
	// MaxClientPrefixes bounds clients.allow and clients.deny each.
	MaxClientPrefixes = 10000
)

// Failure modes of a scanner or the hook.
const (
	FailOpen   = "open"   // accept the message (a scanner's verdict is "error")
	FailClosed = "closed" // 451 4.7.0: the sender retries later
)

// Virus policy actions.
const (
	VirusReject     = "reject"
	VirusQuarantine = "quarantine"
	VirusTag        = "tag"
)

// Allowed reports whether ip is in clients.allow: such a client is not
// refused by clients.deny, DNS blocklists or rate limits.
func (c *ClientPolicy) Allowed(ip netip.Addr) bool {
	return c != nil && containsAddr(c.allow, ip)
}

// Denied reports whether ip is in clients.deny and not in clients.allow.
func (c *ClientPolicy) Denied(ip netip.Addr) bool {
	return c != nil && !c.Allowed(ip) && containsAddr(c.deny, ip)
}

func containsAddr(ps []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsLambda reports whether the hook is an AWS Lambda function (its URL is
// a function ARN) rather than an HTTP endpoint.
func (h *HookPolicy) IsLambda() bool { return IsLambdaARN(h.URL) }

var (
	lambdaARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]{1,128})?$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// IsLambdaARN reports whether s is an AWS Lambda function ARN (with an
// optional version or alias).
func IsLambdaARN(s string) bool { return lambdaARNRE.MatchString(s) }

// CheckHookURL checks a policy hook target: an absolute http or https URL
// without credentials, or a Lambda function ARN. The gateway's
// --policy-hook flag is checked with it too. Where the URL may connect is
// the egress guard's decision, made for every connection.
func CheckHookURL(s string) error {
	if strings.HasPrefix(s, "arn:") {
		if !IsLambdaARN(s) {
			return fmt.Errorf("%q is not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q must be an absolute http or https URL, or a Lambda function ARN", s)
	}
	if u.User != nil {
		return errors.New("must not carry credentials (user:password@): the request is signed with the hook's secret")
	}
	if u.Fragment != "" {
		return errors.New("must not have a #fragment")
	}
	return nil
}

// validate checks the policy: key and fills in its defaults.
func (p *Policy) validate(fail func(int, string, string, ...any)) {
	if s := p.Spam; s != nil {
		if s.RejectAt == nil && s.QuarantineAt == nil {
			fail(s.Line, "policy.spam", "set reject_at, quarantine_at or both (spam scores at or above them are refused or quarantined)")
		}
		if s.RejectAt != nil && s.QuarantineAt != nil && *s.QuarantineAt >= *s.RejectAt {
			fail(s.Line, "policy.spam.quarantine_at", "%g must be below reject_at (%g): a score at or above reject_at is refused, so quarantine would never apply", *s.QuarantineAt, *s.RejectAt)
		}
	}
	if v := p.Virus; v != nil {
		switch v.Infected {
		case VirusReject, VirusQuarantine, VirusTag:
		case "":
			fail(v.Line, "policy.virus.infected", "required: reject, quarantine or tag")
		default:
			fail(v.Line, "policy.virus.infected", "%q: use reject, quarantine or tag", v.Infected)
		}
	}
	if s := p.Scanners; s != nil {
		checkFail(fail, s.Line, "policy.scanners.fail", &s.Fail, "")
		if t := time.Duration(s.Timeout); t > MaxScannerTimeout {
			fail(s.Line, "policy.scanners.timeout", "%s is longer than %s: the client waits ten minutes at most for the reply to its data", t, MaxScannerTimeout)
		}
	}
	if c := p.Clients; c != nil {
		c.allow = parseClientPrefixes(fail, c.Line, "policy.clients.allow", c.Allow)
		c.deny = parseClientPrefixes(fail, c.Line, "policy.clients.deny", c.Deny)
		if r := c.Rate; r != nil {
			for _, f := range []struct {
				name string
				n    int
			}{{"per_ip", r.PerIP}, {"per_24", r.Per24}, {"per_64", r.Per64}} {
				if f.n < 0 {
					fail(r.Line, "policy.clients.rate."+f.name, "%d must be 0 (no limit) or more", f.n)
				}
			}
			w := time.Duration(r.Window)
			switch {
			case (r.PerIP > 0 || r.Per24 > 0 || r.Per64 > 0) && w <= 0:
				fail(r.Line, "policy.clients.rate.window", "required with a rate: the duration the counts cover (e.g. 1h)")
			case w > MaxRateWindow:
				fail(r.Line, "policy.clients.rate.window", "%s is longer than %s", w, MaxRateWindow)
			case w > 0 && w < time.Second:
				fail(r.Line, "policy.clients.rate.window", "%s is shorter than 1s", w)
			}
		}
	}
	if h := p.Hook; h != nil {
		if h.URL == "" {
			fail(h.Line, "policy.hook.url", "required: an http or https URL, or a Lambda function ARN")
		} else if err := CheckHookURL(h.URL); err != nil {
			fail(h.Line, "policy.hook.url", "%v", err)
		}
		switch {
		case h.Secret != "" && h.SecretEnv != "":
			fail(h.Line, "policy.hook.secret", "set secret or secret_env, not both")
		case h.Secret == "" && h.SecretEnv == "" && h.URL != "" && !h.IsLambda():
			fail(h.Line, "policy.hook.secret_env", "required: every hook request is signed (Standard Webhooks); name the environment variable holding a \"whsec_\" secret (or set secret)")
		case h.Secret != "":
			if _, err := webhook.ParseSecret(h.Secret); err != nil {
				// The value is never repeated: it is a secret.
				fail(h.Line, "policy.hook.secret", "must be \"whsec_\" followed by base64 (generate one with: openssl rand -base64 32); prefer secret_env")
			}
		case h.SecretEnv != "" && !envNameRE.MatchString(h.SecretEnv):
			fail(h.Line, "policy.hook.secret_env", "%q is not an environment variable name", h.SecretEnv)
		}
		t := time.Duration(h.Timeout)
		switch {
		case t == 0:
			h.Timeout = Duration(DefaultHookTimeout)
		case t < 10*time.Millisecond:
			fail(h.Line, "policy.hook.timeout", "%s is too short (at least 10ms)", t)
		case t > MaxHookTimeout:
			fail(h.Line, "policy.hook.timeout", "%s is longer than %s: the hook answers inside an SMTP command", t, MaxHookTimeout)
		}
		checkFail(fail, h.Line, "policy.hook.fail", &h.Fail, FailClosed)
	}
}

// checkFail checks a failure mode and sets its default.
func checkFail(fail func(int, string, string, ...any), line int, field string, v *string, def string) {
	switch *v {
	case FailOpen, FailClosed:
	case "":
		*v = def
	default:
		fail(line, field, "%q: use open (accept) or closed (451 4.7.0, the sender retries)", *v)
	}
}

// parseClientPrefixes parses CIDRs (a bare address is one address). A
// prefix with host bits set is refused, as is an IPv4-mapped IPv6 one:
// client addresses are compared in their IPv4 form.
func parseClientPrefixes(fail func(int, string, string, ...any), line int, field string, in []string) []netip.Prefix {
	if len(in) > MaxClientPrefixes {
		fail(line, field, "%d entries; at most %d", len(in), MaxClientPrefixes)
		return nil
	}
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "%") {
			fail(line, f, "%q: no zone", s)
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else if p, err = netip.ParsePrefix(s); err != nil {
			fail(line, f, "%q is not an address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)", s)
			continue
		} else if p != p.Masked() {
			fail(line, f, "%q has host bits set; did you mean %s?", s, p.Masked())
			continue
		}
		if p.Addr().Is4In6() {
			fail(line, f, "%q: write IPv4 ranges in IPv4 form", s)
			continue
		}
		out = append(out, p)
	}
	return out
}
