package smtpgw

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// submissionGateway runs a gateway with a submission listener, TLS and a
// users file with alice:secret.
func submissionGateway(t *testing.T, cfg Config) (*harness, string) {
	t.Helper()
	dir := t.TempDir()
	cfg.TLSCert, cfg.TLSKey = writeCert(t, dir, "mx.test")
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AuthUsersFile = filepath.Join(dir, "users")
	if err := writeFile(cfg.AuthUsersFile, "# submission users\nalice:"+string(hash)+"\n"); err != nil {
		t.Fatal(err)
	}
	cfg.SubmissionAddr = "127.0.0.1:0"
	h := startGateway(t, cfg)
	return h, h.g.SubmissionAddr().String()
}

// startTLS upgrades a raw client after EHLO.
func (c *rawClient) startTLS(t *testing.T) *rawClient {
	t.Helper()
	c.cmd("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, nc: tc, r: bufio.NewReader(tc)}
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestSubmission: AUTH (RFC 4954) only after STARTTLS, MAIL only after
// AUTH; the message records the user.
func TestSubmission(t *testing.T) {
	h, sub := submissionGateway(t, Config{})
	c := dialRaw(t, sub)
	if ext := c.hello("laptop.test"); strings.Contains(ext, "AUTH") || !strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO before TLS %q", ext)
	}
	c.cmd("AUTH PLAIN "+plain("alice", "secret"), 538, "5.7.11")
	c.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	s := c.startTLS(t)
	if ext := s.hello("laptop.test"); !strings.Contains(ext, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO in TLS %q", ext)
	}
	s.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	s.cmd("AUTH PLAIN "+plain("alice", "wrong"), 535, "5.7.8")
	s.cmd("AUTH PLAIN "+plain("mallory", "secret"), 535, "5.7.8")
	s.cmd("AUTH PLAIN "+plain("alice", "secret"), 235, "2.0.0")
	s.cmd("MAIL FROM:<alice@example.test>", 250, "2.0.0")
	s.cmd("RCPT TO:<someone@nowhere.test>", 550, "5.7.1") // never a relay
	s.cmd("RCPT TO:<bob@example.test>", 250, "2.0.0")
	s.cmd("DATA", 354, "")
	s.send(testMessage("submitted") + ".\r\n")
	id := queuedID(t, s.expect(250, "2.0.0"))
	body, env := h.stored(id)
	if env.AuthUser != "alice" || !env.TLS {
		t.Errorf("envelope %+v", env)
	}
	if !strings.Contains(string(body), "with ESMTPSA id "+id) {
		t.Errorf("Received field:\n%s", body[:250])
	}
	if got := h.metric("letterbox_smtp_auth_attempts_total", "result", "failed"); got != 2 {
		t.Errorf("failed AUTH attempts = %v", got)
	}
}

// TestAuthLogin uses the LOGIN mechanism with its prompts.
func TestAuthLogin(t *testing.T) {
	_, sub := submissionGateway(t, Config{})
	c := dialRaw(t, sub)
	c.hello("laptop.test")
	s := c.startTLS(t)
	s.hello("laptop.test")
	b64 := base64.StdEncoding.EncodeToString
	if text := s.cmd("AUTH LOGIN", 334, ""); text != "334 "+b64([]byte("Username:")) {
		t.Errorf("prompt %q", text)
	}
	if text := s.cmd(b64([]byte("alice")), 334, ""); text != "334 "+b64([]byte("Password:")) {
		t.Errorf("prompt %q", text)
	}
	s.cmd(b64([]byte("secret")), 235, "2.0.0")
	// With the user name as initial response.
	c = dialRaw(t, sub)
	c.hello("laptop.test")
	s = c.startTLS(t)
	s.hello("laptop.test")
	s.cmd("AUTH LOGIN "+b64([]byte("alice")), 334, "")
	s.cmd(b64([]byte("wrong")), 535, "5.7.8")
}

// TestAuthGoSMTPClient submits with go-smtp's client and AUTH PLAIN.
func TestAuthGoSMTPClient(t *testing.T) {
	h, sub := submissionGateway(t, Config{})
	c, err := smtp.DialStartTLS(sub, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(testMessage("go-client"))); err != nil {
		t.Fatal(err)
	}
	if n := len(h.rawKeys()); n != 1 {
		t.Errorf("%d messages stored", n)
	}
}

// TestAuthRateLimit: after the allowed failures, AUTH from that address
// gets 454 4.7.0 without checking the password, on any connection.
func TestAuthRateLimit(t *testing.T) {
	_, sub := submissionGateway(t, Config{AuthFailureBurst: 2, AuthFailureInterval: time.Hour})
	c := dialRaw(t, sub)
	c.hello("laptop.test")
	s := c.startTLS(t)
	s.hello("laptop.test")
	s.cmd("AUTH PLAIN "+plain("alice", "guess1"), 535, "5.7.8")
	s.cmd("AUTH PLAIN "+plain("alice", "guess2"), 535, "5.7.8")
	s.cmd("AUTH PLAIN "+plain("alice", "secret"), 454, "4.7.0")

	c = dialRaw(t, sub)
	c.hello("laptop.test")
	s = c.startTLS(t)
	s.hello("laptop.test")
	s.cmd("AUTH PLAIN "+plain("alice", "secret"), 454, "4.7.0")
}

// TestNoAuthOnMX: the MX listener offers no AUTH, even in TLS.
func TestNoAuthOnMX(t *testing.T) {
	h, _ := submissionGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	s := c.startTLS(t)
	if ext := s.hello("client.test"); strings.Contains(ext, "AUTH") {
		t.Errorf("EHLO %q", ext)
	}
	s.cmd("AUTH PLAIN "+plain("alice", "secret"), 502, "5.7.0")
}

// TestUsersFileReload: a changed users file applies to the next AUTH.
func TestUsersFileReload(t *testing.T) {
	h, sub := submissionGateway(t, Config{})
	hash, _ := bcrypt.GenerateFromPassword([]byte("new"), bcrypt.MinCost)
	// The file is checked at most once a second: make the last check a
	// second old instead of sleeping through that second.
	h.g.users.mu.Lock()
	h.g.users.checked = h.g.users.checked.Add(-time.Second)
	h.g.users.mu.Unlock()
	if err := writeFile(h.g.cfg.AuthUsersFile, "carol:"+string(hash)+"\n"); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, sub)
	c.hello("laptop.test")
	s := c.startTLS(t)
	s.hello("laptop.test")
	s.cmd("AUTH PLAIN "+plain("carol", "new"), 235, "2.0.0")
}
