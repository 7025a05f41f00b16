package smtpgw

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// Client policy (the routes file's policy.clients), in the order the
// gateway applies it:
//
//  1. At connect, a client in clients.allow is marked allowed; one in
//     clients.deny and not in clients.allow gets "554 5.7.1" and the
//     connection closes. The connection limits (421 4.7.0) apply to every
//     client, allowed or not.
//  2. At MAIL FROM, unless the client is allowed or authenticated, the
//     message-rate limits (450 4.7.1), then the DNS blocklists (554 5.7.1),
//     then SPF.
//
// The lists and limits come from the live routes configuration: a change
// to the file applies to the next connection (lists) or MAIL FROM (rates).

// clientPolicy returns the current configuration's client policy; nil
// means none.
func (g *Gateway) clientPolicy(ctx context.Context) *routing.ClientPolicy {
	if cfg := g.routes.Get(ctx); cfg != nil && cfg.Policy != nil {
		return cfg.Policy.Clients
	}
	return nil
}

// rateSlots is how many slots a rate window is counted in: a message stops
// counting between (rateSlots-1)/rateSlots of the window and the whole
// window after it was accepted.
const rateSlots = 10

// maxRateKeys bounds the addresses and networks the rate limiter tracks.
// When it is full of active entries a new client is not limited (and a
// warning is logged): the limiter never refuses mail because of its own
// memory bound.
const maxRateKeys = 200000

// rateLimiter counts messages per client IP, IPv4 /24 and IPv6 /64 in a
// sliding window made of rateSlots fixed slots. It lives in the gateway's
// memory, as the connection and AUTH-failure limits do: each gateway task
// counts its own clients, and a restart starts from zero.
type rateLimiter struct {
	now func() time.Time

	mu     sync.Mutex
	window time.Duration
	counts map[netip.Prefix]*slotCounts
	full   bool // the last insertion found the table full
}

type slotCounts struct {
	slot [rateSlots]int64 // the slot number each count belongs to
	n    [rateSlots]int
}

// total is the count in the rateSlots slots up to cur.
func (c *slotCounts) total(cur int64) int {
	sum := 0
	for i := range c.slot {
		if c.slot[i] > cur-rateSlots && c.slot[i] <= cur {
			sum += c.n[i]
		}
	}
	return sum
}

func (c *slotCounts) add(cur int64, d int) {
	i := cur % rateSlots
	if c.slot[i] != cur {
		if d < 0 {
			return // the slot has moved on: the count expired already
		}
		c.slot[i], c.n[i] = cur, 0
	}
	c.n[i] += d
}

func newRateLimiter(now func() time.Time) *rateLimiter {
	if now == nil {
		now = time.Now
	}
	return &rateLimiter{now: now, counts: map[netip.Prefix]*slotCounts{}}
}

// rateRefusal says which limit a client reached.
type rateRefusal struct {
	limit   string       // per_ip, per_24 or per_64
	key     netip.Prefix // the address or network counted
	max     int
	window  time.Duration
	current int
}

// rateReservation is a message counted at MAIL FROM; cancel uncounts it
// when the transaction ends without the message being accepted.
type rateReservation struct {
	l    *rateLimiter
	keys []netip.Prefix
	cur  int64
	win  time.Duration
	once sync.Once
}

func (r *rateReservation) cancel() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		r.l.mu.Lock()
		defer r.l.mu.Unlock()
		if r.l.window != r.win {
			return // the window changed and the counts were reset
		}
		for _, k := range r.keys {
			if c := r.l.counts[k]; c != nil {
				c.add(r.cur, -1)
			}
		}
	})
}

// reserve counts one message from ip against the limits, unless one of
// them is reached already, in which case it counts nothing and says which.
func (l *rateLimiter) reserve(ip netip.Addr, p *routing.RatePolicy) (*rateReservation, *rateRefusal) {
	if p == nil || (p.PerIP <= 0 && p.Per24 <= 0 && p.Per64 <= 0) {
		return nil, nil
	}
	ip = ip.Unmap()
	type check struct {
		name string
		key  netip.Prefix
		max  int
	}
	checks := make([]check, 0, 2)
	if p.PerIP > 0 {
		checks = append(checks, check{"per_ip", netip.PrefixFrom(ip, ip.BitLen()), p.PerIP})
	}
	if ip.Is4() && p.Per24 > 0 {
		k, _ := ip.Prefix(24)
		checks = append(checks, check{"per_24", k, p.Per24})
	}
	if ip.Is6() && p.Per64 > 0 {
		k, _ := ip.Prefix(64)
		checks = append(checks, check{"per_64", k, p.Per64})
	}
	if len(checks) == 0 {
		return nil, nil
	}
	win := time.Duration(p.Window)
	l.mu.Lock()
	defer l.mu.Unlock()
	if win != l.window {
		// A new window (or the first use): start counting afresh.
		l.window, l.counts = win, map[netip.Prefix]*slotCounts{}
	}
	cur := l.now().UnixNano() / int64(win/rateSlots)
	for _, c := range checks {
		if sc := l.counts[c.key]; sc != nil {
			if n := sc.total(cur); n >= c.max {
				return nil, &rateRefusal{limit: c.name, key: c.key, max: c.max, window: win, current: n}
			}
		}
	}
	r := &rateReservation{l: l, cur: cur, win: win}
	for _, c := range checks {
		sc := l.counts[c.key]
		if sc == nil {
			if len(l.counts) >= maxRateKeys {
				l.sweep(cur)
			}
			if len(l.counts) >= maxRateKeys {
				l.full = true
				continue
			}
			sc = &slotCounts{}
			l.counts[c.key] = sc
		}
		sc.add(cur, 1)
		r.keys = append(r.keys, c.key)
	}
	return r, nil
}

// sweep forgets the entries with nothing left in the window.
func (l *rateLimiter) sweep(cur int64) {
	for k, c := range l.counts {
		if c.total(cur) == 0 {
			delete(l.counts, k)
		}
	}
}

// takeFull reports whether an entry could not be tracked since the last
// call.
func (l *rateLimiter) takeFull() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.full
	l.full = false
	return f
}

// text is the reply's text: the client's address or network and the limit.
func (r *rateRefusal) text() string {
	what, key := "your address", r.key.Addr().String()
	if r.limit != "per_ip" {
		what, key = "your network", r.key.String()
	}
	return fmt.Sprintf("Too many messages from %s [%s] (limit %d per %s); try again later", what, key, r.max, r.window)
}

// admitClient applies clients.allow and clients.deny at connect. It
// returns the refusal to write, or "" when the client may go on, and
// marks an allowed client.
func (g *Gateway) admitClient(c *conn) (reply, reason string) {
	cp := g.clientPolicy(context.Background())
	ip := c.remote.Addr()
	switch {
	case cp.Allowed(ip):
		c.allowed = true
	case cp.Denied(ip):
		return fmt.Sprintf("554 5.7.1 %s Connection refused: client [%s] is not allowed by policy", g.cfg.Hostname, ip), reasonClientDenied
	}
	return "", ""
}

// checkRate counts the transaction's message against the client's rate
// limits, or refuses it with 450 4.7.1 when one is reached (the client
// retries later; every refusal counts toward --max-errors, after which the
// session ends with 421 4.7.0).
func (s *session) checkRate(ctx context.Context, tx *transaction) *smtp.SMTPError {
	cp := s.g.clientPolicy(ctx)
	if cp == nil || cp.Rate == nil {
		return nil
	}
	res, ref := s.g.rate.reserve(s.c.remote.Addr(), cp.Rate)
	if s.g.rate.takeFull() {
		tx.log.Warn("rate limiter table full; a client is not counted", "reason", reasonRateLimit, "max_keys", maxRateKeys)
	}
	if ref != nil {
		s.g.m.rejections.WithLabelValues(reasonRateLimit).Inc()
		tx.log.Warn("client over its message rate", "reason", reasonRateLimit, "limit", ref.limit, "key", ref.key.String(),
			"max", ref.max, "window", ref.window.String(), "code", 450)
		return smtpErr(450, "4.7.1", ref.text())
	}
	tx.rate = res
	return nil
}
