package smtpgw

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// The policy hook (policy.hook in the routes file, or --policy-hook) is
// asked at RCPT, for each recipient the routes accept, and at the end of
// DATA, when the data has ended and before the store commits it (with the
// header section and the scanners' verdicts). Its answer:
//
//   - accept: the recipient or message goes on (250);
//   - reject: its 5xx code, enhanced code and message; at the end of DATA
//     the store's write is abandoned, so nothing is kept;
//   - defer: the same with its 4xx code;
//   - quarantine: 250 to the client; the message is stored with verdicts
//     that keep it from being routed, and copied to quarantine/ (scan.go;
//     at RCPT: the whole message).
//
// The hook's message reaches the client: it is validated as one line of
// printable ASCII of at most 200 bytes (package policyhook), so it cannot
// inject a reply. No answer within hook.timeout, or a bad one, applies
// hook.fail: open accepts, closed answers 451 4.7.0.

// hookMetrics counts the hook's outcomes.
type hookMetrics struct {
	asked   *prometheus.CounterVec   // stage, result
	latency *prometheus.HistogramVec // stage
}

func newHookMetrics(reg prometheus.Registerer) (*hookMetrics, error) {
	m := &hookMetrics{
		asked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_policy_hook_total",
			Help: "Policy hook questions by stage (rcpt, data) and result (accept, reject, defer, quarantine, error).",
		}, []string{"stage", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "letterbox_smtp_policy_hook_seconds",
			Help:    "Time the policy hook took to answer (or fail).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"stage"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.asked, m.latency} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// activeHook is the hook in force for one question.
type activeHook struct {
	fail   string // routing.FailOpen or FailClosed
	target policyhook.Target
	err    error // the hook cannot be asked (no secret): its failure mode applies
}

// policyHook returns the hook in force now: the routes file's
// policy.hook, with --policy-hook and LETTERBOX_POLICY_HOOK_SECRET
// overriding its URL and secret; nil when there is none.
func (g *Gateway) policyHook(ctx context.Context) *activeHook {
	var hp routing.HookPolicy
	if cfg := g.routes.Get(ctx); cfg != nil && cfg.Policy != nil && cfg.Policy.Hook != nil {
		hp = *cfg.Policy.Hook
	}
	if g.cfg.PolicyHook != "" {
		hp.URL = g.cfg.PolicyHook
	}
	if hp.URL == "" {
		return nil
	}
	h := &activeHook{fail: hp.Fail, target: policyhook.Target{URL: hp.URL, Timeout: time.Duration(hp.Timeout)}}
	if h.fail == "" {
		h.fail = routing.FailClosed
	}
	if h.target.Timeout <= 0 {
		h.target.Timeout = routing.DefaultHookTimeout
	}
	if policyhook.IsLambda(hp.URL) {
		return h
	}
	var raw []string
	switch {
	case g.cfg.PolicyHookSecret != "":
		raw = []string{g.cfg.PolicyHookSecret}
	case hp.Secret != "":
		raw = []string{hp.Secret}
	case hp.SecretEnv != "" && g.cfg.Getenv != nil:
		if v := g.cfg.Getenv(hp.SecretEnv); v != "" {
			raw = strings.Split(v, ",")
		}
	}
	if len(raw) == 0 {
		h.err = fmt.Errorf("no signing secret: set LETTERBOX_POLICY_HOOK_SECRET or policy.hook.secret_env (%q is empty)", hp.SecretEnv)
		return h
	}
	for _, r := range raw {
		k, err := webhook.ParseSecret(strings.TrimSpace(r))
		if err != nil {
			h.err = errors.New("the signing secret is not \"whsec_\" followed by base64")
			return h
		}
		h.target.Secrets = append(h.target.Secrets, k)
	}
	return h
}

// checkPolicyHook refuses a gateway start whose policy hook cannot sign
// its requests (no secret in LETTERBOX_POLICY_HOOK_SECRET, policy.hook's
// secret or the variable its secret_env names). A routes file reloaded
// later with the same problem is logged at each question, and hook.fail
// applies.
func (g *Gateway) checkPolicyHook(ctx context.Context) error {
	h := g.policyHook(ctx)
	if h == nil || h.err == nil {
		return nil
	}
	if g.cfg.PolicyHook != "" {
		return fmt.Errorf("--policy-hook: %w", h.err)
	}
	return fmt.Errorf("policy.hook: %w", h.err)
}

// askHook asks the hook and turns its answer, or its failure, into the
// reply to give: nil to go on. quarantine reports a quarantine answer.
func (s *session) askHook(ctx context.Context, h *activeHook, tx *transaction, stage string, q *policyhook.Query) (reply *smtp.SMTPError, quarantine bool) {
	if h == nil {
		return nil, false
	}
	tx.hookAsked++
	q.Stage, q.SessionID, q.MessageID = stage, s.c.id, tx.id
	q.Client = policyhook.SMTPClient{IP: s.c.remote.Addr().String(), HELO: s.c.helo, TLS: s.isTLS(), AuthUser: s.authUser}
	q.MailFrom = tx.from
	start := time.Now()
	ans, err := (*policyhook.Answer)(nil), h.err
	if err == nil {
		ans, err = s.g.hook.Ask(ctx, h.target, tx.id+"."+stage+"."+strconv.Itoa(tx.hookAsked), q)
	}
	s.g.hookM.latency.WithLabelValues(stage).Observe(time.Since(start).Seconds())
	log := tx.log.With("stage", stage, "hook_ms", time.Since(start).Milliseconds())
	if q.Rcpt != "" {
		log = log.With("rcpt", q.Rcpt)
	}
	if err != nil {
		s.g.hookM.asked.WithLabelValues(stage, "error").Inc()
		if h.fail == routing.FailOpen {
			log.Warn("policy hook failed; accepting (hook.fail: open)", "err", err, "fail", h.fail)
			return nil, false
		}
		s.g.m.rejections.WithLabelValues(reasonPolicyHook).Inc()
		log.Warn("policy hook failed; deferring (hook.fail: closed)", "err", err, "fail", h.fail, "code", 451)
		return smtpErr(451, "4.7.0", "Policy check temporarily unavailable; try again later"), false
	}
	s.g.hookM.asked.WithLabelValues(stage, ans.Action).Inc()
	switch ans.Action {
	case policyhook.Reject, policyhook.Defer:
		s.g.m.rejections.WithLabelValues(reasonPolicyHook).Inc()
		log.Info("policy hook refused", "reason", reasonPolicyHook, "action", ans.Action, "code", ans.Code, "enhanced", ans.EnhancedCode)
		return smtpErr(ans.Code, ans.EnhancedCode, ans.Message), false
	case policyhook.Quarantine:
		log.Info("policy hook: quarantine", "action", ans.Action)
		return nil, true
	}
	log.Debug("policy hook accepted", "action", ans.Action)
	return nil, false
}

// rcptHook asks the hook about a recipient the routes accepted.
func (s *session) rcptHook(ctx context.Context, tx *transaction, rcpt string) *smtp.SMTPError {
	reply, quarantine := s.askHook(ctx, s.g.policyHook(ctx), tx, policyhook.StageRcpt, &policyhook.Query{Rcpt: rcpt, RcptTo: append(make([]string, 0, len(tx.rcpts)), tx.rcpts...)})
	if quarantine {
		tx.hookQuarantine = true
	}
	return reply
}

// maxHookHeaderBytes bounds the header section sent to the hook.
const maxHookHeaderBytes = 64 << 10

// errHookRefused ends the store's read of a message the policy hook
// refused at the end of DATA: the write is abandoned, nothing is kept.
var errHookRefused = errors.New("smtpgw: the policy hook refused the message")

// hookGate sits between the message data and the store. It keeps the
// header section (up to maxHookHeaderBytes) as it streams by; when the
// data ends and before the store sees the end (so before the commit), the
// scanners' gate (scan.go, deferred) asks the policy hook, with the
// verdicts from verdicts. A reject or defer makes the store's read fail,
// so nothing is stored; a quarantine becomes the verdicts' disposition
// and the stored message is copied to quarantine/.
type hookGate struct {
	s        *session
	ctx      context.Context
	tx       *transaction
	h        *activeHook
	r        io.Reader
	verdicts func() (*message.Spam, *message.Virus)

	head     []byte
	headDone bool
	n        int64

	asked      bool
	reply      *smtp.SMTPError // reject or defer (or fail: closed)
	quarantine bool
	// deferred leaves the question to the scanners' gate (scan.go), which
	// asks it once the verdicts are in.
	deferred bool
}

// newHookGate wraps src when a policy hook is in force, or a quarantine
// was asked at RCPT; otherwise it returns nil and the data goes straight
// to the store.
func (s *session) newHookGate(ctx context.Context, tx *transaction, src io.Reader, verdicts func() (*message.Spam, *message.Virus)) *hookGate {
	h := s.g.policyHook(ctx)
	if h == nil && !tx.hookQuarantine {
		return nil
	}
	return &hookGate{s: s, ctx: ctx, tx: tx, h: h, r: src, verdicts: verdicts, quarantine: tx.hookQuarantine}
}

func (g *hookGate) Read(p []byte) (int, error) {
	if g.asked && g.reply != nil {
		return 0, errHookRefused
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	if !g.headDone && n > 0 {
		room := maxHookHeaderBytes - len(g.head)
		g.head = append(g.head, p[:min(n, room)]...)
		if bytes.Contains(g.head, []byte("\r\n\r\n")) || len(g.head) >= maxHookHeaderBytes {
			g.headDone = true
		}
	}
	if err == io.EOF && !g.asked && !g.deferred {
		g.ask()
		if g.reply != nil {
			return n, errHookRefused
		}
	}
	return n, err
}

// ask asks the hook at the end of the data (the scanners' gate calls it
// once their verdicts are in).
func (g *hookGate) ask() {
	g.asked = true
	if g.h == nil {
		return
	}
	var spam *message.Spam
	var virus *message.Virus
	if g.verdicts != nil {
		spam, virus = g.verdicts()
	}
	reply, quarantine := g.s.askDataHook(g.ctx, g.h, g.tx, g.n, g.headers(), spam, virus)
	g.reply = reply
	g.quarantine = g.quarantine || quarantine
}

// headers is the header section seen so far, parsed.
func (g *hookGate) headers() []policyhook.Header {
	return parseHeader(bytes.NewReader(g.head))
}

// askDataHook asks the hook at the end of DATA, with what the gateway
// knows of the message then; reply is the refusal to give (reject, defer
// or fail: closed), quarantine a quarantine answer. It is the whole
// end-of-DATA question, whoever decides when to ask it (hookGate here; a
// content check that runs with the scanners' verdicts would call it the
// same way).
func (s *session) askDataHook(ctx context.Context, h *activeHook, tx *transaction, size int64, headers []policyhook.Header,
	spam *message.Spam, virus *message.Virus) (reply *smtp.SMTPError, quarantine bool) {
	q := &policyhook.Query{RcptTo: tx.rcpts, Size: size, Spam: spam, Virus: virus, Headers: headers}
	return s.askHook(ctx, h, tx, policyhook.StageData, q)
}

// refused reports whether the store's write failed because the hook
// refused the message (errHookRefused).
func (g *hookGate) refused(err error) bool {
	// The store wraps the read error its own way; a refusal is the only
	// reason the gate fails a read.
	return g != nil && g.reply != nil && err != nil
}

// hookRefused answers a message the hook refused at the end of DATA:
// nothing was stored.
func (s *session) hookRefused(g *hookGate, extra []any) error {
	s.endTx(g.reply.Code, "refused", append(extra, "reason", reasonPolicyHook))
	return s.reject(g.reply)
}

// parseHeader reads header fields (RFC 5322 §2.2) up to the blank line,
// unfolding continuation lines; it stops at the first malformed line.
func parseHeader(r io.Reader) []policyhook.Header {
	br := bufio.NewReader(r)
	var out []policyhook.Header
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return out
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(out) > 0 {
				out[len(out)-1].Value += " " + strings.TrimSpace(line)
			}
		} else if name, value, ok := strings.Cut(line, ":"); ok && name != "" && !strings.ContainsAny(name, " \t") {
			out = append(out, policyhook.Header{Name: name, Value: strings.TrimSpace(value)})
		} else {
			return out
		}
		if err != nil {
			return out
		}
	}
}
