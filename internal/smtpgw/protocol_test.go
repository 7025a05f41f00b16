package smtpgw

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestGoSMTPClient sends a message with go-smtp's client and checks the
// reply, the stored bytes, the envelope, the logs and the metrics.
func TestGoSMTPClient(t *testing.T) {
	h := startGateway(t, Config{})
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.remote.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO does not advertise %s", ext)
		}
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised without a certificate")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised on the MX listener")
	}
	if n, ok := c.MaxMessageSize(); !ok || n != DefaultMaxMessageBytes {
		t.Errorf("SIZE = %d, %v; want %d", n, ok, DefaultMaxMessageBytes)
	}
	if err := c.Mail("sender@remote.test", &smtp.MailOptions{Body: smtp.Body8BitMIME}); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"a@example.test", "b@example.test"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	// go-smtp's client writes LF line endings as CRLF and dot-stuffs.
	msg := "From: sender@remote.test\nSubject: caf\xc3\xa9\n\nline one\n.leading dot\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	id := queuedID(t, resp.StatusText)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	body, env := h.stored(id)
	want := strings.ReplaceAll(msg, "\n", "\r\n")
	if !bytes.HasSuffix(body, []byte("\r\n"+want)) {
		t.Fatalf("stored message does not end with the data sent:\n%q", body)
	}
	received := string(body[:len(body)-len(want)])
	re := regexp.MustCompile(`^Received: from client\.remote\.test \(\[127\.0\.0\.1\]\)\r\n` +
		`\tby mx\.test \(letterbox\) with ESMTP id ` + id + `;\r\n` +
		`\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\n$`)
	if !re.MatchString(received) {
		t.Errorf("Received header (two recipients: no \"for\"):\n%s", received)
	}
	if env.MailFrom != "sender@remote.test" || strings.Join(env.RcptTo, ",") != "a@example.test,b@example.test" ||
		env.ClientIP != "127.0.0.1" || env.HELO != "client.remote.test" || env.TLS || env.Source != "gateway" ||
		time.Since(env.ReceivedAt) > time.Hour || env.ReceivedAt.Location() != time.UTC {
		t.Errorf("envelope %+v", env)
	}

	tx := h.waitLog("transaction", "message_id", id)
	for k, v := range map[string]any{"code": 250.0, "result": "stored", "rcpt_count": 2.0, "mail_from": "sender@remote.test",
		"client_ip": "127.0.0.1", "helo": "client.remote.test", "tls": false, "size": float64(len(want))} {
		if tx[k] != v {
			t.Errorf("transaction log %s = %v, want %v", k, tx[k], v)
		}
	}
	for _, k := range []string{"session_id", "duration_ms", "store_ms"} {
		if _, ok := tx[k]; !ok {
			t.Errorf("transaction log has no %s: %v", k, tx)
		}
	}
	sess := h.waitLog("session", "session_id", tx["session_id"])
	if sess["transactions"] != 1.0 || sess["stored"] != 1.0 || sess["code"] != 250.0 {
		t.Errorf("session log %v", sess)
	}
	if got := h.metric("letterbox_smtp_transactions_total", "code", "250"); got != 1 {
		t.Errorf("transactions{code=250} = %v", got)
	}
	if got := h.metric("letterbox_smtp_store_write_seconds", "result", "ok"); got != 1 {
		t.Errorf("store write observations = %v", got)
	}
	if got := h.metric("letterbox_smtp_received_bytes_total"); got != float64(len(want)) {
		t.Errorf("received bytes = %v, want %d", got, len(want))
	}
}

// TestReceivedForOneRecipient: with one recipient the Received field says
// "for <rcpt>"; SMTPUTF8 makes the protocol UTF8SMTP (RFC 6531 §3.7.3).
func TestReceivedForOneRecipient(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("[192.0.2.7]")
	c.cmd("MAIL FROM:<s\u00e9nder@remote.test> SMTPUTF8", 250, "2.0.0")
	c.cmd("RCPT TO:<j\u00fcrgen@example.test>", 250, "2.0.0")
	c.cmd("DATA", 354, "")
	c.send(testMessage("utf8") + ".\r\n")
	id := queuedID(t, c.expect(250, "2.0.0"))
	body, env := h.stored(id)
	head := string(body[:bytes.Index(body, []byte("From: "))])
	want := "Received: from [192.0.2.7] ([127.0.0.1])\r\n\tby mx.test (letterbox) with UTF8SMTP id " + id +
		"\r\n\tfor <j\u00fcrgen@example.test>;\r\n\t"
	if !strings.HasPrefix(head, want) {
		t.Errorf("Received:\n%q\nwant prefix\n%q", head, want)
	}
	if !env.SMTPUTF8 || env.MailFrom != "s\u00e9nder@remote.test" {
		t.Errorf("envelope %+v", env)
	}
}

// TestOddHELOInComment: a HELO that is not a domain goes into a comment, so
// it cannot forge the structure of the Received field.
func TestOddHELOInComment(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("evil)(by.trusted.example")
	c.envelope("s@remote.test", "r@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("helo") + ".\r\n")
	body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
	if first := strings.SplitN(string(body), "\r\n", 2)[0]; first != "Received: from unknown (helo=evil??by.trusted.example) ([127.0.0.1])" {
		t.Errorf("first line %q", first)
	}
}

// TestPipelining sends a whole transaction in one write (RFC 2920) and
// reads the replies in order.
func TestPipelining(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<nobody@nowhere.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	c.expect(250, "2.0.0")
	c.expect(250, "2.0.0")
	c.expect(550, "5.7.1")
	c.expect(250, "2.0.0")
	c.expect(354, "")
	c.send(testMessage("pipelined") + ".\r\nMAIL FROM:<s2@remote.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
	id1 := queuedID(t, c.expect(250, "2.0.0"))
	c.expect(250, "2.0.0")
	c.expect(250, "2.0.0")
	c.expect(354, "")
	c.send(testMessage("second") + ".\r\nQUIT\r\n")
	id2 := queuedID(t, c.expect(250, "2.0.0"))
	c.expect(221, "2.0.0")
	_, env1 := h.stored(id1)
	_, env2 := h.stored(id2)
	if strings.Join(env1.RcptTo, ",") != "a@example.test,b@example.test" || env2.MailFrom != "s2@remote.test" {
		t.Errorf("envelopes %+v %+v", env1, env2)
	}
}

// TestBDAT sends a message in CHUNKING chunks (RFC 3030), with a chunk
// boundary inside a CRLF.
func TestBDAT(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	msg := testMessage("chunked")
	cut := strings.Index(msg, "\r\n\r\n") + 1 // between CR and LF
	c.send(fmt.Sprintf("BDAT %d\r\n%s", cut, msg[:cut]))
	c.expect(250, "2.0.0")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-cut, msg[cut:]))
	id := queuedID(t, c.expect(250, "2.0.0"))
	body, _ := h.stored(id)
	// BDAT carries no dot-stuffing: the ".." line arrives as it was sent.
	if !bytes.HasSuffix(body, []byte(msg)) {
		t.Errorf("stored %q", body)
	}
}

// TestRSETAndSecondMail: RSET abandons a transaction; a MAIL inside a
// transaction is a sequence error (RFC 5321 §4.1.4).
func TestRSETAndSecondMail(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("MAIL FROM:<other@remote.test>", 503, "5.5.1")
	c.cmd("RSET", 250, "2.0.0")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("after-rset") + ".\r\n")
	c.expect(250, "2.0.0")
	c.cmd("QUIT", 221, "2.0.0")
	h.waitLog("transaction", "result", "abandoned")
	if n := len(h.rawKeys()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestLargeMessage streams a 150 MiB message (the largest size operators
// may configure) through to the store.
func TestLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("150 MiB message; -short")
	}
	const limit = 150 << 20
	h := startGateway(t, Config{MaxMessageBytes: limit})
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("s@remote.test", &smtp.MailOptions{Size: limit - 1024}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 998)
	line = append(line, '\r', '\n')
	n := 0
	w.Write([]byte("Subject: big\r\n\r\n"))
	n += len("Subject: big\r\n\r\n")
	for n+len(line) <= limit-1024 {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
		n += len(line)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	id := queuedID(t, resp.StatusText)
	obj, err := h.st.Stat(t.Context(), "raw/"+id+".eml")
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size < int64(n) || obj.Size > int64(n)+1024 {
		t.Errorf("stored %d bytes, sent %d", obj.Size, n)
	}
}
