package smtpgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

// Rejection reasons of the content scan (see metrics.go).
const (
	reasonSpam       = "spam"
	reasonVirus      = "virus"
	reasonScanFailed = "scan_failed"
)

// Policy rule names, in logs (key "rule") and in the verdicts object.
const (
	ruleSpamReject     = "policy.spam.reject_at"
	ruleSpamQuarantine = "policy.spam.quarantine_at"
	ruleVirus          = "policy.virus.infected"
	ruleScannersFail   = "policy.scanners.fail"
	ruleHook           = "policy.hook"
)

// scanMetrics counts the scanners' verdicts and how long the gateway
// waited for them after the last byte.
type scanMetrics struct {
	verdicts *prometheus.CounterVec // scanner, verdict
	wait     prometheus.Histogram
}

func newScanMetrics(reg prometheus.Registerer) (*scanMetrics, error) {
	m := &scanMetrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_scan_verdicts_total",
			Help: "Scan verdicts by scanner (rspamd, clamd) and verdict (rspamd's action or clamd's result; error when the scan failed).",
		}, []string{"scanner", "verdict"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "letterbox_smtp_scan_wait_seconds",
			Help:    "From the last byte of a message to the last of its verdicts.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.verdicts, m.wait} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// observe counts one message's verdicts.
func (m *scanMetrics) observe(res scan.Result, wait time.Duration) {
	m.wait.Observe(wait.Seconds())
	if v := res.Spam; v != nil {
		m.verdicts.WithLabelValues("rspamd", v.Action).Inc()
	}
	if v := res.Virus; v != nil {
		m.verdicts.WithLabelValues("clamd", v.Result).Inc()
	}
}

// newScanners builds the configured scanners, or nil without any.
func newScanners(c Config) (*scan.Scanners, error) {
	s := &scan.Scanners{}
	if c.Rspamd != "" {
		r, err := scan.NewRspamd(c.Rspamd)
		if err != nil {
			return nil, fmt.Errorf("--rspamd: %w", err)
		}
		s.Spam = r
	}
	if c.Clamd != "" {
		cl, err := scan.NewClamd(c.Clamd)
		if err != nil {
			return nil, fmt.Errorf("--clamd: %w", err)
		}
		s.Virus = cl
	}
	if !s.Enabled() {
		return nil, nil
	}
	return s, nil
}

// contentDecision is what the end of DATA decides for a stored message.
type contentDecision struct {
	// Disposition is store.DispositionAccept, DispositionQuarantine or
	// DispositionReject.
	Disposition string
	// Rule names the policy rule that decided, for the log and the
	// verdicts object.
	Rule string
	// Reply is the refusal for DispositionReject, or a temporary failure
	// (Temporary) that stores nothing.
	Reply *smtp.SMTPError
	// Temporary means the message is not stored at all: the client
	// retries (a scanner failed closed).
	Temporary bool
	Reason    string
}

// decide applies the routes file's policy: to the verdicts. A definite
// verdict goes first: a refusal (virus, then spam), then a quarantine;
// only then does a failed scanner fail closed. A message larger than a
// scanner's limit is never failed closed: retrying would not help.
func decide(p *routing.Policy, res scan.Result, id string) contentDecision {
	var spam *routing.SpamPolicy
	var virus *routing.VirusPolicy
	fail := "open"
	if p != nil {
		spam, virus = p.Spam, p.Virus
		if p.Scanners != nil && p.Scanners.Fail != "" {
			fail = p.Scanners.Fail
		}
	}
	spamAt := func(limit *float64) bool {
		return res.Spam != nil && res.SpamErr == nil && limit != nil && res.Spam.Score >= *limit
	}
	infected := res.Virus != nil && res.VirusErr == nil && res.Virus.Result == scan.Infected
	virusRule := ""
	if virus != nil {
		virusRule = virus.Infected
	}
	switch {
	case infected && virusRule == "reject":
		sig := ""
		if len(res.Virus.Signatures) > 0 {
			sig = " (" + res.Virus.Signatures[0] + ")"
		}
		return contentDecision{Disposition: store.DispositionReject, Rule: ruleVirus, Reason: reasonVirus,
			Reply: smtpErr(554, "5.7.1", "Message refused: it contains a virus"+sig+"; reference "+id)}
	case spam != nil && spamAt(spam.RejectAt):
		return contentDecision{Disposition: store.DispositionReject, Rule: ruleSpamReject, Reason: reasonSpam,
			Reply: smtpErr(550, "5.7.1", "Message refused as spam; reference "+id)}
	case infected && virusRule == "quarantine":
		return contentDecision{Disposition: store.DispositionQuarantine, Rule: ruleVirus}
	case spam != nil && spamAt(spam.QuarantineAt):
		return contentDecision{Disposition: store.DispositionQuarantine, Rule: ruleSpamQuarantine}
	}
	failed := func(err error) bool { return err != nil && !errors.Is(err, scan.ErrTooLarge) }
	if fail == "closed" && (failed(res.SpamErr) || failed(res.VirusErr)) {
		return contentDecision{Disposition: store.DispositionReject, Rule: ruleScannersFail, Reason: reasonScanFailed, Temporary: true,
			Reply: smtpErr(451, "4.7.0", "Content scan failed temporarily; try again later")}
	}
	return contentDecision{Disposition: store.DispositionAccept}
}

// endOfData is what the gateway knows when a message's data has ended and
// its scan verdicts are in, before the message commits to the store.
type endOfData struct {
	Tx       *transaction
	Envelope message.Envelope
	Verdicts scan.Result
	// Decision is the policy's decision: the scanners', then the policy
	// hook's.
	Decision contentDecision
}

// scanGate is the store's view of the message when scanners are on or a
// policy hook is in force: the message data, passed through the scanners
// (scan.Tee, a plain pass-through without them) and the hook's header
// capture (hookGate, deferred). At the end of
// the data it waits for the verdicts, decides, asks the policy hook with
// them, writes the verdicts object and only then lets the store see EOF,
// so the raw object never commits without its verdicts. A scanner failing
// closed, or the hook refusing or deferring, fails the store's read
// instead, and nothing commits.
type scanGate struct {
	s       *session
	ctx     context.Context
	tee     *scan.Tee
	r       io.Reader // tee, or hook reading from tee
	hook    *hookGate // nil without a policy hook
	end     endOfData
	scanDur time.Duration
	scanned bool // scanners ran (else the gate only asks the hook)
	decided bool
	err     error
}

// attrs are the transaction log's attributes of the gate's decision.
func (g *scanGate) attrs() []any {
	d := g.end.Decision
	if !g.scanned {
		out := []any{"disposition", d.Disposition}
		if d.Rule != "" {
			out = append(out, "rule", d.Rule)
		}
		return out
	}
	return scanAttrs(g.end.Verdicts, d, g.scanDur)
}

// spamVirus gives the policy hook the verdicts.
func (g *scanGate) spamVirus() (*message.Spam, *message.Virus) {
	return g.end.Verdicts.Spam, g.end.Verdicts.Virus
}

var errScanRefused = errors.New("message not stored: content scan failed closed")

func (g *scanGate) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	g.finish()
	if g.err != nil {
		return n, g.err
	}
	return n, io.EOF
}

func (g *scanGate) finish() {
	// The wait for the verdicts and the decision, as one span of the
	// transaction (a no-op with tracing off).
	span := noSpan
	if trace.SpanFromContext(g.ctx).IsRecording() { // a child of smtp.data
		_, span = tracer.Start(g.ctx, "smtp.scan", trace.WithAttributes(telemetry.MessageID(g.end.Tx.id)))
	}
	defer func() {
		if span.IsRecording() {
			attrs := []attribute.KeyValue{attribute.String("letterbox.disposition", g.end.Decision.Disposition)}
			if v := g.end.Verdicts.Spam; v != nil {
				attrs = append(attrs, attribute.String("letterbox.spam_action", v.Action), attribute.Float64("letterbox.spam_score", v.Score))
			}
			if v := g.end.Verdicts.Virus; v != nil {
				attrs = append(attrs, attribute.String("letterbox.virus", v.Result))
			}
			if r := g.end.Decision.Rule; r != "" {
				attrs = append(attrs, attribute.String("letterbox.rule", r))
			}
			span.SetAttributes(attrs...)
		}
		span.End()
	}()
	eof := time.Now()
	g.end.Verdicts = g.tee.Wait()
	g.scanDur = time.Since(eof)
	if g.scanned {
		g.s.g.scanM.observe(g.end.Verdicts, g.scanDur)
	}
	cfg := g.s.g.routes.Get(g.ctx)
	var pol *routing.Policy
	if cfg != nil {
		pol = cfg.Policy
	}
	g.end.Decision = decide(pol, g.end.Verdicts, g.end.Tx.id)
	g.decided = true
	if g.end.Decision.Temporary {
		g.err = errScanRefused
		return
	}
	// HOOK POINT: the policy hook's end-of-DATA question, with the
	// verdicts. A reject or defer abandons the write (hook.go); a
	// quarantine (now, or asked at RCPT) quarantines a message the
	// scanners accepted.
	if h := g.hook; h != nil {
		h.ask()
		if h.reply != nil {
			g.err = errHookRefused
			return
		}
		if h.quarantine && g.end.Decision.Disposition == store.DispositionAccept {
			g.end.Decision = contentDecision{Disposition: store.DispositionQuarantine, Rule: ruleHook}
		}
	}
	d := g.end.Decision
	v := store.Verdicts{Spam: g.end.Verdicts.Spam, Virus: g.end.Verdicts.Virus, Disposition: d.Disposition, Rule: d.Rule}
	if d.Reply != nil {
		v.Code = fmt.Sprintf("%d %d.%d.%d", d.Reply.Code, d.Reply.EnhancedCode[0], d.Reply.EnhancedCode[1], d.Reply.EnhancedCode[2])
	}
	if err := store.PutJSON(g.ctx, g.s.g.store, store.VerdictsKey(g.end.Tx.id), v); err != nil {
		g.err = fmt.Errorf("store verdicts: %w", err)
	}
}

// scanAttrs are the log attributes of the verdicts.
func scanAttrs(res scan.Result, d contentDecision, dur time.Duration) []any {
	var out []any
	if v := res.Spam; v != nil {
		out = append(out, "spam_score", v.Score, "spam_action", v.Action)
		if res.SpamErr != nil {
			out = append(out, "spam_error", res.SpamErr.Error())
		}
	}
	if v := res.Virus; v != nil {
		out = append(out, "virus", v.Result)
		if len(v.Signatures) > 0 {
			out = append(out, "virus_signatures", v.Signatures)
		}
		if res.VirusErr != nil {
			out = append(out, "virus_error", res.VirusErr.Error())
		}
	}
	out = append(out, "disposition", d.Disposition, "scan_ms", float64(dur.Microseconds())/1000)
	if d.Rule != "" {
		out = append(out, "rule", d.Rule)
	}
	return out
}

// scanEnvelope is what the scanners are told.
func (s *session) scanEnvelope(tx *transaction, env message.Envelope) scan.Envelope {
	return scan.Envelope{From: tx.from, Rcpts: tx.rcpts, IP: env.ClientIP, Helo: env.HELO, QueueID: tx.id, User: env.AuthUser}
}

// scanTimeout is policy.scanners.timeout, or the default.
func scanTimeout(cfg *routing.Config) time.Duration {
	if cfg != nil && cfg.Policy != nil && cfg.Policy.Scanners != nil && cfg.Policy.Scanners.Timeout > 0 {
		return time.Duration(cfg.Policy.Scanners.Timeout)
	}
	return scan.DefaultTimeout
}

// settle acts on a stored message's decision: a quarantined or refused
// message is copied to quarantine/ with its verdicts (nothing is deleted:
// its raw/ object, which ingest does not route, expires with raw/). It
// returns the reply for a refusal, or nil to answer 250.
func (s *session) settle(g *scanGate, log *slog.Logger) *smtp.SMTPError {
	d := g.end.Decision
	if d.Disposition == store.DispositionAccept {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.g.hard, s.g.cfg.StoreTimeout)
	defer cancel()
	if err := store.CopyToQuarantine(ctx, s.g.store, g.end.Tx.id); err != nil {
		// The raw object has the verdicts that keep ingest from
		// routing it.
		log.Error("cannot copy the message to quarantine/; it stays under raw/ only, not routed", "err", err, "rule", d.Rule)
	}
	return d.Reply
}
