package smtpgw

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func tlsGateway(t *testing.T, cfg Config) (*harness, string) {
	t.Helper()
	dir := t.TempDir()
	cfg.TLSCert, cfg.TLSKey = writeCert(t, dir, "mx.test")
	return startGateway(t, cfg), dir
}

// TestSTARTTLS delivers a message over STARTTLS (RFC 3207) and checks the
// envelope and Received field record it.
func TestSTARTTLS(t *testing.T) {
	h, _ := tlsGateway(t, Config{})
	c, err := smtp.DialStartTLS(h.addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || state.Version < tls.VersionTLS12 || state.PeerCertificates[0].Subject.CommonName != "mx.test" {
		t.Fatalf("TLS state %v %+v", ok, state)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised again after TLS")
	}
	if err := c.SendMail("s@remote.test", []string{"a@example.test"}, strings.NewReader(testMessage("tls"))); err != nil {
		t.Fatal(err)
	}
	keys := h.rawKeys()
	if len(keys) != 1 {
		t.Fatalf("stored %v", keys)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(keys[0], "raw/"), ".eml")
	body, env := h.stored(id)
	if !env.TLS || env.TLSVersion != tls.VersionName(state.Version) || env.TLSCipher != tls.CipherSuiteName(state.CipherSuite) {
		t.Errorf("envelope %+v", env)
	}
	wantTLS := "with ESMTPS id " + id + "\r\n\tfor <a@example.test>\r\n\t(using " +
		strings.ReplaceAll(tls.VersionName(state.Version), " ", "") + " with cipher " + tls.CipherSuiteName(state.CipherSuite) + ");"
	if !strings.Contains(string(body), wantTLS) {
		t.Errorf("Received field does not record TLS (%q):\n%s", wantTLS, body[:300])
	}
	if got := h.metric("letterbox_smtp_tls_handshakes_total", "result", "ok"); got != 1 {
		t.Errorf("TLS handshakes = %v", got)
	}
	h.waitLog("transaction", "message_id", id, "tls", true)
}

// TestSTARTTLSInjection: commands pipelined after STARTTLS in plaintext are
// never run, in TLS (CVE-2011-0411) or after a failed handshake.
func TestSTARTTLSInjection(t *testing.T) {
	h, _ := tlsGateway(t, Config{})
	injected := "STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\nRCPT TO:<a@example.test>\r\n"

	t.Run("handshake", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		if ext := c.hello("client.test"); !strings.Contains(ext, "STARTTLS") {
			t.Fatalf("EHLO %q", ext)
		}
		c.send(injected)
		c.expect(220, "2.0.0")
		tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		s := &rawClient{t: t, nc: tc, r: bufio.NewReader(tc)}
		// The first reply in TLS answers our EHLO, not the injected MAIL.
		if ext := s.cmd("EHLO client.test", 250, ""); !strings.HasPrefix(ext, "250-Hello client.test") {
			t.Fatalf("first reply in TLS %q", ext)
		}
		s.cmd("RCPT TO:<a@example.test>", 502, "5.5.1") // no MAIL was run
		s.cmd("MAIL FROM:<real@remote.test>", 250, "2.0.0")
	})

	for _, tt := range []struct {
		name  string
		shake func(c *rawClient) error
	}{
		// A client offering only TLS 1.1 fails the handshake (TLS 1.2+).
		{"TLS 1.1", func(c *rawClient) error {
			return tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}).Handshake()
		}},
		{"not TLS", func(c *rawClient) error {
			c.send("this is not a TLS ClientHello, but it is long enough to be read as a record\r\n")
			return errors.New("sent garbage")
		}},
	} {
		t.Run("failed handshake, "+tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.hello("client.test")
			c.send(injected)
			c.expect(220, "2.0.0")
			if err := tt.shake(c); err == nil {
				t.Fatal("handshake succeeded")
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(safety))
			rest, err := io.ReadAll(c.r)
			if err != nil {
				t.Fatalf("connection not closed: %v", err)
			}
			if strings.Contains(string(rest), "250") {
				t.Fatalf("injected commands answered after the failed handshake: %q", rest)
			}
		})
	}
	h.waitLog("session", "reason", reasonTLSFailed)
	if got := h.metric("letterbox_smtp_tls_handshakes_total", "result", "error"); got != 2 {
		t.Errorf("failed handshakes = %v, want 2", got)
	}
}

// TestTLSReload: a new certificate is served after ReloadTLS (SIGHUP) and
// after the files change, while a session in TLS keeps working.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "one.test")
	h := startGateway(t, Config{TLSCert: cert, TLSKey: key, TLSCheckInterval: 1})

	peer := func() string { return peerName(t, h.addr) }
	if got := peer(); got != "one.test" {
		t.Fatalf("certificate %q", got)
	}
	old, err := smtp.DialStartTLS(h.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// The files change: the next handshake notices.
	writeCert(t, dir, "two.test")
	if got := peer(); got != "two.test" {
		t.Errorf("after the files changed: certificate %q", got)
	}

	// SIGHUP: ReloadTLS reads the files whatever the interval.
	h2dir := t.TempDir()
	c2, k2 := writeCert(t, h2dir, "three.test")
	h2 := startGateway(t, Config{TLSCert: c2, TLSKey: k2, TLSCheckInterval: 1 << 62})
	writeCert(t, h2dir, "four.test")
	if err := h2.g.ReloadTLS(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.DialStartTLS(h2.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	c.Close()
	if cn := st.PeerCertificates[0].Subject.CommonName; cn != "four.test" {
		t.Errorf("after ReloadTLS: certificate %q", cn)
	}

	// A broken file keeps the certificate in use.
	if err := writeFile(filepath.Join(h2dir, "key.pem"), "not a key"); err != nil {
		t.Fatal(err)
	}
	if err := h2.g.ReloadTLS(t.Context()); err == nil {
		t.Error("ReloadTLS accepted a broken key")
	}
	c, err = smtp.DialStartTLS(h2.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake after a failed reload: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("handshake after a failed reload: %v", err)
	}
	c.Close()

	// The session opened before the change still delivers.
	if err := old.SendMail("s@remote.test", []string{"a@example.test"}, strings.NewReader(testMessage("old-session"))); err != nil {
		t.Fatalf("session from before the reload: %v", err)
	}
}

// TestTLSInlinePEM: the certificate and key may be PEM text (as ECS passes
// secrets in LETTERBOX_TLS_CERT and LETTERBOX_TLS_KEY) instead of files.
func TestTLSInlinePEM(t *testing.T) {
	cert, key := writeCert(t, t.TempDir(), "inline.test")
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, Config{TLSCert: string(certPEM), TLSKey: string(keyPEM)})
	c, err := smtp.DialStartTLS(h.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	if cn := st.PeerCertificates[0].Subject.CommonName; cn != "inline.test" {
		t.Errorf("certificate %q", cn)
	}
	if err := h.g.ReloadTLS(t.Context()); err != nil {
		t.Errorf("ReloadTLS: %v", err)
	}
	if _, err := New(Config{Addr: ":0", TLSCert: string(certPEM), TLSKey: key}, tmpStore(t), routingStatic(t), nil, nil); err == nil {
		t.Error("a PEM certificate with a key file was accepted")
	}
}
