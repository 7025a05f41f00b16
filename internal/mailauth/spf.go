package mailauth

import (
	"context"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/letterboxmail/letterbox/message"
)

func (c *Checker) checkSPF(ctx context.Context, env *message.Envelope) message.SPFResult {
	sender := strings.Trim(strings.TrimSpace(env.MailFrom), "<>")
	domain := env.HELO
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
	} else {
		// Null reverse-path: check postmaster@HELO (RFC 7208 §2.4).
		sender = ""
	}
	ip := net.ParseIP(env.ClientIP)
	if ip == nil {
		return message.SPFResult{Result: PermError, Domain: domain, Reason: "invalid client IP " + env.ClientIP}
	}
	if domain == "" {
		return message.SPFResult{Result: None, Reason: "no MAIL FROM or HELO domain"}
	}
	res, err := spf.CheckHostWithSender(ip, env.HELO, sender, spf.WithContext(ctx), spf.WithResolver(c.res))
	out := message.SPFResult{Result: string(res), Domain: domain}
	if res != spf.Pass && res != spf.None && err != nil {
		out.Reason = cleanReason(err.Error())
	}
	return out
}
