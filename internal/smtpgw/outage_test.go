package smtpgw

import (
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// TestStoreOutage runs the gateway on S3 (versitygw): while the S3 server
// is down a message gets 451 4.3.0 and /readyz fails, nothing partial is
// left, and the client's retry is accepted once it is back. A large
// message whose multipart upload the outage interrupts fails the same way.
func TestStoreOutage(t *testing.T) {
	v := testenv.StartVersity(t, testenv.VersityOptions{})
	v.SetEnv(t)
	st, err := s3store.New(t.Context(), v.StoreURL("mail"))
	if err != nil {
		t.Fatal(err)
	}
	h := startGatewayWith(t, Config{}, st, testRoutes)
	send := func(c *rawClient, subject string) (int, string) {
		t.Helper()
		c.envelope("s@remote.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(testMessage(subject) + ".\r\n")
		code, text, err := c.reply()
		if err != nil {
			t.Fatal(err)
		}
		return code, text
	}
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	if code, text := send(c, "before"); code != 250 {
		t.Fatalf("before the outage: %s", text)
	}
	if err := h.g.Ready(t.Context()); err != nil {
		t.Fatalf("not ready: %v", err)
	}

	v.Stop()
	code, text := send(c, "during")
	if code != 451 || !strings.HasPrefix(text, "451 4.3.0 ") {
		t.Fatalf("during the outage: %q, want 451 4.3.0", text)
	}
	if err := h.g.Ready(t.Context()); err == nil {
		t.Error("ready while the store is down")
	}
	h.waitLog("transaction", "result", "store_failed")

	// A large message: the outage begins in the middle of its upload.
	v.Start()
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	line := strings.Repeat("L", 998) + "\r\n"
	c.send("Subject: large\r\n\r\n")
	for range (12 << 20) / len(line) {
		c.send(line)
	}
	v.Stop()
	for range (8 << 20) / len(line) {
		c.send(line)
	}
	c.send(".\r\n")
	c.expect(451, "4.3.0")

	v.Start()
	if err := h.g.Ready(t.Context()); err != nil {
		t.Fatalf("not ready after the outage: %v", err)
	}
	if code, text := send(c, "during"); code != 250 {
		t.Fatalf("retry after the outage: %s", text)
	}
	keys := h.rawKeys()
	if len(keys) != 2 {
		t.Fatalf("stored %v, want the message before the outage and the retry", keys)
	}
	for _, k := range keys {
		body, env := h.stored(strings.TrimSuffix(strings.TrimPrefix(k, "raw/"), ".eml"))
		if !strings.HasSuffix(string(body), "\r\n.A line that starts with a dot.\r\n") || env.MailFrom != "s@remote.test" {
			t.Errorf("%s: %q %+v", k, body, env)
		}
	}
	if got := h.metric("letterbox_smtp_transactions_total", "code", "451"); got != 2 {
		t.Errorf("451 transactions = %v", got)
	}
}
