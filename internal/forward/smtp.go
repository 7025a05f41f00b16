package forward

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
)

// dnsTimeout bounds each DNS query; dialTimeout each connection attempt,
// so that one dead MX host leaves time for the next.
const (
	dnsTimeout  = 10 * time.Second
	dialTimeout = 30 * time.Second
)

// resolver sends every query to one DNS server (or the system's), with a
// timeout per query and absolute names, as internal/mailauth does.
type resolver struct {
	r *net.Resolver
}

func newResolver(addr string) (*resolver, error) {
	if addr == "" {
		return &resolver{r: net.DefaultResolver}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("forward: resolver %q: want host:port", addr)
	}
	d := net.Dialer{Timeout: dnsTimeout}
	return &resolver{r: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}, nil
}

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (r *resolver) lookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	return r.r.LookupMX(ctx, fqdn(domain))
}

func (r *resolver) lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	return r.r.LookupNetIP(ctx, "ip", fqdn(host))
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// group is one SMTP transaction's recipients: all of them for a smart
// host, those of one domain for MX delivery.
type group struct {
	domain string
	rcpts  []string
}

func (f *Forwarder) groups(a *routing.ForwardAction, rcpts []string) []group {
	if a.Smarthost != "" {
		return []group{{rcpts: rcpts}}
	}
	var gs []group
	idx := map[string]int{}
	for _, r := range rcpts {
		_, d, _ := splitAddr(r)
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		i, ok := idx[d]
		if !ok {
			i = len(gs)
			idx[d] = i
			gs = append(gs, group{domain: d})
		}
		gs[i].rcpts = append(gs[i].rcpts, r)
	}
	return gs
}

// outcome is what became of one recipient in one attempt.
type outcome struct {
	rcpt string
	host string
	code int   // the SMTP reply code, 0 when there was none
	err  error // classified; nil when delivered
}

func failAll(rcpts []string, host string, code int, err error) []outcome {
	out := make([]outcome, len(rcpts))
	for i, r := range rcpts {
		out[i] = outcome{rcpt: r, host: host, code: code, err: err}
	}
	return out
}

// tlsMode is how a connection uses TLS.
type tlsMode int

const (
	tlsNone          tlsMode = iota
	tlsOpportunistic         // STARTTLS when offered, certificate not checked, plain text if the handshake fails
	tlsRequired              // STARTTLS, certificate checked against the host name
	tlsImplicit              // TLS from the first byte (RFC 8314), certificate checked
)

func modeFor(a *routing.ForwardAction) tlsMode {
	if a.Smarthost != "" {
		if _, port, _ := net.SplitHostPort(a.Smarthost); port == "465" {
			return tlsImplicit
		}
	}
	switch {
	case a.StartTLS != nil && *a.StartTLS:
		return tlsRequired
	case a.StartTLS != nil:
		return tlsNone
	case a.Username != "":
		return tlsRequired
	}
	return tlsOpportunistic
}

// target is one host to try, with its port.
type target struct {
	host string
	port string
}

// targets lists the hosts to try in order, or fails the whole group.
func (f *Forwarder) targets(ctx context.Context, a *routing.ForwardAction, g group) ([]target, error) {
	if a.Smarthost != "" {
		host, port, err := net.SplitHostPort(a.Smarthost)
		if err != nil {
			return nil, fault.Permanentf("forward: smarthost %q: %w", a.Smarthost, err)
		}
		return []target{{host, port}}, nil
	}
	port := strconv.Itoa(f.cfg.MXPort)
	if _, err := netip.ParseAddr(strings.Trim(g.domain, "[]")); err == nil {
		return nil, fault.Permanentf("forward: %s: address literals are not delivered to", g.domain)
	}
	mxs, err := f.res.lookupMX(ctx, g.domain)
	switch {
	case isNotFound(err):
		// RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
		return []target{{g.domain, port}}, nil
	case err != nil:
		return nil, fault.Temporaryf("forward: MX lookup for %s: %w", g.domain, err)
	}
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, fault.Permanentf("forward: %s does not accept mail (null MX, RFC 7505)", g.domain)
	}
	slices.SortStableFunc(mxs, func(x, y *net.MX) int { return cmp.Compare(x.Pref, y.Pref) })
	var ts []target
	for _, mx := range mxs {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			ts = append(ts, target{h, port})
		}
	}
	if len(ts) == 0 {
		return nil, fault.Permanentf("forward: %s has no usable MX host", g.domain)
	}
	return ts, nil
}

// sendOptions are the transaction's envelope parameters.
type sendOptions struct {
	sender string
	utf8   bool
	envID  string
}

// deliver runs one group's transaction, trying hosts and addresses in
// order until one answers past EHLO/TLS/AUTH (RFC 5321 §5.1). From MAIL
// on, the host's answer is final for this attempt.
func (f *Forwarder) deliver(ctx context.Context, a *routing.ForwardAction, g group, p *payload, opts sendOptions) []outcome {
	ts, err := f.targets(ctx, a, g)
	if err != nil {
		return failAll(g.rcpts, "", 0, err)
	}
	policy := f.cfg.Policy
	if a.AllowLocal {
		policy = egress.Policy{AllowLoopback: true, AllowPrivate: true}
	}
	var (
		lastErr  error
		lastCode int
		lastHost string
		anyTemp  bool
	)
	note := func(host string, code int, err error) {
		lastHost, lastCode, lastErr = host, code, err
		if fault.IsTemporary(err) {
			anyTemp = true
		}
	}
	for _, t := range ts {
		addrs, err := f.res.lookupIP(ctx, t.host)
		if err != nil {
			if isNotFound(err) {
				note(t.host, 0, fault.Permanentf("forward: %s: no such host", t.host))
			} else {
				note(t.host, 0, fault.Temporaryf("forward: address lookup for %s: %w", t.host, err))
			}
			continue
		}
		for _, ip := range addrs {
			if ctx.Err() != nil {
				return failAll(g.rcpts, t.host, 0, f.timeoutErr(ctx, t.host))
			}
			mode := modeFor(a)
			for {
				out, next, code, err := f.session(ctx, policy, t, ip, mode, a, g, p, opts)
				if err == errTLSFallback {
					mode = tlsNone // RFC 7435: opportunistic, so try in clear
					continue
				}
				if !next {
					return out
				}
				note(t.host, code, err)
				break
			}
		}
	}
	if lastErr == nil {
		lastErr = fault.Temporaryf("forward: no address to connect to for %s", cmp.Or(g.domain, a.Smarthost))
	}
	if anyTemp && !fault.IsTemporary(lastErr) {
		lastErr = fault.Temporary(lastErr)
	}
	return failAll(g.rcpts, lastHost, lastCode, lastErr)
}

// errTLSFallback asks deliver to reconnect without STARTTLS.
var errTLSFallback = errors.New("opportunistic STARTTLS failed")

func (f *Forwarder) timeoutErr(ctx context.Context, host string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fault.Temporaryf("forward: %s: no response within the attempt's timeout", host)
	}
	return fault.Temporaryf("forward: %s: %w", host, ctx.Err())
}

// smtpErr classifies an error from the conversation: a reply keeps its
// code (4xx temporary, 5xx permanent), anything else is temporary.
func (f *Forwarder) smtpErr(ctx context.Context, host, step string, err error) (int, error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		msg := se.Message
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		text := fmt.Sprintf("forward: %s: %s: %d", host, step, se.Code)
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != smtp.EnhancedCodeNotSet {
			text += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		text += " " + msg
		if se.Code >= 500 {
			return se.Code, fault.Permanent(errors.New(text))
		}
		return se.Code, fault.Temporary(errors.New(text))
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return f.smtpErr(ctx, host, step, &smtp.SMTPError{Code: te.Code, EnhancedCode: smtp.NoEnhancedCode, Message: te.Msg})
	}
	if ctx.Err() != nil {
		return 0, f.timeoutErr(ctx, host)
	}
	if errors.Is(err, egress.ErrForbidden) {
		return 0, fault.Permanentf("forward: %s: %s: %w", host, step, err)
	}
	return 0, fault.Temporaryf("forward: %s: %s: %w", host, step, err)
}

// session talks to one address. next says the failure happened before
// MAIL and another host may be tried; otherwise out is final.
func (f *Forwarder) session(ctx context.Context, policy egress.Policy, t target, ip netip.Addr, mode tlsMode,
	a *routing.ForwardAction, g group, p *payload, opts sendOptions) (out []outcome, next bool, code int, err error) {
	host := t.host
	addr := net.JoinHostPort(ip.String(), t.port)
	conn, err := policy.Dialer(dialTimeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		code, err = f.smtpErr(ctx, host, "connect "+addr, err)
		return nil, true, code, err
	}
	// The attempt's deadline ends the conversation wherever it is.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	secure := false
	var c *smtp.Client
	switch mode {
	case tlsImplicit:
		tc := tls.Client(conn, f.tlsConfig(host, true))
		if err := tc.HandshakeContext(ctx); err != nil {
			code, err = f.smtpErr(ctx, host, "TLS handshake", err)
			return nil, true, code, err
		}
		c, secure = smtp.NewClient(tc), true
	case tlsNone:
		c = smtp.NewClient(conn)
	default:
		tc, offered, err := f.starttls(ctx, conn, host, mode == tlsRequired)
		switch {
		case err != nil && mode == tlsOpportunistic && offered:
			return nil, true, 0, errTLSFallback
		case err != nil:
			code, err = f.smtpErr(ctx, host, "STARTTLS", err)
			return nil, true, code, err
		}
		c, secure = smtp.NewClient(tc), offered
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.CommandTimeout = max(time.Until(dl), time.Second)
		c.SubmissionTimeout = c.CommandTimeout
	}
	if err := c.Hello(f.cfg.HELO); err != nil {
		code, err = f.smtpErr(ctx, host, "EHLO", err)
		return nil, true, code, err
	}
	if a.Username != "" {
		if !secure {
			// A validated routes file never gets here (credentials imply
			// required TLS); checked all the same.
			err := fault.Permanentf("forward: %s: refusing to send credentials without TLS", host)
			return failAll(g.rcpts, host, 0, err), false, 0, nil
		}
		if !c.SupportsAuth(sasl.Plain) {
			err := fault.Permanentf("forward: %s does not offer AUTH PLAIN", host)
			return failAll(g.rcpts, host, 0, err), false, 0, nil
		}
		pass := f.cfg.Getenv(a.PasswordEnv)
		if pass == "" {
			err := fault.Permanentf("forward: password_env %s is empty", a.PasswordEnv)
			return failAll(g.rcpts, host, 0, err), false, 0, nil
		}
		if err := c.Auth(sasl.NewPlainClient("", a.Username, pass)); err != nil {
			code, err := f.smtpErr(ctx, host, "AUTH", err)
			return failAll(g.rcpts, host, code, err), false, 0, nil
		}
	}
	return f.transaction(ctx, c, conn, host, g, p, opts), false, 0, nil
}

// transaction sends MAIL, RCPT for each recipient, and the message.
func (f *Forwarder) transaction(ctx context.Context, c *smtp.Client, conn net.Conn, host string, g group, p *payload, opts sendOptions) []outcome {
	if opts.utf8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return failAll(g.rcpts, host, 0, fault.Permanentf("forward: %s does not support SMTPUTF8 (RFC 6531), which this message needs", host))
		}
	}
	body, size, err := p.reader(ctx)
	if err != nil {
		return failAll(g.rcpts, host, 0, err)
	}
	defer body.Close()
	mo := &smtp.MailOptions{Size: size, UTF8: opts.utf8, Return: smtp.DSNReturnHeaders, EnvelopeID: opts.envID}
	if err := c.Mail(opts.sender, mo); err != nil {
		code, err := f.smtpErr(ctx, host, "MAIL FROM", err)
		return failAll(g.rcpts, host, code, err)
	}
	var (
		out      []outcome
		accepted []string
	)
	for _, r := range g.rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			code, err := f.smtpErr(ctx, host, "RCPT TO <"+r+">", err)
			out = append(out, outcome{rcpt: r, host: host, code: code, err: err})
			if code == 0 {
				// The connection is gone: the others fail the same way.
				for _, rest := range g.rcpts[len(out)+len(accepted):] {
					out = append(out, outcome{rcpt: rest, host: host, err: err})
				}
				return append(out, failAll(accepted, host, 0, err)...)
			}
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		c.Reset()
		c.Quit()
		return out
	}
	w, err := c.Data()
	if err != nil {
		code, err := f.smtpErr(ctx, host, "DATA", err)
		return append(out, failAll(accepted, host, code, err)...)
	}
	src := &readErr{r: body}
	if _, err := io.Copy(w, src); err != nil {
		// Never end DATA after a partial copy: closing the connection
		// without the final dot makes the server discard the message.
		conn.Close()
		if src.err != nil {
			err := fault.Temporaryf("forward: read %s: %w", p.key, src.err)
			return append(out, failAll(accepted, host, 0, err)...)
		}
		code, err := f.smtpErr(ctx, host, "sending the message", err)
		return append(out, failAll(accepted, host, code, err)...)
	}
	if err := w.Close(); err != nil {
		code, err := f.smtpErr(ctx, host, "end of DATA", err)
		return append(out, failAll(accepted, host, code, err)...)
	}
	c.Quit()
	for _, r := range accepted {
		out = append(out, outcome{rcpt: r, host: host, code: 250})
	}
	return out
}

// readErr remembers a read error other than EOF.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

func (f *Forwarder) tlsConfig(host string, verify bool) *tls.Config {
	cfg := &tls.Config{}
	if f.cfg.TLS != nil {
		cfg = f.cfg.TLS.Clone()
	}
	cfg.ServerName = strings.TrimSuffix(host, ".")
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if !verify {
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// starttls reads the greeting, says EHLO with our name and upgrades the
// connection (RFC 3207). go-smtp's client can only do this itself after an
// "EHLO localhost", so the exchange is done here, and the client then
// starts on the upgraded connection with a synthetic greeting and says
// EHLO again, as RFC 3207 §4.2 requires. offered says the server offered
// STARTTLS (and the returned connection is TLS when err is nil); when it
// did not and TLS is not required, the plain connection is returned.
func (f *Forwarder) starttls(ctx context.Context, conn net.Conn, host string, require bool) (net.Conn, bool, error) {
	tp := textproto.NewConn(nopCloser{conn})
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, err
	}
	offered := false
	id, err := tp.Cmd("EHLO %s", f.cfg.HELO)
	if err != nil {
		return nil, false, err
	}
	tp.StartResponse(id)
	_, msg, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code/100 != 5 {
			return nil, false, err
		}
		// No EHLO: no extensions, so no STARTTLS (go-smtp falls back to
		// HELO by itself).
	}
	for _, l := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		if require {
			return nil, false, fault.Temporaryf("server does not offer STARTTLS, and the action requires TLS")
		}
		return &greeted{Conn: conn}, false, nil
	}
	id, err = tp.Cmd("STARTTLS")
	if err != nil {
		return nil, true, err
	}
	tp.StartResponse(id)
	_, _, err = tp.ReadResponse(220)
	tp.EndResponse(id)
	if err != nil {
		return nil, true, err
	}
	tc := tls.Client(conn, f.tlsConfig(host, require))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, true, err
	}
	return &greeted{Conn: tc}, true, nil
}

// greeted replays a greeting before the connection's bytes, for a client
// that starts by reading one.
type greeted struct {
	net.Conn
	done bool
}

const syntheticGreeting = "220 letterbox continuing after EHLO\r\n"

func (g *greeted) Read(b []byte) (int, error) {
	if !g.done {
		g.done = true
		return copy(b, syntheticGreeting), nil
	}
	return g.Conn.Read(b)
}

type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }

// summarize turns the recipients' outcomes into the attempt's result: a
// success when every recipient was delivered (now or before), otherwise an
// error naming the failed recipients, temporary when any of them may
// succeed later, and the delivered ones.
func summarize(outs []outcome, before note) delivery.Result {
	var (
		failed    []string
		temp      bool
		code      int
		codeTemp  bool
		delivered []string
	)
	for _, d := range before.Delivered {
		delivered = append(delivered, d.Rcpt)
	}
	for _, o := range outs {
		if o.err == nil {
			delivered = append(delivered, o.rcpt)
			continue
		}
		t := fault.IsTemporary(o.err)
		temp = temp || t
		if code == 0 || (t && !codeTemp) {
			code, codeTemp = o.code, t
		}
		failed = append(failed, fmt.Sprintf("<%s>: %s", o.rcpt, strings.TrimPrefix(o.err.Error(), "forward: ")))
	}
	if len(failed) == 0 {
		return delivery.Result{Status: 250}
	}
	msg := "forward: " + strings.Join(dedupe(failed), "; ")
	if len(delivered) > 0 {
		msg += fmt.Sprintf(" (%d of %d refused; delivered to %s)", len(failed), len(failed)+len(delivered), strings.Join(delivered, ", "))
	}
	if temp {
		return delivery.Result{Status: code, Err: fault.Temporary(errors.New(msg))}
	}
	return delivery.Result{Status: code, Err: fault.Permanent(errors.New(msg))}
}

func dedupe(s []string) []string {
	out := s[:0:0]
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func delivered(outs []outcome) []outcome {
	var d []outcome
	for _, o := range outs {
		if o.err == nil {
			d = append(d, o)
		}
	}
	return d
}
