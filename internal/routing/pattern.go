package routing

import (
	"fmt"
	"regexp"
	"strings"
)

// Pattern matches a string: exactly (case-insensitively), by glob (* any
// run of characters, ? one character), or by regular expression when
// written "regex:<expr>" (RE2 syntax, unanchored unless the expression
// anchors itself; named and numbered groups become captures).
type Pattern struct {
	src   string
	exact string
	glob  *regexp.Regexp
	re    *regexp.Regexp
}

func compilePattern(src string) (*Pattern, error) {
	p := &Pattern{src: src}
	switch {
	case strings.HasPrefix(src, "regex:"):
		re, err := regexp.Compile(strings.TrimPrefix(src, "regex:"))
		if err != nil {
			return nil, fmt.Errorf("bad regular expression: %v", err)
		}
		p.re = re
	case strings.ContainsAny(src, "*?"):
		var b strings.Builder
		b.WriteString("(?i)^")
		for _, r := range src {
			switch r {
			case '*':
				b.WriteString(".*")
			case '?':
				b.WriteString(".")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		b.WriteString("$")
		p.glob = regexp.MustCompile(b.String())
	default:
		if src == "" {
			return nil, fmt.Errorf("must not be empty")
		}
		p.exact = strings.ToLower(src)
	}
	return p, nil
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.src }

// Match reports whether s matches, and the regex captures if any: named
// groups by name, all groups by number ("1", "2", …).
func (p *Pattern) Match(s string) (bool, map[string]string) {
	switch {
	case p.re != nil:
		m := p.re.FindStringSubmatch(s)
		if m == nil {
			return false, nil
		}
		caps := map[string]string{}
		for i, name := range p.re.SubexpNames() {
			if i == 0 {
				continue
			}
			caps[fmt.Sprint(i)] = m[i]
			if name != "" {
				caps[name] = m[i]
			}
		}
		return true, caps
	case p.glob != nil:
		return p.glob.MatchString(s), nil
	default:
		return strings.ToLower(s) == p.exact, nil
	}
}

// domainOf returns the lower-cased domain of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}

// SubaddressTag returns the tag of user+tag@domain, or "".
func SubaddressTag(addr string) string {
	local := addr
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local = addr[:i]
	}
	if _, tag, ok := strings.Cut(local, "+"); ok {
		return tag
	}
	return ""
}

// expand replaces ${name} with captures; unknown names expand to "".
func expand(s string, caps map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(caps[s[i+2:i+j]])
		s = s[i+j+1:]
	}
}
