package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

func ptr[T any](v T) *T { return &v }

// smarthost returns a forward action through srv.
func smarthostAction(srv *smtpServer, to ...string) *routing.ForwardAction {
	return &routing.ForwardAction{To: to, Smarthost: srv.Addr}
}

// wantResult checks an attempt's outcome: the error's class and text, and
// the status code.
func wantResult(t *testing.T, res delivery.Result, wantErr string, temporary bool, status int) {
	t.Helper()
	if wantErr == "" {
		if res.Err != nil {
			t.Fatalf("Forward: %v, want success", res.Err)
		}
	} else {
		if res.Err == nil {
			t.Fatalf("Forward succeeded, want an error matching %q", wantErr)
		}
		if !regexp.MustCompile(wantErr).MatchString(res.Err.Error()) {
			t.Fatalf("error %q does not match %q", res.Err, wantErr)
		}
		if fault.IsTemporary(res.Err) != temporary {
			t.Fatalf("error %q: temporary = %v, want %v", res.Err, !temporary, temporary)
		}
	}
	if res.Status != status {
		t.Fatalf("status = %d, want %d (err %v)", res.Status, status, res.Err)
	}
}

func TestForwardSmarthost(t *testing.T) {
	fx := newFixture(t, rawMsg)
	srv := startSMTP(t, serverOpts{dsn: true})
	f := testForwarder(t, fx.st, nil)

	res := f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand)
	wantResult(t, res, "", false, 250)
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if !bytes.Equal(got.Data, []byte(rawMsg)) {
		t.Errorf("body differs:\n got %q\nwant %q", got.Data, rawMsg)
	}
	if want := "SRS0=Jaaa=JL=example.org=alice@fwd.example.net"; got.From != want {
		t.Errorf("MAIL FROM %q, want %q", got.From, want)
	}
	if !slices.Equal(got.To, []string{"bob@b.test"}) || got.Helo != "fwd.example.net" {
		t.Errorf("RCPT %q HELO %q", got.To, got.Helo)
	}
	if got.Opts.Size != int64(len(rawMsg)) || got.Opts.Return != smtp.DSNReturnHeaders || got.Opts.EnvelopeID != fx.job.ID {
		t.Errorf("MAIL options %+v: want SIZE=%d RET=HDRS ENVID=%s", got.Opts, len(rawMsg), fx.job.ID)
	}
	if back, err := f.SRS().Reverse(got.From); err != nil || back != "alice@example.org" {
		t.Errorf("Reverse(%q) = %q, %v", got.From, back, err)
	}
}

func TestForwardEnvelope(t *testing.T) {
	t.Run("null sender stays null", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		fx.msg.Envelope.MailFrom = ""
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, nil)
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand), "", false, 250)
		if cmds := srv.Commands(); !slices.Contains(cmds, "MAIL ") {
			t.Fatalf("commands %q, want MAIL FROM:<>", cmds)
		}
	})
	t.Run("no envelope: the Return-Path, else the From address", func(t *testing.T) {
		for _, tt := range []struct{ raw, want string }{
			{"Return-Path: <bounces+x@list.example.com>\r\n" + rawMsg, "bounces+x@list.example.com"},
			{rawMsg, "alice@example.org"},
		} {
			fx := newFixture(t, tt.raw)
			fx.msg.Envelope = message.Envelope{Source: "ses"}
			srv := startSMTP(t, serverOpts{})
			f := testForwarder(t, fx.st, nil)
			wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand), "", false, 250)
			m := srv.Messages()
			if len(m) != 1 || string(m[0].Data) != tt.raw {
				t.Fatalf("got %d messages", len(m))
			}
			if orig, err := f.SRS().Reverse(m[0].From); err != nil || orig != tt.want {
				t.Fatalf("MAIL FROM %s stands for %q (%v), want %s", m[0].From, orig, err, tt.want)
			}
		}
	})
	t.Run("captures expanded, duplicates sent once", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, nil)
		expand := func(s string) string { return strings.ReplaceAll(s, "${user}", "carol") }
		a := smarthostAction(srv, "${user}@b.test", "carol@B.test", "dave@b.test")
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, expand), "", false, 250)
		if msgs := srv.Messages(); len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"carol@b.test", "dave@b.test"}) {
			t.Fatalf("messages %+v, want one transaction to carol and dave", msgs)
		}
	})
	t.Run("expansion that is not an address", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		f := testForwarder(t, fx.st, nil)
		a := &routing.ForwardAction{To: []string{"${user}@b.test"}, Smarthost: "127.0.0.1:1"}
		res := f.Forward(context.Background(), fx.job, fx.msg, a, func(string) string { return "x@b.test>, <evil@c.test" })
		wantResult(t, res, `is not an address`, false, 0)
	})
	t.Run("raw message missing", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		fx.msg.RawKey = store.RawKey("01JDQ7ZK3M8X9V2N4B6C8D0E1G")
		f := testForwarder(t, fx.st, nil)
		res := f.Forward(context.Background(), fx.job, fx.msg, &routing.ForwardAction{To: []string{"bob@b.test"}, Smarthost: "127.0.0.1:1"}, noExpand)
		wantResult(t, res, `raw message raw/01JDQ7ZK3M8X9V2N4B6C8D0E1G.eml is not in the store`, false, 0)
	})
	t.Run("mail loop", func(t *testing.T) {
		fx := newFixture(t, strings.Repeat("Received: from a by b; Sun, 22 Nov 2026 16:40:12 +0000\r\n", 101)+rawMsg)
		f := testForwarder(t, fx.st, nil)
		res := f.Forward(context.Background(), fx.job, fx.msg, &routing.ForwardAction{To: []string{"bob@b.test"}, Smarthost: "127.0.0.1:1"}, noExpand)
		wantResult(t, res, `mail loop: the message has 102 Received fields`, false, 0)
	})
}

func TestForwardReplies(t *testing.T) {
	tempErr := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	permErr := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	tests := []struct {
		name      string
		setup     func(s *smtpServer)
		wantErr   string
		temporary bool
		status    int
	}{
		{"4xx to MAIL", func(s *smtpServer) { s.OnMail = func(string) error { return tempErr } },
			`^forward: <bob@b.test>: 127.0.0.1: MAIL FROM: 451 4.3.0 Try again later$`, true, 451},
		{"5xx to MAIL", func(s *smtpServer) {
			s.OnMail = func(string) error {
				return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender refused"}
			}
		}, `MAIL FROM: 553 5.7.1 Sender refused$`, false, 553},
		{"4xx to RCPT", func(s *smtpServer) { s.OnRcpt = func(string) error { return tempErr } },
			`^forward: <bob@b.test>: 127.0.0.1: RCPT TO <bob@b.test>: 451 4.3.0 Try again later$`, true, 451},
		{"5xx to RCPT", func(s *smtpServer) { s.OnRcpt = func(string) error { return permErr } },
			`RCPT TO <bob@b.test>: 550 5.1.1 No such user$`, false, 550},
		{"4xx after DATA", func(s *smtpServer) { s.OnData = func([]byte) error { return tempErr } },
			`end of DATA: 451 4.3.0 Try again later$`, true, 451},
		{"5xx after DATA", func(s *smtpServer) {
			s.OnData = func([]byte) error {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam"}
			}
		}, `end of DATA: 554 5.7.1 Spam$`, false, 554},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, rawMsg)
			srv := startSMTP(t, serverOpts{})
			tt.setup(srv)
			f := testForwarder(t, fx.st, nil)
			res := f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand)
			wantResult(t, res, tt.wantErr, tt.temporary, tt.status)
		})
	}
}

func TestForwardConnection(t *testing.T) {
	fx := newFixture(t, rawMsg)
	t.Run("connection refused is temporary", func(t *testing.T) {
		f := testForwarder(t, fx.st, nil)
		a := &routing.ForwardAction{To: []string{"bob@b.test"}, Smarthost: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), `connect 127\.0\.0\.1:\d+: .*connection refused`, true, 0)
	})
	t.Run("loopback refused by the egress policy", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, func(c *Config) { c.Policy = egress.Policy{} })
		res := f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand)
		wantResult(t, res, `destination address is not allowed`, false, 0)
		if len(srv.Commands()) != 0 {
			t.Fatal("the server was reached")
		}
	})
	t.Run("allow_private_network lifts the policy for one action", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, func(c *Config) { c.Policy = egress.Policy{} })
		a := smarthostAction(srv, "bob@b.test")
		a.AllowLocal = true
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
	})
	t.Run("a server that hangs times out", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{})
		srv.Hang = make(chan struct{})
		f := testForwarder(t, fx.st, nil)
		a := smarthostAction(srv, "bob@b.test")
		a.Timeout = routing.Duration(300 * time.Millisecond)
		start := time.Now()
		res := f.Forward(context.Background(), fx.job, fx.msg, a, noExpand)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("attempt took %s with a 300ms timeout", d)
		}
		wantResult(t, res, `127.0.0.1: no response within the attempt's timeout`, true, 0)
	})
	t.Run("canceled by the caller", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{})
		srv.Hang = make(chan struct{})
		f := testForwarder(t, fx.st, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		res := f.Forward(ctx, fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand)
		wantResult(t, res, `context canceled`, true, 0)
	})
}

// TestForwardTLSAndAuth runs against a server with a self-signed
// certificate for smtp.test, found through the test DNS server.
func TestForwardTLSAndAuth(t *testing.T) {
	fx := newFixture(t, rawMsg)
	serverTLS, pool := selfSigned(t)
	z := testenv.StartDNS(t)
	z.A("smtp.test", "127.0.0.1")
	z.A("other.test", "127.0.0.1")
	dnsAddr := z.Addr
	env := map[string]string{"SMTP_PASSWORD": "s3cret"}
	newF := func(t *testing.T) *Forwarder {
		return testForwarder(t, fx.st, func(c *Config) {
			c.Resolver = dnsAddr
			c.TLS = &tls.Config{RootCAs: pool}
			c.Getenv = func(k string) string { return env[k] }
		})
	}
	action := func(srv *smtpServer, host string, starttls *bool, user string) *routing.ForwardAction {
		a := &routing.ForwardAction{To: []string{"bob@b.test"}, Smarthost: net.JoinHostPort(host, srv.Port), StartTLS: starttls}
		if user != "" {
			a.Username, a.PasswordEnv = user, "SMTP_PASSWORD"
		}
		return a
	}

	t.Run("STARTTLS and AUTH PLAIN", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		srv.Users = map[string]string{"forwarder": "s3cret"}
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", ptr(true), "forwarder"), noExpand)
		wantResult(t, res, "", false, 250)
		msgs := srv.Messages()
		if len(msgs) != 1 || !msgs[0].TLS || msgs[0].AuthUser != "forwarder" || !bytes.Equal(msgs[0].Data, []byte(rawMsg)) {
			t.Fatalf("got %+v, want one message over TLS, authenticated as forwarder", msgs)
		}
		if msgs[0].Helo != "fwd.example.net" {
			t.Errorf("EHLO after STARTTLS said %q", msgs[0].Helo)
		}
	})
	t.Run("credentials imply TLS", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		srv.Users = map[string]string{"forwarder": "s3cret"}
		wantResult(t, newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", nil, "forwarder"), noExpand), "", false, 250)
		if m := srv.Messages(); len(m) != 1 || !m[0].TLS {
			t.Fatalf("got %+v", m)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		srv.Users = map[string]string{"forwarder": "other"}
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", ptr(true), "forwarder"), noExpand)
		wantResult(t, res, `smtp.test: AUTH: 535 5.7.8 Authentication failed`, false, 535)
	})
	t.Run("no STARTTLS offered: credentials never sent", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{insecureAuth: true})
		srv.Users = map[string]string{"forwarder": "s3cret"}
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", nil, "forwarder"), noExpand)
		wantResult(t, res, `smtp.test: STARTTLS: server does not offer STARTTLS, and the action requires TLS`, true, 0)
		for _, c := range srv.Commands() {
			if strings.HasPrefix(c, "AUTH") || strings.HasPrefix(c, "MAIL") {
				t.Fatalf("server saw %q", c)
			}
		}
	})
	t.Run("starttls false with credentials is refused", func(t *testing.T) {
		// The routes file refuses this; the forwarder checks again.
		srv := startSMTP(t, serverOpts{insecureAuth: true})
		srv.Users = map[string]string{"forwarder": "s3cret"}
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", ptr(false), "forwarder"), noExpand)
		wantResult(t, res, `refusing to send credentials without TLS`, false, 0)
		if len(srv.Commands()) != 0 {
			t.Fatalf("server saw %q", srv.Commands())
		}
	})
	t.Run("certificate for another name", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "other.test", ptr(true), ""), noExpand)
		wantResult(t, res, `other.test: STARTTLS: .*certificate is valid for smtp.test, localhost, not other.test`, true, 0)
		if len(srv.Messages()) != 0 {
			t.Fatal("delivered over an unverified connection")
		}
	})
	t.Run("opportunistic TLS without verification", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		f := testForwarder(t, fx.st, func(c *Config) { c.Resolver = dnsAddr }) // the certificate is not trusted
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, action(srv, "other.test", nil, ""), noExpand), "", false, 250)
		if m := srv.Messages(); len(m) != 1 || !m[0].TLS {
			t.Fatalf("got %+v, want delivery over TLS", m)
		}
	})
	t.Run("opportunistic TLS falls back to plain text", func(t *testing.T) {
		strict := serverTLS.Clone()
		strict.MinVersion = tls.VersionTLS13
		srv := startSMTP(t, serverOpts{tls: strict})
		f := testForwarder(t, fx.st, func(c *Config) {
			c.Resolver = dnsAddr
			c.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
		})
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", nil, ""), noExpand), "", false, 250)
		if m := srv.Messages(); len(m) != 1 || m[0].TLS {
			t.Fatalf("got %+v, want one delivery in plain text", m)
		}
	})
	t.Run("starttls false never starts TLS", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{tls: serverTLS})
		wantResult(t, newF(t).Forward(context.Background(), fx.job, fx.msg, action(srv, "smtp.test", ptr(false), ""), noExpand), "", false, 250)
		if m := srv.Messages(); len(m) != 1 || m[0].TLS {
			t.Fatalf("got %+v", m)
		}
	})
	t.Run("implicit TLS on port 465", func(t *testing.T) {
		// A TLS listener on a free port, reached as port 465 through a
		// dialer that maps the port: only the port number selects
		// implicit TLS.
		srv := startSMTP(t, serverOpts{tls: serverTLS, implicitTLS: true})
		srv.Users = map[string]string{"forwarder": "s3cret"}
		f := newF(t)
		a := &routing.ForwardAction{To: []string{"bob@b.test"}, Smarthost: "smtp.test:465", Username: "forwarder", PasswordEnv: "SMTP_PASSWORD"}
		if modeFor(a) != tlsImplicit {
			t.Fatal("port 465 is not implicit TLS")
		}
		a.Smarthost = "smtp.test:" + srv.Port
		res := f.deliverImplicitForTest(context.Background(), fx, a)
		wantResult(t, res, "", false, 250)
		if m := srv.Messages(); len(m) != 1 || !m[0].TLS || m[0].AuthUser != "forwarder" {
			t.Fatalf("got %+v", m)
		}
	})
	t.Run("SMTPUTF8 needed but not offered", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{})
		a := smarthostAction(srv, "jürgen@b.test")
		res := newF(t).Forward(context.Background(), fx.job, fx.msg, a, noExpand)
		wantResult(t, res, `does not support SMTPUTF8`, false, 0)
	})
	t.Run("SMTPUTF8 offered", func(t *testing.T) {
		srv := startSMTP(t, serverOpts{utf8: true})
		a := smarthostAction(srv, "jürgen@b.test")
		wantResult(t, newF(t).Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
		if m := srv.Messages(); len(m) != 1 || !m[0].Opts.UTF8 || m[0].To[0] != "jürgen@b.test" {
			t.Fatalf("got %+v", m)
		}
	})
}

// deliverImplicitForTest runs a delivery with implicit TLS on the
// action's (test) port.
func (f *Forwarder) deliverImplicitForTest(ctx context.Context, fx *fixture, a *routing.ForwardAction) delivery.Result {
	p, err := f.open(ctx, fx.msg, fx.job.ID, a.ARCSeal)
	if err != nil {
		return delivery.Result{Err: err}
	}
	defer p.close()
	host, port, _ := net.SplitHostPort(a.Smarthost)
	ips, err := f.res.lookupIP(ctx, host)
	if err != nil {
		return delivery.Result{Err: err}
	}
	sender, _ := f.srs.Forward(fx.msg.Envelope.MailFrom)
	out, _, _, err := f.session(ctx, f.cfg.Policy, target{host, port}, ips[0], tlsImplicit, a, group{rcpts: a.To}, p, sendOptions{sender: sender})
	if err != nil {
		return delivery.Result{Err: err}
	}
	return summarize(out, note{})
}

// TestForwardPartial checks several recipients where some are refused:
// the error names them, and a retry does not send again to those that
// accepted.
func TestForwardPartial(t *testing.T) {
	t.Run("one refused for good", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		srv.OnRcpt = func(to string) error {
			if to == "nobody@b.test" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
			}
			return nil
		}
		f := testForwarder(t, fx.st, nil)
		res := f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test", "nobody@b.test", "carol@b.test"), noExpand)
		wantResult(t, res, `^forward: <nobody@b.test>: 127.0.0.1: RCPT TO <nobody@b.test>: 550 5.1.1 No such user \(1 of 3 refused; delivered to bob@b.test, carol@b.test\)$`, false, 550)
		if msgs := srv.Messages(); len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"bob@b.test", "carol@b.test"}) {
			t.Fatalf("messages %+v", msgs)
		}
		// A redrive of the dead letter only tries the refused one.
		srv.OnRcpt = nil
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test", "nobody@b.test", "carol@b.test"), noExpand), "", false, 250)
		if msgs := srv.Messages(); len(msgs) != 2 || !slices.Equal(msgs[1].To, []string{"nobody@b.test"}) {
			t.Fatalf("messages after redrive %+v", msgs)
		}
	})
	t.Run("one deferred, then the retry", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		srv.OnRcpt = func(to string) error {
			if to == "carol@b.test" {
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
			}
			return nil
		}
		f := testForwarder(t, fx.st, nil)
		a := smarthostAction(srv, "bob@b.test", "carol@b.test")
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand),
			`^forward: <carol@b.test>: 127.0.0.1: RCPT TO <carol@b.test>: 452 4.2.2 Mailbox full \(1 of 2 refused; delivered to bob@b.test\)$`, true, 452)
		var n note
		if err := store.GetJSON(context.Background(), fx.st, NoteKey(fx.job.MessageID, fx.job.ID), &n); err != nil || len(n.Delivered) != 1 || n.Delivered[0].Rcpt != "bob@b.test" {
			t.Fatalf("progress note %+v, %v", n, err)
		}
		// Still full: bob is not sent to again.
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), `452 4.2.2 Mailbox full \(1 of 2 refused; delivered to bob@b.test\)$`, true, 452)
		srv.OnRcpt = nil
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
		// Everyone has it now: nothing more is sent.
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
		var rcpts []string
		for _, m := range srv.Messages() {
			rcpts = append(rcpts, m.To...)
		}
		if !slices.Equal(rcpts, []string{"bob@b.test", "carol@b.test"}) {
			t.Fatalf("deliveries %q, want bob once and carol once", rcpts)
		}
	})
	t.Run("a single recipient needs no note", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, nil)
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand), "", false, 250)
		if _, err := fx.st.Stat(context.Background(), NoteKey(fx.job.MessageID, fx.job.ID)); !store.IsNotFound(err) {
			t.Fatalf("note: %v", err)
		}
	})
}

// TestForwardLargeMessage streams a message larger than the memory limit
// to two destination hosts: the store is read again for the second, and
// both get the same bytes.
func TestForwardLargeMessage(t *testing.T) {
	big := strings.Replace(rawMsg, "Hello,\r\n", "Hello,\r\n"+strings.Repeat("0123456789 abcdefghij klmnopqrstuvwxyz\r\n", 50000), 1)
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			fx := newFixture(t, big)
			srv := startSMTP(t, serverOpts{})
			z := testenv.StartDNS(t)
			z.MX("b.test", 10, "mx.test")
			z.MX("c.test", 10, "mx.test")
			z.A("mx.test", "127.0.0.1")
			k := rsaKey(t)
			f := testForwarder(t, fx.st, func(c *Config) {
				c.Resolver = z.Addr
				c.MXPort = atoi(srv.Port)
				c.MemoryLimit = 64 << 10
				if sealed {
					c.ARC = k
				}
			})
			a := &routing.ForwardAction{To: []string{"bob@b.test", "carol@c.test"}, ARCSeal: sealed}
			wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
			msgs := srv.Messages()
			if len(msgs) != 2 {
				t.Fatalf("%d messages, want 2", len(msgs))
			}
			for _, m := range msgs {
				arc, rest := bodyAfterARC(m.Data)
				if !bytes.Equal(rest, []byte(big)) || (len(arc) > 0) != sealed {
					t.Fatalf("message to %q: %d bytes (%d of ARC), want %d", m.To, len(m.Data), len(arc), len(big))
				}
			}
		})
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}
