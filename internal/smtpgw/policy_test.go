package smtpgw

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// TestRecipientPolicy: every RCPT refusal carries the routes' exact code.
func TestRecipientPolicy(t *testing.T) {
	h := startGateway(t, Config{})
	tests := []struct {
		name, from, rcpt string
		code             int
		enhanced, text   string
		reason           string
	}{
		{"relay", "s@remote.test", "someone@nowhere.test", 550, "5.7.1", "Relaying denied", "relay_denied"},
		{"unknown recipient", "s@remote.test", "nobody@other.example", 550, "5.1.1", "no route accepts", "unknown_recipient"},
		{"reject rule", "spammer@bad.test", "a@example.test", 550, "5.7.1", "Sender blocked by policy", "reject_rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.hello("client.test")
			c.cmd("MAIL FROM:<"+tt.from+">", 250, "2.0.0")
			text := c.cmd("RCPT TO:<"+tt.rcpt+">", tt.code, tt.enhanced)
			if !strings.Contains(text, tt.text) {
				t.Errorf("reply %q does not say %q", text, tt.text)
			}
			c.cmd("DATA", 502, "5.5.1") // no valid recipient
			if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", tt.reason); got != 1 {
				t.Errorf("rejections{reason=%s} = %v", tt.reason, got)
			}
			line := h.waitLog("recipient refused", "rcpt", tt.rcpt)
			if line["message_id"] == nil || line["reason"] != tt.reason {
				t.Errorf("log line %v", line)
			}
		})
	}
}

// TestRecipientLimit: recipient 3 of a 2-recipient limit gets 452 4.5.3.
func TestRecipientLimit(t *testing.T) {
	h := startGateway(t, Config{MaxRecipients: 2})
	c := dialRaw(t, h.addr)
	if ext := c.hello("client.test"); !strings.Contains(ext, "LIMITS RCPTMAX=2") {
		t.Errorf("EHLO %q", ext)
	}
	c.envelope("s@remote.test", "a@example.test", "b@example.test")
	c.cmd("RCPT TO:<c@example.test>", 452, "4.5.3")
	c.cmd("DATA", 354, "")
	c.send(testMessage("two") + ".\r\n")
	_, env := h.stored(queuedID(t, c.expect(250, "2.0.0")))
	if len(env.RcptTo) != 2 {
		t.Errorf("recipients %v", env.RcptTo)
	}
}

// TestSizeLimit: a declared SIZE over the limit is refused at MAIL FROM,
// and data over the limit after it (DATA and BDAT), all with 552 5.3.4;
// the session goes on.
func TestSizeLimit(t *testing.T) {
	h := startGateway(t, Config{MaxMessageBytes: 1000})
	c := dialRaw(t, h.addr)
	if ext := c.hello("client.test"); !strings.Contains(ext, "SIZE 1000") {
		t.Errorf("EHLO %q", ext)
	}
	c.cmd("MAIL FROM:<s@remote.test> SIZE=1001", 552, "5.3.4")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 20)
	c.send(big + ".\r\n")
	c.expect(552, "5.3.4")
	c.cmd("NOOP", 250, "2.0.0")

	c.envelope("s@remote.test", "a@example.test")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	c.expect(552, "5.3.4")
	c.cmd("NOOP", 250, "2.0.0")

	// Exactly at the limit is fine.
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	exact := "Subject: x\r\n\r\n" + strings.Repeat("y", 1000-len("Subject: x\r\n\r\n")-2) + "\r\n"
	c.send(exact + ".\r\n")
	c.expect(250, "2.0.0")
	if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonSize); got != 1 {
		// The BDAT refusal is go-smtp's own and not counted by reason.
		t.Errorf("message_size rejections = %v, want 1", got)
	}
}

// TestConnectionLimits: over the total or the per-address limit, a
// connection gets 421 4.7.0 instead of a greeting; closing one frees a
// slot.
func TestConnectionLimits(t *testing.T) {
	t.Run("total", func(t *testing.T) {
		h := startGateway(t, Config{MaxConnections: 2})
		c1 := dialRaw(t, h.addr)
		dialRaw(t, h.addr)
		over := dialRawNoGreeting(t, h.addr)
		if text := over.expect(421, "4.7.0"); !strings.Contains(text, "Too many connections") {
			t.Errorf("reply %q", text)
		}
		over.expectClosed()
		c1.cmd("QUIT", 221, "2.0.0")
		waitFor(t, func() bool { return h.metric("letterbox_smtp_connections_open") == 1 })
		dialRaw(t, h.addr)
		if got := h.metric("letterbox_smtp_connections_total", "result", reasonConnLimit); got != 1 {
			t.Errorf("refused connections = %v", got)
		}
	})
	t.Run("per IP", func(t *testing.T) {
		h := startGateway(t, Config{MaxConnectionsPerIP: 1})
		dialRaw(t, h.addr)
		over := dialRawNoGreeting(t, h.addr)
		if text := over.expect(421, "4.7.0"); !strings.Contains(text, "[127.0.0.1]") {
			t.Errorf("reply %q", text)
		}
		// Another address is not affected.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		nc, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Skipf("cannot use 127.0.0.2 as a source address here: %v", err)
		}
		defer nc.Close()
		other := &rawClient{t: t, nc: nc, r: newReader(nc)}
		other.expect(220, "")
	})
}

// TestErrorLimit: the error after MaxErrors gets 421 4.7.0 and a
// disconnect.
func TestErrorLimit(t *testing.T) {
	h := startGateway(t, Config{MaxErrors: 3})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
	for i := range 3 {
		c.cmd(fmt.Sprintf("RCPT TO:<u%d@nowhere.test>", i), 550, "5.7.1")
	}
	c.cmd("RCPT TO:<u4@nowhere.test>", 421, "4.7.0")
	c.expectClosed()
	h.waitLog("session", "reason", reasonTooManyErrors)
}

// TestTimeouts: an idle client gets 421 4.4.2 after the command timeout; a
// client that stops sending data gets 421 4.4.2 after the data timeout and
// nothing is stored.
func TestTimeouts(t *testing.T) {
	h := startGateway(t, Config{CommandTimeout: 300 * time.Millisecond, DataTimeout: 300 * time.Millisecond})
	c := dialRaw(t, h.addr)
	c.expect(421, "4.4.2")
	c.expectClosed()

	c = dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send("Subject: stalled\r\n\r\nhalf a mess")
	c.expect(421, "4.4.2")
	c.expectClosed()
	if keys := h.rawKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
}

// TestLineTooLong: a data line over go-smtp's 2000-byte limit gets 500
// 5.5.2 and a disconnect; nothing is stored.
func TestLineTooLong(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send("Subject: long\r\n\r\n" + strings.Repeat("z", 5000) + "\r\n.\r\n")
	c.expect(500, "5.5.2")
	c.expectClosed()
	if keys := h.rawKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
}

// TestSPF checks SPF at MAIL FROM against a local DNS server.
func TestSPF(t *testing.T) {
	ns := startDNS(t, map[string]dnsAnswer{
		"pass.test.":  {txt: "v=spf1 ip4:127.0.0.1 -all"},
		"fail.test.":  {txt: "v=spf1 ip4:192.0.2.1 -all"},
		"soft.test.":  {txt: "v=spf1 ~all"},
		"temp.test.":  {rcode: dns.RcodeServerFailure},
		"helo.test.":  {txt: "v=spf1 -all"},
		"plain.test.": {},
	})
	t.Run("reject", func(t *testing.T) {
		h := startGateway(t, Config{SPFPolicy: SPFReject, Resolver: ns})
		c := dialRaw(t, h.addr)
		c.hello("helo.test")
		text := c.cmd("MAIL FROM:<s@fail.test>", 550, "5.7.23")
		if !strings.Contains(text, "fail.test does not designate 127.0.0.1") {
			t.Errorf("reply %q", text)
		}
		c.cmd("MAIL FROM:<s@temp.test>", 451, "4.7.24")
		// The null sender is checked as postmaster@HELO (RFC 7208 §2.4).
		c.cmd("MAIL FROM:<>", 550, "5.7.23")
		c.cmd("MAIL FROM:<s@soft.test>", 250, "2.0.0")
		c.cmd("RSET", 250, "2.0.0")
		c.cmd("MAIL FROM:<s@plain.test>", 250, "2.0.0") // none
		c.cmd("RSET", 250, "2.0.0")
		c.envelope("s@pass.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(testMessage("spf") + ".\r\n")
		body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
		want := "Received-SPF: pass (mx.test: domain of s@pass.test designates 127.0.0.1 as permitted sender)\r\n" +
			"\tclient-ip=127.0.0.1; envelope-from=s@pass.test; helo=helo.test;\r\nReceived: from helo.test"
		if !strings.HasPrefix(string(body), want) {
			t.Errorf("stored message starts %q", body[:min(len(body), 300)])
		}
		if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonSPFFail); got != 2 {
			t.Errorf("spf_fail rejections = %v", got)
		}
	})
	t.Run("tag", func(t *testing.T) {
		h := startGateway(t, Config{SPFPolicy: SPFTag, Resolver: ns})
		c := dialRaw(t, h.addr)
		c.hello("helo.test")
		c.envelope("s@fail.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(testMessage("spf-tag") + ".\r\n")
		body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
		if !strings.HasPrefix(string(body), "Received-SPF: fail (mx.test: domain of s@fail.test does not designate 127.0.0.1 as permitted sender)") {
			t.Errorf("stored message starts %q", body[:min(len(body), 300)])
		}
	})
	t.Run("off", func(t *testing.T) {
		h := startGateway(t, Config{Resolver: ns})
		c := dialRaw(t, h.addr)
		c.hello("helo.test")
		c.envelope("s@fail.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(testMessage("spf-off") + ".\r\n")
		body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
		if !strings.HasPrefix(string(body), "Received: ") {
			t.Errorf("stored message starts %q", body[:min(len(body), 100)])
		}
	})
}

// TestDNSBL: a client listed in a blocklist gets 554 5.7.1 at MAIL FROM; an
// error answer (127.255.255.x) and a missing entry do not list it.
func TestDNSBL(t *testing.T) {
	ns := startDNS(t, map[string]dnsAnswer{
		"1.0.0.127.bl.test.":  {a: "127.0.0.2"},
		"1.0.0.127.err.test.": {a: "127.255.255.254"},
	})
	h := startGateway(t, Config{Resolver: ns, DNSBL: []string{"none.test", "err.test"}})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")

	h = startGateway(t, Config{Resolver: ns, DNSBL: []string{"none.test", "bl.test"}})
	c = dialRaw(t, h.addr)
	c.hello("client.test")
	text := c.cmd("MAIL FROM:<s@remote.test>", 554, "5.7.1")
	if !strings.Contains(text, "client [127.0.0.1] blocked using bl.test") {
		t.Errorf("reply %q", text)
	}
	if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonDNSBL); got != 1 {
		t.Errorf("dnsbl rejections = %v", got)
	}
}

type dnsAnswer struct {
	txt, a string
	rcode  int
}

// startDNS serves the given names over UDP on a loopback port and returns
// its address for Config.Resolver. Other names are NXDOMAIN.
func startDNS(t *testing.T, zone map[string]dnsAnswer) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { once.Do(func() { close(started) }) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			q := req.Question[0]
			ans, ok := zone[strings.ToLower(q.Name)]
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case ans.rcode != 0:
				m.Rcode = ans.rcode
			case q.Qtype == dns.TypeTXT && ans.txt != "":
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{ans.txt}})
			case q.Qtype == dns.TypeA && ans.a != "":
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ans.a)})
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// waitFor polls cond until it holds (state that changes after the client
// saw its reply, such as a connection slot being released).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRoutesReload: a changed routes file applies to the next RCPT, without
// a restart; an invalid one keeps the previous configuration.
func TestRoutesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(testRoutes), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := routing.NewLive(t.Context(), routing.FileLoader(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	h := startGatewayLive(t, Config{}, tmpStore(t), live)
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
	c.cmd("RCPT TO:<a@new.test>", 550, "5.7.1")

	added := strings.Replace(testRoutes, "domains: [example.test, other.example]", "domains: [example.test, other.example, new.test]", 1) +
		"  - name: new\n    match: {recipient: \"*@new.test\"}\n    actions:\n      - store: true\n"
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd("RCPT TO:<a@new.test>", 250, "2.0.0")

	if err := os.WriteFile(path, []byte("domains: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd("RCPT TO:<b@new.test>", 250, "2.0.0")
	c.cmd("RCPT TO:<b@nowhere.test>", 550, "5.7.1")
}

// TestSPFDNSError: a DNS error answer to the SPF query (SERVFAIL, REFUSED)
// is temperror (RFC 7208 §2.6.6, §4.4): 451 4.7.24 with --spf reject,
// never a 5xx, and "Received-SPF: temperror" with --spf tag.
func TestSPFDNSError(t *testing.T) {
	ns := testenv.StartDNS(t)
	ns.ServFail("servfail.test")
	ns.Rcode("refused.test", dns.RcodeRefused)
	for _, domain := range []string{"servfail.test", "refused.test"} {
		t.Run(domain, func(t *testing.T) {
			h := startGateway(t, Config{SPFPolicy: SPFReject, Resolver: ns.Addr})
			c := dialRaw(t, h.addr)
			c.hello("helo.test")
			text := c.cmd("MAIL FROM:<s@"+domain+">", 451, "4.7.24")
			if want := "SPF check of " + domain + " failed temporarily"; !strings.Contains(text, want) {
				t.Errorf("reply %q does not say %q", text, want)
			}
			if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", reasonSPFTempError); got != 1 {
				t.Errorf("spf_temperror rejections = %v", got)
			}

			h = startGateway(t, Config{SPFPolicy: SPFTag, Resolver: ns.Addr})
			c = dialRaw(t, h.addr)
			c.hello("helo.test")
			c.envelope("s@"+domain, "a@example.test")
			c.cmd("DATA", 354, "")
			c.send(testMessage("spf-temperror") + ".\r\n")
			body, _ := h.stored(queuedID(t, c.expect(250, "2.0.0")))
			want := "Received-SPF: temperror (mx.test: temporary error in processing during lookup of s@" + domain + ")\r\n"
			if !strings.HasPrefix(string(body), want) {
				t.Errorf("stored message starts %q", body[:min(len(body), 300)])
			}
		})
	}
}

// TestSPFResolverConfig: a resolver address the SPF evaluator cannot use
// (no host) is refused when the gateway is made, naming the flag.
func TestSPFResolverConfig(t *testing.T) {
	c := Config{Addr: ":0", SPFPolicy: SPFTag, Resolver: ":53"}
	_, err := New(c, tmpStore(t), routing.Static(mustRoutes(t)), nil, nil)
	if err == nil || !strings.Contains(err.Error(), `smtpgw: --resolver: mailauth: resolver ":53": want host:port`) {
		t.Errorf("New(%+v) = %v", c, err)
	}
}
