package smtpgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// conn is an admitted client connection: the net.Conn go-smtp reads and
// writes (under its *tls.Conn after STARTTLS), and the session's state,
// which outlives go-smtp's Session objects (go-smtp starts a new Session
// after STARTTLS).
//
// It lets the gateway end a session cleanly from outside go-smtp's
// goroutine: when the gateway drains, the next read outside a
// transaction answers "421 4.3.2" itself and reports end of input, so
// go-smtp closes the connection.
type conn struct {
	net.Conn          // the accepted TCP connection
	g        *Gateway //
	listener string   // listenerSMTP or listenerSubmission
	remote   netip.AddrPort
	proxied  netip.AddrPort // the load balancer's address when PROXY protocol was used
	br       *bufio.Reader  // bytes read past the PROXY header; nil when none are left
	id       string
	start    time.Time
	log      *slog.Logger
	allowed  bool            // in policy.clients.allow: no DNSBL, no rate limits
	ctx      context.Context // holds span, the smtp.session span (trace.go)
	span     trace.Span

	dnsblOnce sync.Once
	dnsblCh   chan *dnsblResult
	dnsbl     *dnsblResult

	closeOnce sync.Once

	mu         sync.Mutex
	top        net.Conn // what go-smtp uses: this conn or a *tls.Conn over it
	inTx       bool     // a transaction (MAIL accepted) is in flight
	draining   bool
	ended      bool // the session has been told to go away
	killed     bool // the connection was closed by policy
	closeAfter bool // close after the next reply is written
	tlsStarted bool // STARTTLS was accepted ("220 2.0.0" written)
	tlsState   *tls.ConnectionState
	helo       string
	authUser   string
	errors     int
	txs        int
	stored     int
	lastCode   int
	endReason  string
}

// startTLSReply is how go-smtp accepts STARTTLS (RFC 3207 §4: 220).
var startTLSReply = []byte("220 2.0.0 ")

func (c *conn) Read(p []byte) (int, error) {
	if c.shouldEnd() {
		return c.end()
	}
	var n int
	var err error
	if c.br != nil {
		n, err = c.br.Read(p)
		if c.br.Buffered() == 0 {
			c.br = nil
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if err != nil && c.shouldEnd() {
		// Woken by Shutdown's deadline.
		return c.end()
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.tlsStarted && bytes.HasPrefix(p, startTLSReply) {
		c.tlsStarted = true
	} else if c.tlsStarted && len(p) > 0 && p[0] >= '0' && p[0] <= '9' {
		// After STARTTLS only TLS records (content types 20–24) pass
		// here. A plaintext reply means the handshake failed and go-smtp
		// would carry on in plaintext, running whatever commands were
		// pipelined after STARTTLS: end the session instead (RFC 3207
		// §5; CVE-2011-0411 class).
		c.killed, c.endReason = true, reasonTLSFailed
		c.mu.Unlock()
		c.g.m.tlsHandshakes.WithLabelValues("error", "").Inc()
		c.log.Warn("TLS handshake failed; closing the connection")
		_ = c.Conn.Close()
		return len(p), nil
	}
	closeAfter := c.closeAfter
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if closeAfter {
		c.mu.Lock()
		c.killed = true
		c.mu.Unlock()
		_ = c.Conn.Close()
	}
	return n, err
}

// Close is called by go-smtp (directly or through its *tls.Conn) when the
// session ends.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.finish)
	return err
}

// finish logs the session and releases its connection slot.
func (c *conn) finish() {
	c.g.release(c)
	if c.log == nil {
		return
	}
	d := time.Since(c.start)
	c.g.m.sessionsDuration.Observe(d.Seconds())
	c.endSpan()
	c.mu.Lock()
	attrs := []any{
		"event", "session",
		"helo", c.helo,
		"tls", c.tlsState != nil,
		"transactions", c.txs,
		"stored", c.stored,
		"errors", c.errors,
		"code", c.lastCode,
		"duration_ms", d.Milliseconds(),
	}
	if c.tlsState != nil {
		attrs = append(attrs, "tls_version", tls.VersionName(c.tlsState.Version), "tls_cipher", tls.CipherSuiteName(c.tlsState.CipherSuite))
	}
	if c.authUser != "" {
		attrs = append(attrs, "auth_user", c.authUser)
	}
	if c.proxied.IsValid() {
		attrs = append(attrs, "proxy", c.proxied.String())
	}
	if c.endReason != "" {
		attrs = append(attrs, "reason", c.endReason)
	}
	quiet := c.helo == "" && c.txs == 0 && c.endReason == ""
	c.mu.Unlock()
	level := slog.LevelInfo
	if quiet {
		// A connection that never said HELO: load balancer health checks
		// (PROXY LOCAL), port scanners.
		level = slog.LevelDebug
	}
	c.log.Log(context.Background(), level, "session", attrs...)
}

func (c *conn) shouldEnd() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killed || (c.draining && !c.inTx)
}

// end answers "421 4.3.2" once, if the session is ending because the
// gateway drains, and reports end of input so that go-smtp closes the
// connection. It runs on go-smtp's goroutine, which is waiting for a
// command, so the reply cannot interleave with another.
func (c *conn) end() (int, error) {
	c.mu.Lock()
	first := !c.ended
	c.ended = true
	write := first && !c.killed
	top, tlsStarted := c.top, c.tlsStarted
	if write {
		c.lastCode, c.endReason = 421, reasonShuttingDown
	}
	c.mu.Unlock()
	if write {
		w := top
		if w == nil {
			w = c
		}
		if _, isTLS := w.(*tls.Conn); tlsStarted && !isTLS {
			// TLS is up but go-smtp has not started the new session that
			// would tell us its *tls.Conn: plaintext would corrupt it.
			w = nil
		}
		if w != nil {
			_ = w.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = w.Write([]byte("421 4.3.2 " + c.g.cfg.Hostname + " Service shutting down, try again later\r\n"))
		}
	}
	return 0, io.EOF
}

// drain marks the session as ending. An idle session (no transaction in
// flight) is woken from its read now; a transaction in flight finishes
// first.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := !c.inTx
	c.mu.Unlock()
	if idle {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

// beginTx records that MAIL FROM was accepted. It fails when the gateway
// is draining: no new transaction starts then.
func (c *conn) beginTx() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining || c.killed {
		return false
	}
	c.inTx = true
	c.txs++
	return true
}

func (c *conn) endTx() {
	c.mu.Lock()
	c.inTx = false
	c.mu.Unlock()
}

// countError counts an error reply and reports whether the session has
// had too many; the caller then answers 421 4.7.0, after which the
// connection closes.
func (c *conn) countError() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors++
	if c.errors > c.g.cfg.MaxErrors {
		c.closeAfter, c.endReason = true, reasonTooManyErrors
		return true
	}
	return false
}

// closeAfterReply closes the connection once the next reply is written.
func (c *conn) closeAfterReply(reason string) {
	c.mu.Lock()
	c.closeAfter, c.endReason = true, reason
	c.mu.Unlock()
}

func (c *conn) setCode(code int) {
	c.mu.Lock()
	c.lastCode = code
	c.mu.Unlock()
}

// connOf finds the gateway connection under what go-smtp holds.
func connOf(nc net.Conn) *conn {
	for range 3 {
		switch v := nc.(type) {
		case *conn:
			return v
		case *tls.Conn:
			nc = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// dnsblResult is the outcome of the blocklist lookups for one client.
type dnsblResult struct {
	zone   string // the zone that lists the client; empty when none does
	answer netip.Addr
}

// startDNSBL starts the blocklist lookups at connect time, so that MAIL
// FROM rarely waits for them.
func (c *conn) startDNSBL() {
	c.dnsblCh = make(chan *dnsblResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.DNSTimeout)
		defer cancel()
		c.dnsblCh <- c.g.lookupDNSBL(ctx, c.log, c.remote.Addr())
	}()
}

// dnsblListing waits for the lookups started at connect time.
func (c *conn) dnsblListing(ctx context.Context) *dnsblResult {
	if c.dnsblCh == nil {
		return nil
	}
	c.dnsblOnce.Do(func() {
		select {
		case c.dnsbl = <-c.dnsblCh:
		case <-ctx.Done():
		}
	})
	return c.dnsbl
}
