package smtpgw

import (
	"strings"
	"testing"
	"time"
)

// step is one exchange of a hostile session: bytes to send (if any), then
// the reply expected ("" code 0: none; closed: the server hangs up).
type step struct {
	send     string
	code     int
	enhanced string
	closed   bool
}

// TestHostileSessions is the hostile-input table of issue 7: each session
// gets the exact reply, stores nothing it should not, and leaves the
// gateway healthy (a normal transaction on a new connection still works).
func TestHostileSessions(t *testing.T) {
	h := startGateway(t, Config{MaxRecipients: 5, MaxMessageBytes: 64 << 10, MaxErrors: 5})
	ehlo := step{send: "EHLO client.test\r\n", code: 250}
	mail := step{send: "MAIL FROM:<s@remote.test>\r\n", code: 250, enhanced: "2.0.0"}
	tests := []struct {
		name  string
		steps []step
	}{
		{"percent hack to a foreign domain", []step{ehlo, mail,
			{send: "RCPT TO:<victim%elsewhere.test@relay.test>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"source route through us to a foreign mailbox", []step{ehlo, mail,
			{send: "RCPT TO:<@example.test:victim@elsewhere.test>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"address literal", []step{ehlo, mail,
			{send: "RCPT TO:<victim@[127.0.0.1]>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"trailing-dot foreign domain", []step{ehlo, mail,
			{send: "RCPT TO:<victim@elsewhere.test.>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"bang path", []step{ehlo, mail,
			{send: "RCPT TO:<elsewhere.test!victim@relay.test>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"subdomain of ours is not ours", []step{ehlo, mail,
			{send: "RCPT TO:<victim@evil.example.test>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"suffix lookalike of ours", []step{ehlo, mail,
			{send: "RCPT TO:<victim@notexample.test>\r\n", code: 550, enhanced: "5.7.1"}}},
		{"recipient flood", []step{ehlo, mail,
			{send: "RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\n", code: 250},
			{code: 250}, {code: 250}, {code: 250}, {code: 250},
			{send: "RCPT TO:<f@example.test>\r\n", code: 452, enhanced: "4.5.3"}}},
		{"declared size over the limit", []step{ehlo,
			{send: "MAIL FROM:<s@remote.test> SIZE=999999999\r\n", code: 552, enhanced: "5.3.4"}}},
		{"non-ASCII sender without SMTPUTF8", []step{ehlo,
			{send: "MAIL FROM:<s\u00e9nder@remote.test>\r\n", code: 553, enhanced: "5.6.7"}}},
		{"non-ASCII recipient without SMTPUTF8", []step{ehlo, mail,
			{send: "RCPT TO:<r\u00e9cipient@example.test>\r\n", code: 553, enhanced: "5.6.7"}}},
		{"address harvesting", []step{ehlo,
			{send: "VRFY root\r\n", code: 252, enhanced: "2.5.0"},
			{send: "EXPN staff\r\n", code: 502, enhanced: "5.5.1"}}},
		{"DATA before RCPT", []step{ehlo, mail,
			{send: "DATA\r\n", code: 502, enhanced: "5.5.1"}}},
		{"MAIL before EHLO", []step{
			{send: "MAIL FROM:<s@remote.test>\r\n", code: 502, enhanced: "5.5.1"}}},
		{"NUL in the sender", []step{ehlo,
			{send: "MAIL FROM:<s\x00@remote.test>\r\n", code: 501, enhanced: "5.1.7"}}},
		{"control character in a recipient", []step{ehlo, mail,
			{send: "RCPT TO:<a\x07b@example.test>\r\n", code: 501, enhanced: "5.1.3"}}},
		{"non-ASCII recipient with SMTPUTF8", []step{ehlo,
			{send: "MAIL FROM:<s@remote.test> SMTPUTF8\r\n", code: 250, enhanced: "2.0.0"},
			{send: "RCPT TO:<r\u00e9cipient@example.test>\r\n", code: 250, enhanced: "2.0.0"}}},
		// go-smtp answers an over-long command line itself, with 5.4.0.
		{"overlong command line", []step{ehlo,
			{send: "MAIL FROM:<" + strings.Repeat("a", 5000) + "@remote.test>\r\n", code: 500}, {closed: true}}},
		// go-smtp itself ends a session after four syntax errors; other
		// errors count towards MaxErrors.
		{"garbage until disconnected", []step{ehlo,
			{send: "\x16\x03\x01\x02\x00\r\n", code: 501, enhanced: "5.5.2"},
			{send: "GET / HTTP/1.1\r\n", code: 501, enhanced: "5.5.2"},
			{send: "XYZW\r\n", code: 500, enhanced: "5.5.2"},
			{send: "TURN\r\n", code: 502, enhanced: "5.5.1"},
			{send: "\xff\xfe\r\n", code: 501, enhanced: "5.5.2"}, {code: 500, enhanced: "5.5.1"}, {closed: true}}},
		{"commands pipelined before the greeting", []step{
			{send: "EHLO early.test\r\nMAIL FROM:<s@remote.test>\r\n", code: 220},
			{code: 250}, {code: 250, enhanced: "2.0.0"}}},
		{"message over the size limit", []step{ehlo, mail,
			{send: "RCPT TO:<a@example.test>\r\n", code: 250},
			{send: "DATA\r\n", code: 354},
			{send: "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 70) + ".\r\n", code: 552, enhanced: "5.3.4"}}},
		{"smuggled second message", []step{ehlo, mail,
			{send: "RCPT TO:<a@example.test>\r\n", code: 250},
			{send: "DATA\r\n", code: 354},
			{send: "Subject: one\r\n\r\nhi\n.\nMAIL FROM:<x@evil.test>\r\n.\r\n", code: 550, enhanced: "5.5.2"}, {closed: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.rawKeys())
			var c *rawClient
			first := 0
			if tt.steps[0].code == 220 { // talks before the greeting
				c = dialRawNoGreeting(t, h.addr)
			} else {
				c = dialRaw(t, h.addr)
			}
			for i, s := range tt.steps[first:] {
				if s.send != "" {
					c.send(s.send)
				}
				switch {
				case s.closed:
					c.expectClosed()
				case s.code != 0:
					if got, text, err := c.reply(); err != nil || got != s.code || (s.enhanced != "" && !strings.Contains(text, s.enhanced)) {
						t.Fatalf("step %d (%q): got %d %q %v, want %d %s", i, s.send, got, text, err, s.code, s.enhanced)
					}
				}
			}
			if after := len(h.rawKeys()); after != before {
				t.Fatalf("a hostile session stored %d message(s)", after-before)
			}
			healthy(t, h)
		})
	}
}

// healthy runs one ordinary transaction on a new connection.
func healthy(t *testing.T, h *harness) {
	t.Helper()
	c := dialRaw(t, h.addr)
	c.hello("ok.test")
	c.envelope("s@remote.test", "rcpt@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("healthy-"+time.Now().Format("150405.000000")) + ".\r\n")
	id := queuedID(t, c.expect(250, "2.0.0"))
	if raw, _ := h.stored(id); len(raw) == 0 {
		t.Fatalf("the gateway did not store an ordinary message after a hostile session")
	}
	c.cmd("QUIT", 221, "")
}
