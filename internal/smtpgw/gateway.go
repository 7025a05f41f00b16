package smtpgw

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Listener names: the "listener" label and log key.
const (
	listenerSMTP       = "smtp"
	listenerSubmission = "submission"
)

// Gateway is the SMTP edge: it accepts connections on its listeners,
// applies connection limits and the PROXY protocol, and serves each
// admitted connection with go-smtp and a Session that writes messages to
// the store.
type Gateway struct {
	cfg      Config
	store    store.Store
	routes   *routing.Live
	log      *slog.Logger
	m        *metrics
	certs    *certLoader // nil without TLS
	tls      *tls.Config
	resolver *net.Resolver     // DNSBL lookups
	spf      *mailauth.Checker // SPF, nil with --spf off
	users    *userFile         // nil without a submission listener
	authLim  *ipLimiter
	ids      *idSource
	scanners *scan.Scanners // nil without --rspamd and --clamd
	scanM    *scanMetrics
	rate     *rateLimiter // policy.clients.rate (clients.go)
	hook     *policyhook.Client
	hookM    *hookMetrics

	// hard is cancelled when a shutdown's deadline passes: store writes
	// still running then are abandoned (and leave nothing).
	hard     context.Context
	hardStop context.CancelFunc

	mu        sync.Mutex
	listeners []*listener
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	draining  bool
	connWG    sync.WaitGroup // admitted connections
	serveWG   sync.WaitGroup // accept loops and go-smtp Serve loops
	done      chan struct{}  // closed when Shutdown begins
	stopped   chan struct{}  // closed when Shutdown has finished
}

// listener is one listening socket and the go-smtp server behind it.
type listener struct {
	name string
	raw  net.Listener
	srv  *smtp.Server
	ch   *chanListener
}

// New checks the configuration, loads the TLS certificate and the AUTH
// users file, and registers the metrics on reg (which may be nil). It
// does not listen yet.
func New(c Config, st store.Store, routes *routing.Live, logger *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if st == nil || routes == nil {
		return nil, errors.New("smtpgw: a store and routes are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("smtpgw: register metrics: %w", err)
	}
	g := &Gateway{
		cfg:     c,
		store:   st,
		routes:  routes,
		log:     logger,
		m:       m,
		authLim: newIPLimiter(c.AuthFailureBurst, c.AuthFailureInterval),
		rate:    newRateLimiter(c.now),
		ids:     newIDSource(),
		conns:   map[*conn]struct{}{},
		perIP:   map[netip.Addr]int{},
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	g.hook = policyhook.New(c.HookEgress, c.HookLambda)
	if g.hookM, err = newHookMetrics(reg); err != nil {
		return nil, fmt.Errorf("smtpgw: register metrics: %w", err)
	}
	if err := g.checkPolicyHook(context.Background()); err != nil {
		return nil, err
	}
	g.hard, g.hardStop = context.WithCancel(context.Background())
	g.resolver = net.DefaultResolver
	if c.Resolver != "" {
		addr := c.Resolver
		g.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	if c.SPFPolicy != SPFOff {
		if g.spf, err = newSPFChecker(c); err != nil {
			return nil, err
		}
	}
	if c.TLSCert != "" {
		if g.certs, err = newCertLoader(c.TLSCert, c.TLSKey, c.TLSCheckInterval, logger, m); err != nil {
			return nil, err
		}
		g.tls = g.tlsConfig()
	}
	if g.scanners, err = newScanners(c); err != nil {
		return nil, err
	}
	if g.scanM, err = newScanMetrics(reg); err != nil {
		return nil, fmt.Errorf("smtpgw: register metrics: %w", err)
	}
	if c.SubmissionAddr != "" {
		if g.users, err = loadUserFile(c.AuthUsersFile, logger); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Listen binds the listeners. ListenAndServe calls it when needed; call it
// first to learn Addr before serving.
func (g *Gateway) Listen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.listeners) > 0 {
		return nil
	}
	if g.draining {
		return smtp.ErrServerClosed
	}
	addrs := []struct{ name, addr string }{{listenerSMTP, g.cfg.Addr}}
	if g.cfg.SubmissionAddr != "" {
		addrs = append(addrs, struct{ name, addr string }{listenerSubmission, g.cfg.SubmissionAddr})
	}
	var ls []*listener
	for _, a := range addrs {
		raw, err := net.Listen("tcp", a.addr)
		if err != nil {
			for _, l := range ls {
				l.raw.Close()
			}
			return fmt.Errorf("smtpgw: listen %s: %w", a.addr, err)
		}
		ls = append(ls, g.newListener(a.name, raw))
	}
	g.listeners = ls
	return nil
}

func (g *Gateway) newListener(name string, raw net.Listener) *listener {
	l := &listener{name: name, raw: raw, ch: newChanListener(raw.Addr())}
	srv := smtp.NewServer(&backend{g: g, listener: name})
	srv.Domain = g.cfg.Hostname
	srv.MaxMessageBytes = g.cfg.MaxMessageBytes
	srv.MaxRecipients = g.cfg.MaxRecipients
	srv.ReadTimeout = g.cfg.CommandTimeout
	srv.WriteTimeout = g.cfg.CommandTimeout
	srv.TLSConfig = g.tls
	srv.EnableSMTPUTF8 = true
	// The session decides: AUTH is offered and accepted only under TLS,
	// with RFC 4954's 538 5.7.11 otherwise (go-smtp would say 523).
	srv.AllowInsecureAuth = true
	srv.ErrorLog = smtpErrorLog{g.log.With("listener", name)}
	l.srv = srv
	return l
}

// Addr returns the SMTP listener's address, or nil before Listen.
func (g *Gateway) Addr() net.Addr { return g.addrOf(listenerSMTP) }

// SubmissionAddr returns the submission listener's address, or nil.
func (g *Gateway) SubmissionAddr() net.Addr { return g.addrOf(listenerSubmission) }

func (g *Gateway) addrOf(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.listeners {
		if l.name == name {
			return l.raw.Addr()
		}
	}
	return nil
}

// ListenAndServe serves until Shutdown, or until ctx ends, which starts a
// graceful shutdown of at most Config.ShutdownTimeout. It returns nil
// after a graceful shutdown.
func (g *Gateway) ListenAndServe(ctx context.Context) error {
	if err := g.Listen(); err != nil {
		return err
	}
	g.mu.Lock()
	ls := g.listeners
	g.mu.Unlock()
	errc := make(chan error, 2*len(ls))
	for _, l := range ls {
		g.log.InfoContext(ctx, "SMTP listening", "listener", l.name, "addr", l.raw.Addr().String(),
			"starttls", g.tls != nil, "proxy_protocol_from", fmt.Sprint(g.cfg.ProxyProtocolFrom))
		g.serveWG.Add(2)
		go func() {
			defer g.serveWG.Done()
			if err := g.acceptLoop(l); err != nil {
				errc <- err
			}
		}()
		go func() {
			defer g.serveWG.Done()
			if err := l.srv.Serve(l.ch); err != nil {
				errc <- err
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
		defer cancel()
		_ = g.Shutdown(sctx)
	})
	defer stop()
	select {
	case <-g.stopped:
		return nil
	case err := <-errc:
		sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
		defer cancel()
		_ = g.Shutdown(sctx)
		return err
	}
}

func (g *Gateway) acceptLoop(l *listener) error {
	var delay time.Duration
	for {
		nc, err := l.raw.Accept()
		if err != nil {
			select {
			case <-g.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) ||
				errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				g.log.Warn("accept failed; retrying", "listener", l.name, "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpgw: accept on %s: %w", l.raw.Addr(), err)
		}
		delay = 0
		go g.admit(l, nc)
	}
}

// admit reads the PROXY header from trusted sources, applies the
// connection limits and hands the connection to go-smtp.
func (g *Gateway) admit(l *listener, nc net.Conn) {
	c := &conn{Conn: nc, g: g, listener: l.name, start: time.Now()}
	c.remote = addrPortOf(nc.RemoteAddr())
	if g.proxyTrusted(c.remote.Addr()) {
		if !g.readProxyHeader(c) {
			return
		}
	}
	ip := c.remote.Addr()
	key := limitKey(ip)
	reject, reason := g.admitClient(c)
	g.mu.Lock()
	switch {
	case reject != "":
	case g.draining:
		reject, reason = "421 4.3.2 "+g.cfg.Hostname+" Service shutting down, try again later", reasonShuttingDown
	case len(g.conns) >= g.cfg.MaxConnections:
		reject, reason = "421 4.7.0 "+g.cfg.Hostname+" Too many connections; try again later", reasonConnLimit
	case g.perIP[key] >= g.cfg.MaxConnectionsPerIP:
		reject, reason = fmt.Sprintf("421 4.7.0 %s Too many connections from your address [%s] (limit %d); try again later",
			g.cfg.Hostname, ip, g.cfg.MaxConnectionsPerIP), reasonConnLimitIP
	default:
		g.conns[c] = struct{}{}
		g.perIP[key]++
		g.connWG.Add(1)
	}
	g.mu.Unlock()
	if reject != "" {
		g.m.connections.WithLabelValues(l.name, reason).Inc()
		if reason != reasonShuttingDown {
			g.m.rejections.WithLabelValues(reason).Inc()
		}
		code := 421
		if reason == reasonClientDenied {
			code = 554
		}
		g.log.Warn("connection refused", "listener", l.name, "client_ip", ip.String(), "reason", reason, "code", code)
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = nc.Write([]byte(reject + "\r\n"))
		_ = nc.Close()
		return
	}
	c.id = g.ids.New()
	c.log = g.log.With("session_id", c.id, "client_ip", ip.String(), "listener", l.name)
	c.startSpan()
	g.m.connections.WithLabelValues(l.name, "accepted").Inc()
	g.m.connectionsOpen.WithLabelValues(l.name).Inc()
	if l.name == listenerSMTP && len(g.cfg.DNSBL) > 0 && !c.allowed {
		c.startDNSBL()
	}
	if !l.ch.deliver(c, g.done) {
		// Shutdown began before go-smtp took the connection.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Conn.Write([]byte("421 4.3.2 " + g.cfg.Hostname + " Service shutting down, try again later\r\n"))
		_ = c.Close()
	}
}

func (g *Gateway) proxyTrusted(a netip.Addr) bool {
	for _, p := range g.cfg.ProxyProtocolFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY protocol v1 or v2 header a trusted
// source must send, and takes the client address from it. A LOCAL header
// (load balancer health checks) keeps the peer's address. It closes the
// connection and returns false when the header is missing or invalid.
func (g *Gateway) readProxyHeader(c *conn) bool {
	_ = c.Conn.SetReadDeadline(time.Now().Add(g.cfg.ProxyHeaderTimeout))
	br := bufio.NewReader(c.Conn)
	h, err := proxyproto.Read(br)
	_ = c.Conn.SetReadDeadline(time.Time{})
	if err == nil && h.Command.IsProxy() {
		if a, ok := h.SourceAddr.(*net.TCPAddr); ok {
			c.proxied = c.remote
			c.remote = addrPortOf(a)
		} else {
			err = fmt.Errorf("unsupported address %v", h.SourceAddr)
		}
	}
	if err != nil {
		g.m.connections.WithLabelValues(c.listener, reasonProxyHeader).Inc()
		g.log.Warn("connection refused: no valid PROXY protocol header from a source in --proxy-protocol-from",
			"listener", c.listener, "peer", c.remote.String(), "err", err)
		_ = c.Conn.Close()
		return false
	}
	if br.Buffered() > 0 {
		c.br = br
	}
	return true
}

// limitKey is what the per-address connection limit counts: the IPv4
// address, or the IPv6 /64, which one subscriber usually holds whole.
func limitKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// release forgets a finished connection.
func (g *Gateway) release(c *conn) {
	g.mu.Lock()
	if _, ok := g.conns[c]; ok {
		delete(g.conns, c)
		key := limitKey(c.remote.Addr())
		if g.perIP[key]--; g.perIP[key] <= 0 {
			delete(g.perIP, key)
		}
		defer g.connWG.Done()
	}
	g.mu.Unlock()
	g.m.connectionsOpen.WithLabelValues(c.listener).Dec()
}

// Shutdown stops accepting connections, ends idle sessions with
// "421 4.3.2", lets transactions in flight finish (their sessions then get
// 421 4.3.2 instead of another command's reply) and returns when every
// session has ended. When ctx ends first it closes the remaining
// connections, whose transactions then leave nothing in the store, and
// returns ctx's error.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	first := !g.draining
	if first {
		g.draining = true
		close(g.done)
	}
	ls := g.listeners
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	if !first {
		select {
		case <-g.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.log.InfoContext(ctx, "SMTP shutting down", "sessions", len(conns))
	for _, l := range ls {
		_ = l.raw.Close()
	}
	for _, c := range conns {
		c.drain()
	}
	finished := make(chan struct{})
	go func() {
		g.connWG.Wait()
		close(finished)
	}()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		err = ctx.Err()
		g.hardStop()
		g.mu.Lock()
		left := len(g.conns)
		for c := range g.conns {
			_ = c.Conn.Close()
		}
		g.mu.Unlock()
		g.log.WarnContext(ctx, "SMTP shutdown deadline passed; closed sessions still in a transaction", "sessions", left)
		<-finished
	}
	for _, l := range ls {
		_ = l.srv.Close()
		l.ch.Close()
	}
	g.serveWG.Wait()
	g.hardStop()
	close(g.stopped)
	g.log.Info("SMTP stopped")
	return err
}

// Ready reports whether the gateway can accept mail: not shutting down,
// routes loaded and the store reachable. It backs /readyz.
func (g *Gateway) Ready(ctx context.Context) error {
	g.mu.Lock()
	draining := g.draining
	g.mu.Unlock()
	if draining {
		return errors.New("shutting down")
	}
	if g.routes.Get(ctx) == nil {
		return errors.New("routes not loaded")
	}
	if err := g.store.Ping(ctx); err != nil {
		return fmt.Errorf("store %s unreachable: %w", g.store.URL(), err)
	}
	return nil
}

// ReloadTLS reloads the certificate and key files now (on SIGHUP).
// Sessions keep running; new handshakes use the new certificate. On error
// the previous certificate stays in use.
func (g *Gateway) ReloadTLS(ctx context.Context) error {
	if g.certs == nil {
		return nil
	}
	return g.certs.Reload(ctx)
}

// chanListener is the net.Listener go-smtp serves: the gateway accepts
// connections itself and delivers the admitted ones.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) deliver(c net.Conn, done <-chan struct{}) bool {
	select {
	case l.ch <- c:
		return true
	case <-done:
		return false
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// smtpErrorLog sends go-smtp's internal errors to slog.
type smtpErrorLog struct{ log *slog.Logger }

func (l smtpErrorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp: " + fmt.Sprintf(format, v...))
}

func (l smtpErrorLog) Println(v ...any) { l.log.Warn("smtp: " + fmt.Sprint(v...)) }
