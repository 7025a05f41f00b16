package smtpgw

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

// backend is go-smtp's Backend for one listener.
type backend struct {
	g        *Gateway
	listener string
}

// NewSession is called on the first EHLO/HELO, and again after STARTTLS.
func (b *backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c := connOf(sc.Conn())
	if c == nil {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error: unknown connection"}
	}
	s := &session{g: b.g, c: c, sc: sc, submission: b.listener == listenerSubmission}
	c.mu.Lock()
	c.top = sc.Conn()
	c.helo = sc.Hostname()
	first := false
	if st, ok := sc.TLSConnectionState(); ok && c.tlsState == nil {
		c.tlsState, first = &st, true
	}
	c.mu.Unlock()
	if first {
		c.log.Debug("TLS started", "tls_version", tls.VersionName(c.tlsState.Version),
			"tls_cipher", tls.CipherSuiteName(c.tlsState.CipherSuite))
	}
	return s, nil
}

// session is go-smtp's Session: one per EHLO up to STARTTLS. The state
// that spans the whole connection lives in conn.
type session struct {
	g          *Gateway
	c          *conn
	sc         *smtp.Conn
	submission bool
	authUser   string
	tx         *transaction
}

// transaction is one mail transaction, from MAIL FROM to the reply to
// DATA (or RSET).
type transaction struct {
	id    string // the message id, assigned at MAIL FROM
	log   *slog.Logger
	start time.Time
	from  string
	opts  smtp.MailOptions
	rcpts []string
	spf   *spfResult
	rate  *rateReservation // uncounted unless the message is accepted
	// hookAsked counts the policy hook's questions; hookQuarantine is set
	// when it answered quarantine at RCPT (hook.go).
	hookAsked      int
	hookQuarantine bool
	finished       bool
	ctx            context.Context // holds span, the root of the message's trace (trace.go)
	span           trace.Span
}

func smtpErr(code int, enhanced string, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: parseEnhanced(enhanced, code), Message: msg}
}

// parseEnhanced reads an RFC 3463 code "c.s.d"; an unreadable one becomes
// the generic "c.0.0" of the reply's class.
func parseEnhanced(s string, code int) smtp.EnhancedCode {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) == 3 {
		ok := true
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 999 {
				ok = false
				break
			}
			ec[i] = n
		}
		if ok && ec[0] == code/100 {
			return ec
		}
	}
	return smtp.EnhancedCode{code / 100, 0, 0}
}

// reject counts an error reply for the session's error limit and returns
// it, or returns 421 4.7.0 when the session has had too many.
func (s *session) reject(e *smtp.SMTPError) error {
	if s.c.countError() {
		s.g.m.rejections.WithLabelValues(reasonTooManyErrors).Inc()
		s.logger().Warn("too many errors; disconnecting", "code", 421, "reason", reasonTooManyErrors, "errors", s.c.g.cfg.MaxErrors)
		s.c.setCode(421)
		return smtpErr(421, "4.7.0", fmt.Sprintf("Too many errors (%d) in this session; closing the connection", s.g.cfg.MaxErrors+1))
	}
	s.c.setCode(e.Code)
	return e
}

func (s *session) logger() *slog.Logger {
	if s.tx != nil {
		return s.tx.log
	}
	return s.c.log
}

var errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	ctx := context.Background()
	if s.tx != nil {
		// go-smtp allows a second MAIL; RFC 5321 §4.1.4 says it is a
		// sequence error.
		return s.reject(smtpErr(503, "5.5.1", "Nested MAIL command: send RSET first"))
	}
	if s.submission && s.authUser == "" {
		s.g.m.rejections.WithLabelValues(reasonAuthRequired).Inc()
		return s.reject(smtpErr(530, "5.7.0", "Authentication required: use STARTTLS, then AUTH, before MAIL FROM"))
	}
	if err := checkAddress(from, opts != nil && opts.UTF8, "5.1.7", "sender"); err != nil {
		return s.reject(err)
	}
	if !s.c.beginTx() {
		s.c.setCode(421)
		s.c.closeAfterReply(reasonShuttingDown)
		return errShuttingDown
	}
	tx := &transaction{id: s.g.ids.New(), start: time.Now(), from: from}
	if opts != nil {
		tx.opts = *opts
	}
	tx.log = s.c.log.With("message_id", tx.id)
	s.startTxSpan(tx)
	s.tx = tx
	mctx, span := tx.step(ctx, "smtp.mail")
	err := s.mailPolicy(mctx, tx)
	endStep(span, replyErr(err))
	if err != nil {
		s.endTx(err.Code, "refused", nil)
		s.tx = nil
		s.c.endTx()
		return s.reject(err)
	}
	return nil
}

// checkAddress refuses envelope addresses with control characters (RFC
// 5321 §4.1.2 allows none) and, unless the transaction declared SMTPUTF8,
// non-ASCII ones (RFC 6531 §3.4 gives 553 5.6.7).
func checkAddress(addr string, utf8 bool, badSyntax, role string) *smtp.SMTPError {
	ascii := true
	for _, r := range addr {
		switch {
		case r < 0x20 || r == 0x7f:
			return smtpErr(501, badSyntax, "Bad "+role+" address syntax: control characters are not allowed")
		case r >= 0x80:
			ascii = false
		}
	}
	if !ascii && !utf8 {
		return smtpErr(553, "5.6.7", "Non-ASCII "+role+" address requires the SMTPUTF8 extension (RFC 6531)")
	}
	return nil
}

// mailPolicy applies the checks decided at MAIL FROM: the client's
// message rate (clients.go), DNS blocklists and SPF. Authenticated
// submissions skip all three; clients in policy.clients.allow skip the
// first two.
func (s *session) mailPolicy(ctx context.Context, tx *transaction) *smtp.SMTPError {
	if s.authUser != "" {
		return nil
	}
	if !s.c.allowed {
		if err := s.checkRate(ctx, tx); err != nil {
			return err
		}
	}
	ip := s.c.remote.Addr()
	if res := s.c.dnsblListing(ctx); res != nil && res.zone != "" {
		s.g.m.rejections.WithLabelValues(reasonDNSBL).Inc()
		tx.log.Warn("client listed in DNS blocklist", "reason", reasonDNSBL, "zone", res.zone, "answer", res.answer.String(), "code", 554)
		return smtpErr(554, "5.7.1", fmt.Sprintf("Service unavailable; client [%s] blocked using %s", ip, res.zone))
	}
	if s.g.cfg.SPFPolicy == SPFOff {
		return nil
	}
	res := s.g.checkSPF(ctx, ip, s.c.helo, tx.from)
	tx.spf = res
	tx.log.Info("SPF", "spf", string(res.result), "spf_domain", res.domain, "mail_from", tx.from)
	if s.g.cfg.SPFPolicy != SPFReject {
		return nil
	}
	switch res.result {
	case spfFail:
		s.g.m.rejections.WithLabelValues(reasonSPFFail).Inc()
		return smtpErr(550, "5.7.23", fmt.Sprintf("SPF check failed: %s does not designate %s as permitted sender (RFC 7208)", res.domain, ip))
	case spfTempError:
		s.g.m.rejections.WithLabelValues(reasonSPFTempError).Inc()
		return smtpErr(451, "4.7.24", fmt.Sprintf("SPF check of %s failed temporarily (DNS error); try again later", res.domain))
	}
	return nil
}

// Rcpt adds a recipient the routes accept (RFC 5321 §4.1.1.3). go-smtp
// has already applied the recipient limit (452 4.5.3).
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) (reply error) {
	ctx := context.Background()
	tx := s.tx
	if tx == nil {
		return s.reject(smtpErr(503, "5.5.1", "Send MAIL FROM first"))
	}
	ctx, span := tx.step(ctx, "smtp.rcpt")
	defer func() { endStep(span, reply) }()
	if err := checkAddress(to, tx.opts.UTF8, "5.1.3", "recipient"); err != nil {
		return s.reject(err)
	}
	cfg := s.g.routes.Get(ctx)
	if cfg == nil {
		tx.log.Error("no routes configuration loaded", "rcpt", to, "code", 451)
		s.c.setCode(451)
		return smtpErr(451, "4.3.0", "Configuration not available; try again later")
	}
	if err := cfg.CheckRecipient(ctx, tx.from, to); err != nil {
		var rej *routing.Rejection
		if !errors.As(err, &rej) {
			tx.log.Error("recipient check failed", "rcpt", to, "err", err, "code", 451)
			s.c.setCode(451)
			return smtpErr(451, "4.3.0", "Recipient check failed temporarily; try again later")
		}
		s.g.m.rejections.WithLabelValues(rej.Reason).Inc()
		attrs := []any{"rcpt", to, "mail_from", tx.from, "code", rej.Code, "enhanced", rej.Enhanced, "reason", rej.Reason}
		if rej.Route != "" {
			attrs = append(attrs, "route", rej.Route)
		}
		tx.log.Info("recipient refused", attrs...)
		return s.reject(&smtp.SMTPError{Code: rej.Code, EnhancedCode: parseEnhanced(rej.Enhanced, rej.Code), Message: rej.Message})
	}
	if err := s.rcptHook(ctx, tx, to); err != nil {
		return s.reject(err)
	}
	tx.rcpts = append(tx.rcpts, to)
	return nil
}

// Reset ends the transaction (RSET, a new EHLO, or after DATA).
func (s *session) Reset() {
	if s.tx != nil && !s.tx.finished {
		s.endTx(0, "abandoned", nil)
	}
	s.tx = nil
	s.c.endTx()
}

// Logout is called when the connection closes or STARTTLS succeeds.
func (s *session) Logout() error {
	s.Reset()
	return nil
}

// endTx logs the transaction's one summary line and counts it.
func (s *session) endTx(code int, result string, extra []any) {
	tx := s.tx
	if tx == nil || tx.finished {
		return
	}
	tx.finished = true
	tx.endTxSpan(code, result)
	if code != 250 {
		tx.rate.cancel()
	}
	s.g.m.transactions.WithLabelValues(s.c.listener, strconv.Itoa(code)).Inc()
	attrs := []any{
		"event", "transaction",
		"helo", s.c.helo,
		"mail_from", tx.from,
		"rcpt_count", len(tx.rcpts),
		"tls", s.isTLS(),
		"code", code,
		"result", result,
		"duration_ms", time.Since(tx.start).Milliseconds(),
	}
	if s.authUser != "" {
		attrs = append(attrs, "auth_user", s.authUser)
	}
	attrs = append(attrs, extra...)
	level := slog.LevelInfo
	if code >= 400 && code < 500 && result != "refused" {
		level = slog.LevelWarn
	}
	tx.log.Log(context.Background(), level, "transaction", attrs...)
}

func (s *session) isTLS() bool {
	_, ok := s.sc.TLSConnectionState()
	return ok
}

// envelope is the envelope stored with the message.
func (s *session) envelope(tx *transaction, now time.Time) message.Envelope {
	env := message.Envelope{
		MailFrom:   tx.from,
		RcptTo:     tx.rcpts,
		ClientIP:   s.c.remote.Addr().String(),
		HELO:       s.c.helo,
		SMTPUTF8:   tx.opts.UTF8,
		AuthUser:   s.authUser,
		ReceivedAt: now.UTC(),
		Source:     "gateway",
	}
	if st, ok := s.sc.TLSConnectionState(); ok {
		env.TLS = true
		env.TLSVersion = tls.VersionName(st.Version)
		env.TLSCipher = tls.CipherSuiteName(st.CipherSuite)
	}
	return env
}

// Data receives the message and stores it (RFC 5321 §4.1.1.4; BDAT, RFC
// 3030, arrives here too). The reply is 250 only once store.PutRaw has
// returned nil.
func (s *session) Data(r io.Reader) (reply error) {
	tx := s.tx
	if tx == nil || len(tx.rcpts) == 0 {
		return s.reject(smtpErr(503, "5.5.1", "Send MAIL FROM and RCPT TO first"))
	}
	now := time.Now()
	env := s.envelope(tx, now)
	body := newBodyReader(r, s.sc.Conn(), s.g.cfg.DataTimeout, s.g.cfg.MaxMessageBytes)
	defer body.done()
	head := s.traceHeaders(tx, env, now)

	// The write is not cut short by a graceful shutdown, only when its
	// deadline passes (Gateway.Shutdown) or the store takes too long.
	ctx, cancel := context.WithCancel(s.g.hard)
	defer cancel()
	// The DATA span goes into the write's context (scanners' spans, when
	// they run, are its children too).
	if _, span := tx.step(ctx, "smtp.data"); span.IsRecording() {
		ctx = trace.ContextWithSpan(ctx, span)
		defer func() { span.SetAttributes(attribute.Int64(telemetry.AttrSize, body.n)); endStep(span, reply) }()
	}
	var storeTimer *time.Timer
	body.onEOF = func() { storeTimer = time.AfterFunc(s.g.cfg.StoreTimeout, cancel) }
	var src io.Reader = io.MultiReader(strings.NewReader(head), body)
	var gate *scanGate // non-nil with scanners or a policy hook
	var hook *hookGate // non-nil when a policy hook is in force (hook.go)
	var err error
	if s.g.scanners.Enabled() || s.g.policyHook(ctx) != nil || tx.hookQuarantine {
		var sc scan.Scanners // none: the gate still asks the hook and records its decision
		if s.g.scanners.Enabled() {
			sc = *s.g.scanners
			sc.Timeout = scanTimeout(s.g.routes.Get(ctx))
		}
		tee := sc.Tee(ctx, s.scanEnvelope(tx, env), src)
		gate = &scanGate{s: s, ctx: ctx, tee: tee, r: tee, end: endOfData{Tx: tx, Envelope: env}, scanned: sc.Enabled()}
		// POLICY HOOK (end of DATA): the gate asks it once the verdicts are
		// in, before the verdicts object and the commit.
		if hook = s.newHookGate(ctx, tx, tee, gate.spamVirus); hook != nil {
			hook.deferred = true
			gate.r, gate.hook = hook, hook
		}
		_, err = store.PutRawScanned(ctx, s.g.store, tx.id, env, gate)
		tee.Wait() // stops the scanners if the store ended early
	} else {
		_, err = store.PutRaw(ctx, s.g.store, tx.id, env, src)
	}
	if storeTimer != nil {
		storeTimer.Stop()
	}
	var storeDur time.Duration
	if !body.eofAt.IsZero() {
		storeDur = time.Since(body.eofAt)
	}
	result := func(extra ...any) []any {
		out := []any{"size", body.n}
		if !body.eofAt.IsZero() {
			out = append(out, "store_ms", float64(storeDur.Microseconds())/1000)
		}
		return append(out, extra...)
	}
	defer func() { s.g.m.bytes.Add(float64(body.n)) }()

	var scanned []any
	if gate != nil && gate.decided {
		scanned = gate.attrs()
	}

	switch {
	case body.err == nil && err == nil:
		observe(ctx, s.g.m.storeWrite.WithLabelValues("ok"), storeDur.Seconds())
		observe(ctx, s.g.m.messageSize, float64(body.n))
		s.c.mu.Lock()
		s.c.stored++
		s.c.mu.Unlock()
		if gate != nil {
			d := gate.end.Decision
			if rep := s.settle(gate, tx.log); rep != nil {
				s.g.m.rejections.WithLabelValues(d.Reason).Inc()
				tx.log.Warn("message refused after scanning; kept under quarantine/", append([]any{"code", rep.Code, "reason", d.Reason}, scanned...)...)
				s.endTx(rep.Code, "refused", result(append([]any{"reason", d.Reason}, scanned...)...))
				return s.reject(rep)
			}
			if d.Disposition == store.DispositionQuarantine {
				tx.log.Info("message quarantined after scanning", scanned...)
				s.c.setCode(250)
				s.endTx(250, "quarantined", result(scanned...))
				return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + tx.id}
			}
		}
		s.c.setCode(250)
		s.endTx(250, "stored", result(scanned...))
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + tx.id}

	case body.err == nil && hook.refused(err):
		// POLICY HOOK: refused at the end of DATA; nothing was stored.
		return s.hookRefused(hook, result())

	case errors.Is(body.err, errBareLF) || errors.Is(body.err, errBareCR):
		if !body.bdat {
			// Where the client thinks the data ends is in doubt: answer
			// and disconnect, so nothing after it is read as a command.
			// BDAT counts its bytes, so its session can go on.
			s.c.closeAfterReply(reasonBareNewline)
		}
		s.g.m.rejections.WithLabelValues(reasonBareNewline).Inc()
		which := "<LF>"
		if errors.Is(body.err, errBareCR) {
			which = "<CR>"
		}
		s.endTx(550, "refused", result("reason", reasonBareNewline, "offset", body.errAt))
		s.c.setCode(550)
		return smtpErr(550, "5.5.2", "Message refused: bare "+which+" in message data; lines must end with <CR><LF> (RFC 5321 §2.3.8)")

	case errors.Is(body.err, errTooLarge) || errors.Is(body.err, smtp.ErrDataTooLarge):
		body.drain()
		if body.dot == nil {
			// go-smtp discards what is left after we return; give it
			// the RFC 5321 §4.5.3.2.6 ten minutes.
			_ = s.sc.Conn().SetReadDeadline(time.Now().Add(10 * time.Minute))
		}
		s.g.m.rejections.WithLabelValues(reasonSize).Inc()
		s.endTx(552, "refused", result("reason", reasonSize))
		return s.reject(smtpErr(552, "5.3.4", fmt.Sprintf("Message too big: the limit is %d bytes", s.g.cfg.MaxMessageBytes)))

	case errors.Is(body.err, smtp.ErrTooLongLine):
		s.c.closeAfterReply(reasonLineTooLong)
		s.g.m.rejections.WithLabelValues(reasonLineTooLong).Inc()
		s.endTx(500, "refused", result("reason", reasonLineTooLong))
		s.c.setCode(500)
		return smtpErr(500, "5.5.2", "Line too long: message lines must not exceed 1000 bytes (RFC 5321 §4.5.3.1.6)")

	case errors.Is(body.err, smtp.ErrDataReset):
		// RSET (or the end of the session) between BDAT chunks; go-smtp
		// answers the RSET itself.
		s.endTx(0, "aborted", result("err", body.err.Error()))
		return body.err

	case body.err != nil:
		// The client timed out or went away: nothing is stored. Say why,
		// if it still listens, and end the session.
		s.c.closeAfterReply("data_read_error")
		s.c.setCode(421)
		s.endTx(421, "aborted", result("err", body.err.Error()))
		var ne net.Error
		if errors.As(body.err, &ne) && ne.Timeout() {
			return smtpErr(421, "4.4.2", fmt.Sprintf("Timeout: no message data for %v; closing the connection", s.g.cfg.DataTimeout))
		}
		return smtpErr(421, "4.4.2", "Error reading message data; closing the connection")

	case gate != nil && gate.decided && gate.end.Decision.Temporary:
		// A scanner failed closed: nothing was stored; the client retries.
		d := gate.end.Decision
		s.g.m.rejections.WithLabelValues(d.Reason).Inc()
		tx.log.Warn("message deferred: content scan failed", append([]any{"code", d.Reply.Code, "reason", d.Reason}, scanned...)...)
		s.c.setCode(d.Reply.Code)
		s.endTx(d.Reply.Code, "refused", result(append([]any{"reason", d.Reason}, scanned...)...))
		return d.Reply

	default:
		body.drain()
		s.g.m.storeWrite.WithLabelValues("error").Observe(storeDur.Seconds())
		s.c.setCode(451)
		s.endTx(451, "store_failed", result("err", err.Error()))
		return smtpErr(451, "4.3.0", "Temporary failure storing the message; try again later")
	}
}

// AuthMechanisms lists AUTH mechanisms (RFC 4954): PLAIN and LOGIN on the
// submission listener once TLS is up, none on the MX listener.
func (s *session) AuthMechanisms() []string {
	if !s.submission || !s.isTLS() {
		return nil
	}
	return []string{sasl.Plain, "LOGIN"}
}

// Auth starts an AUTH exchange, unless the client's address has failed too
// often recently.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.submission {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.isTLS() {
		// RFC 4954 §4: passwords never cross the network in the clear.
		return nil, s.reject(smtpErr(538, "5.7.11", "Encryption required for requested authentication mechanism: use STARTTLS first"))
	}
	ip := s.c.remote.Addr()
	if !s.g.authLim.ok(ip) {
		s.g.m.authAttempts.WithLabelValues(mech, "rate_limited").Inc()
		s.g.m.rejections.WithLabelValues(reasonAuthRateLimit).Inc()
		s.c.log.Warn("AUTH refused: too many failures from this address", "reason", reasonAuthRateLimit, "code", 454)
		return nil, s.reject(smtpErr(454, "4.7.0", "Too many failed authentication attempts from your address; try again later"))
	}
	check := func(identity, user, pass string) error {
		if (identity == "" || identity == user) && s.g.users.check(user, pass) {
			s.authUser = user
			s.c.mu.Lock()
			s.c.authUser = user
			s.c.mu.Unlock()
			s.g.m.authAttempts.WithLabelValues(mech, "ok").Inc()
			s.c.log.Info("AUTH succeeded", "auth_user", user, "mechanism", mech)
			return nil
		}
		s.g.authLim.fail(ip)
		s.g.m.authAttempts.WithLabelValues(mech, "failed").Inc()
		s.g.m.rejections.WithLabelValues(reasonAuthFailed).Inc()
		s.c.log.Warn("AUTH failed", "user", user, "mechanism", mech, "code", 535)
		return s.reject(smtp.ErrAuthFailed)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case "LOGIN":
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): username and password, each prompted.
type loginServer struct {
	check    func(identity, user, pass string) error
	user     string
	haveUser bool
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch {
	case response == nil && !l.haveUser:
		return []byte("Username:"), false, nil
	case !l.haveUser:
		l.user, l.haveUser = string(response), true
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check("", l.user, string(response))
	}
}
