package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/letterboxmail/letterbox/message"
)

// Spam actions (rspamd's) and virus results a match may name.
var (
	spamActions  = []string{"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject", "error"}
	virusResults = []string{"clean", "infected", "error"}
)

// scoreCond is a spam_score condition: an operator and a number, e.g.
// ">= 5".
type scoreCond struct {
	op string
	n  float64
}

// parseScoreCond reads "OP N" with OP one of >=, >, <=, <, ==.
func parseScoreCond(s string) (*scoreCond, error) {
	t := strings.TrimSpace(s)
	for _, op := range []string{">=", "<=", "==", ">", "<"} {
		if rest, ok := strings.CutPrefix(t, op); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil || n != n {
				break
			}
			return &scoreCond{op: op, n: n}, nil
		}
	}
	return nil, fmt.Errorf("%q: want a comparison such as \">= 5\" or \"< 2.5\" (>=, >, <=, <, ==)", s)
}

func (c *scoreCond) holds(score float64) bool {
	switch c.op {
	case ">=":
		return score >= c.n
	case ">":
		return score > c.n
	case "<=":
		return score <= c.n
	case "<":
		return score < c.n
	default:
		return score == c.n
	}
}

func (m *Match) compileVerdicts(fail func(int, string, string, ...any), p string) {
	if m.SpamScore != "" {
		c, err := parseScoreCond(m.SpamScore)
		if err != nil {
			fail(m.Line, p+".spam_score", "%v", err)
		}
		m.spamScore = c
	}
	for i, a := range m.SpamAction {
		if !slices.Contains(spamActions, a) {
			fail(m.Line, fmt.Sprintf("%s.spam_action[%d]", p, i), "%q is not an action (%s)", a, strings.Join(spamActions, ", "))
		}
	}
	for i, v := range m.Virus {
		if !slices.Contains(virusResults, v) {
			fail(m.Line, fmt.Sprintf("%s.virus[%d]", p, i), "%q is not a result (clean, infected or error)", v)
		}
	}
	m.clientIP = nil
	for i, c := range m.ClientIP {
		pfx, err := parsePrefix(c)
		if err != nil {
			fail(m.Line, fmt.Sprintf("%s.client_ip[%d]", p, i), "%q is not an address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)", c)
			continue
		}
		m.clientIP = append(m.clientIP, pfx)
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// verdictsMatch evaluates the spam, virus and client conditions. A message
// no scanner looked at matches no verdict condition; a failed spam scan
// matches spam_action: error and no spam_score.
func (m *Match) verdictsMatch(msg *message.Message) bool {
	if m.spamScore != nil && (msg.Spam == nil || msg.Spam.Action == "error" || !m.spamScore.holds(msg.Spam.Score)) {
		return false
	}
	if len(m.SpamAction) > 0 && (msg.Spam == nil || !slices.Contains(m.SpamAction, msg.Spam.Action)) {
		return false
	}
	if len(m.Virus) > 0 && (msg.Virus == nil || !slices.Contains(m.Virus, msg.Virus.Result)) {
		return false
	}
	if len(m.clientIP) > 0 {
		ip, err := netip.ParseAddr(msg.Envelope.ClientIP)
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		if !slices.ContainsFunc(m.clientIP, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return false
		}
	}
	return true
}
