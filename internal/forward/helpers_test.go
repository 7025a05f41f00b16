package forward

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// ---- SMTP ----

// received is one message a test server accepted.
type received struct {
	Helo     string
	TLS      bool
	AuthUser string
	From     string
	Opts     smtp.MailOptions
	To       []string
	Data     []byte
}

// smtpServer is a go-smtp server on loopback that records what it
// accepts. Its hooks decide the replies.
type smtpServer struct {
	Addr string
	Port string
	srv  *smtp.Server

	mu       sync.Mutex
	msgs     []received
	commands []string
	// Hooks: a non-nil error is the reply.
	OnMail func(from string) error
	OnRcpt func(to string) error
	OnData func(data []byte) error
	// Users enables AUTH PLAIN with these user → password pairs.
	Users map[string]string
	// Hang, when set, blocks DATA until the channel is closed.
	Hang chan struct{}
}

type serverOpts struct {
	addr         string // listen address; default 127.0.0.1:0
	tls          *tls.Config
	implicitTLS  bool // TLS from the first byte (port 465) instead of STARTTLS
	insecureAuth bool
	utf8, dsn    bool
}

func startSMTP(t testing.TB, o serverOpts) *smtpServer {
	t.Helper()
	s := &smtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, c: c, rec: received{Helo: c.Hostname(), TLS: isTLS}}, nil
	}))
	srv.Domain = "mx.test"
	srv.TLSConfig = o.tls
	srv.AllowInsecureAuth = o.insecureAuth
	srv.EnableSMTPUTF8 = o.utf8
	srv.EnableDSN = o.dsn
	srv.MaxMessageBytes = 10 << 20
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	ln, err := net.Listen("tcp", cmp.Or(o.addr, "127.0.0.1:0"))
	if err == nil && o.implicitTLS {
		ln = tls.NewListener(ln, o.tls)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.srv, s.Addr = srv, ln.Addr().String()
	_, s.Port, _ = net.SplitHostPort(s.Addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		s.mu.Lock()
		if s.Hang != nil {
			select {
			case <-s.Hang:
			default:
				close(s.Hang)
			}
		}
		s.mu.Unlock()
		ln.Close() // Serve may not have registered it with srv yet
		srv.Close()
		<-done
	})
	return s
}

func (s *smtpServer) Messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func (s *smtpServer) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *smtpServer) log(cmd string) {
	s.mu.Lock()
	s.commands = append(s.commands, cmd)
	s.mu.Unlock()
}

type session struct {
	s   *smtpServer
	c   *smtp.Conn
	rec received
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.Users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ss.s.log("AUTH " + username)
		if want, ok := ss.s.Users[username]; !ok || want != password {
			return smtp.ErrAuthFailed
		}
		ss.rec.AuthUser = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.s.log("MAIL " + from)
	if ss.s.OnMail != nil {
		if err := ss.s.OnMail(from); err != nil {
			return err
		}
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.rec.From, ss.rec.TLS, ss.rec.Helo = from, isTLS, ss.c.Hostname()
	if opts != nil {
		ss.rec.Opts = *opts
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.log("RCPT " + to)
	if ss.s.OnRcpt != nil {
		if err := ss.s.OnRcpt(to); err != nil {
			return err
		}
	}
	ss.rec.To = append(ss.rec.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.log("DATA")
	ss.s.mu.Lock()
	hang := ss.s.Hang
	ss.s.mu.Unlock()
	if hang != nil {
		<-hang
	}
	if ss.s.OnData != nil {
		if err := ss.s.OnData(b); err != nil {
			return err
		}
	}
	ss.rec.Data = b
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.rec)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() {
	ss.rec = received{Helo: ss.rec.Helo, TLS: ss.rec.TLS, AuthUser: ss.rec.AuthUser}
}

func (ss *session) Logout() error { return nil }

// selfSigned returns a server certificate for smtp.test, localhost and
// 127.0.0.1, and a pool trusting it.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	der, key := testenv.SelfSigned(t, "smtp.test", "localhost", "127.0.0.1")
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// ---- messages ----

// rawMsg is a message as the gateway stores it: its Received field on
// top, CRLF line ends, a folded header, trailing white space and a body
// with a line starting with a dot (dot-stuffing on the wire).
const rawMsg = "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n" +
	"\tby mx.letterbox.test with ESMTPS id 01JDQ7ZK3M8X9V2N4B6C8D0E1F\r\n" +
	"\tfor <support@letterbox.test>; Sun, 22 Nov 2026 16:40:12 +0000\r\n" +
	"From: Alice Example <alice@example.org>\r\n" +
	"To: support@letterbox.test\r\n" +
	"Subject: Quarterly   report \r\n" +
	"Date: Sun, 22 Nov 2026 16:40:00 +0000\r\n" +
	"Message-ID: <q3@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello,\r\n" +
	".the numbers are attached.  \r\n" +
	"\r\n" +
	"..\r\n" +
	"\r\n\r\n"

const testAuthRes = "mx.letterbox.test; spf=pass smtp.mailfrom=alice@example.org; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"

// fixture is a store holding one message, and its parsed form.
type fixture struct {
	st  store.Store
	msg *message.Message
	job *delivery.Job
}

func newFixture(t testing.TB, raw string) *fixture {
	t.Helper()
	st, err := filestore.New(t.TempDir(), filestore.WithoutSync())
	if err != nil {
		t.Fatal(err)
	}
	id := "01JDQ7ZK3M8X9V2N4B6C8D0E1F"
	env := message.Envelope{MailFrom: "alice@example.org", RcptTo: []string{"support@letterbox.test"}, ClientIP: "192.0.2.10", HELO: "mail.example.org"}
	if _, err := store.PutRaw(context.Background(), st, id, env, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	m := &message.Message{ID: id, Envelope: env, RawKey: store.RawKey(id), Size: int64(len(raw)),
		Auth: &message.Auth{AuthenticationResults: testAuthRes, ARC: &message.ARCResult{Result: "none"}}}
	j := &delivery.Job{ID: delivery.JobID(id, "fwd", 0), MessageID: id, Route: "fwd", Kind: "forward"}
	return &fixture{st: st, msg: m, job: j}
}

// testForwarder returns a forwarder allowed to reach loopback.
func testForwarder(t testing.TB, st store.Store, mod func(*Config)) *Forwarder {
	t.Helper()
	cfg := Config{
		Store: st, SRSDomain: "fwd.example.net", SRSSecret: testSecret,
		Policy: egress.Policy{AllowLoopback: true}, HELO: "fwd.example.net", Timeout: 10 * time.Second,
		Now: func() time.Time { return katDay },
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func noExpand(s string) string { return s }

// bodyAfterARC returns data without the ARC fields put on top, and those
// fields.
func bodyAfterARC(data []byte) (arc, rest []byte) {
	i := 0
	for i < len(data) {
		end := bytes.Index(data[i:], []byte("\r\n"))
		if end < 0 {
			break
		}
		line := data[i : i+end+2]
		if !(bytes.HasPrefix(line, []byte("ARC-")) || (len(arc) > 0 && (line[0] == ' ' || line[0] == '\t'))) {
			break
		}
		arc = append(arc, line...)
		i += end + 2
	}
	return arc, data[i:]
}
