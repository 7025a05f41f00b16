package routing

import (
	"context"
	"fmt"
	"strings"

	"github.com/letterboxmail/letterbox/message"
)

// Rejection reasons, for logs and metrics.
const (
	ReasonRelay            = "relay_denied"
	ReasonUnknownRecipient = "unknown_recipient"
	ReasonRule             = "reject_rule"
)

// Rejection refuses a recipient at RCPT time with an SMTP reply.
type Rejection struct {
	Code     int
	Enhanced string // RFC 3463, e.g. "5.7.1"
	Message  string
	Reason   string // ReasonRelay, ReasonUnknownRecipient or ReasonRule
	Route    string // the reject rule's route, for ReasonRule
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Message)
}

// Temporary reports whether the sender should try again later (4xx).
func (r *Rejection) Temporary() bool { return r.Code/100 == 4 }

// HasDomain reports whether mail for the address's domain is received here.
func (c *Config) HasDomain(addr string) bool { return c.domains[domainOf(addr)] }

// CheckRecipient decides at RCPT time whether rcpt may be accepted for a
// message from mailFrom. It returns nil or a *Rejection.
func (c *Config) CheckRecipient(ctx context.Context, mailFrom, rcpt string) error {
	if !c.HasDomain(rcpt) {
		return &Rejection{Code: 550, Enhanced: "5.7.1", Reason: ReasonRelay,
			Message: fmt.Sprintf("Relaying denied: this server does not accept mail for %s", domainOrAddr(rcpt))}
	}
	for _, r := range c.Routes {
		if !r.envelopeMatch(mailFrom, rcpt, nil) {
			continue
		}
		if r.Reject != nil {
			return &Rejection{Code: r.Reject.Code, Enhanced: r.Reject.Enhanced, Message: r.Reject.Message, Reason: ReasonRule, Route: r.Name}
		}
		// A route that may match accepts the recipient; whether its content
		// conditions hold is decided after DATA.
		return nil
	}
	return &Rejection{Code: 550, Enhanced: "5.1.1", Reason: ReasonUnknownRecipient,
		Message: fmt.Sprintf("Recipient address rejected: no route accepts %s", rcpt)}
}

func domainOrAddr(addr string) string {
	if d := domainOf(addr); d != "" {
		return d
	}
	return "<" + addr + ">"
}

// envelopeMatch evaluates a route's envelope conditions for one recipient,
// adding regex captures to caps when it is non-nil.
func (r *Route) envelopeMatch(mailFrom, rcpt string, caps map[string]string) bool {
	if r.CatchAll {
		return true
	}
	m := r.Match
	if len(m.recipient) > 0 {
		ok := false
		for _, p := range m.recipient {
			if hit, c := p.Match(rcpt); hit {
				ok = true
				for k, v := range c {
					if caps != nil {
						caps[k] = v
					}
				}
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.tag != nil {
		if hit, _ := m.tag.Match(SubaddressTag(rcpt)); !hit {
			return false
		}
	}
	if m.sender != nil {
		if hit, _ := m.sender.Match(mailFrom); !hit {
			return false
		}
	}
	return true
}

// contentMatch evaluates a route's content conditions on a parsed message.
func (r *Route) contentMatch(msg *message.Message) bool {
	if r.CatchAll {
		return true
	}
	m := r.Match
	if m.from != nil {
		addr := ""
		if msg.From != nil {
			addr = msg.From.Address
		}
		if hit, _ := m.from.Match(addr); !hit {
			return false
		}
	}
	if m.subject != nil {
		if hit, _ := m.subject.Match(msg.Subject); !hit {
			return false
		}
	}
	for name, p := range m.headers {
		found := false
		for _, h := range msg.Headers {
			if strings.EqualFold(h.Name, name) {
				if hit, _ := p.Match(h.Value); hit {
					found = true
					break
				}
			}
		}
		if !found {
			return false
		}
	}
	if m.MinSize > 0 && msg.Size < int64(m.MinSize) {
		return false
	}
	if m.MaxSize > 0 && msg.Size > int64(m.MaxSize) {
		return false
	}
	if m.HasAttachment != nil && (len(msg.Attachments) > 0) != *m.HasAttachment {
		return false
	}
	if m.attachmentType != nil {
		found := false
		for _, a := range msg.Attachments {
			if hit, _ := m.attachmentType.Match(a.ContentType); hit {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for check, want := range m.Auth {
		if authResult(msg.Auth, check) != want {
			return false
		}
	}
	return m.verdictsMatch(msg)
}

func authResult(a *message.Auth, check string) string {
	if a == nil {
		return "none"
	}
	switch check {
	case "spf":
		if a.SPF != nil {
			return a.SPF.Result
		}
	case "dmarc":
		if a.DMARC != nil {
			return a.DMARC.Result
		}
	case "arc":
		if a.ARC != nil {
			return a.ARC.Result
		}
	case "dkim":
		// Any passing signature passes.
		res := "none"
		for _, d := range a.DKIM {
			if d.Result == "pass" {
				return "pass"
			}
			res = d.Result
		}
		return res
	}
	return "none"
}

// Matched is a route that matched a message.
type Matched struct {
	Route *Route
	// Recipients are the envelope recipients that matched the route.
	Recipients []string
	// Captures holds regex captures from the recipient pattern, for ${name}
	// expansion in actions.
	Captures map[string]string
}

// Evaluate returns the routes that match a parsed message, in file order.
// Each envelope recipient walks the routes in order; every matching route
// runs, and a matching route with stop: true, or with a drop action, ends
// that recipient's walk.
// Reject routes matched after DATA (their recipient was accepted before a
// configuration reload) are skipped. Messages without an envelope (written
// by another ingress, such as SES) are routed by their To and Cc addresses
// in the configured domains.
func (c *Config) Evaluate(ctx context.Context, msg *message.Message) []Matched {
	rcpts := msg.Envelope.RcptTo
	if len(rcpts) == 0 {
		for _, a := range append(append([]message.Address{}, msg.To...), msg.Cc...) {
			if c.HasDomain(a.Address) {
				rcpts = append(rcpts, a.Address)
			}
		}
	}
	byRoute := map[*Route]*Matched{}
	var order []*Route
	for _, rcpt := range rcpts {
		if !c.HasDomain(rcpt) {
			continue
		}
		for _, r := range c.Routes {
			caps := map[string]string{}
			if !r.envelopeMatch(msg.Envelope.MailFrom, rcpt, caps) || !r.contentMatch(msg) {
				continue
			}
			if r.Reject == nil {
				m := byRoute[r]
				if m == nil {
					m = &Matched{Route: r, Captures: map[string]string{}}
					byRoute[r] = m
					order = append(order, r)
				}
				m.Recipients = append(m.Recipients, rcpt)
				for k, v := range caps {
					if _, set := m.Captures[k]; !set {
						m.Captures[k] = v
					}
				}
			}
			if r.Ends() {
				break
			}
		}
	}
	out := make([]Matched, 0, len(order))
	for _, r := range c.Routes {
		if m := byRoute[r]; m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// Expand replaces ${name} in s with the match's captures.
func (m Matched) Expand(s string) string { return expand(s, m.Captures) }

// Route returns the route with the given name, or nil.
func (c *Config) Route(name string) *Route {
	for _, r := range c.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}
