package smtpgw

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// pythonClient drives Python's smtplib against the gateway: EHLO,
// STARTTLS, a message with a dot-leading line, a refused recipient and a
// message over the size limit, printing each reply code.
const pythonClient = `
import smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP(host, port, local_hostname="python.test", timeout=60)
code, _ = s.ehlo()
print("ehlo", code, "starttls" in s.esmtp_features, s.esmtp_features.get("size"))
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
code, _ = s.starttls(context=ctx)
print("starttls", code, s.sock.version())
s.ehlo()
msg = "From: py@remote.test\r\nTo: a@example.test\r\nSubject: smtplib\r\n\r\n.leading dot\r\nend\r\n"
refused = s.sendmail("py@remote.test", ["a@example.test"], msg)
print("sendmail", refused)
try:
    s.sendmail("py@remote.test", ["x@nowhere.test"], msg)
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["x@nowhere.test"]
    print("refused", code, text.decode().split()[0])
try:
    s.sendmail("py@remote.test", ["a@example.test"], "Subject: big\r\n\r\n" + "x" * 5000 + "\r\n")
except smtplib.SMTPSenderRefused as e:
    print("toobig", e.smtp_code, e.smtp_error.decode().split()[0])
print("quit", s.quit()[0])
`

// TestPythonSMTPLib: Python's smtplib, a different client implementation,
// gets the same replies.
func TestPythonSMTPLib(t *testing.T) {
	py := testenv.Require(t, "python3", "apt-get install python3")
	h, _ := tlsGateway(t, Config{MaxMessageBytes: 4096})
	host, port, _ := strings.Cut(h.addr, ":")
	out, err := exec.Command(py, "-c", pythonClient, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := strings.Join([]string{
		"ehlo 250 True 4096",
		"starttls 220 TLSv1.3",
		"sendmail {}",
		"refused 550 5.7.1",
		// smtplib sends SIZE=, so the limit applies at MAIL FROM.
		"toobig 552 5.3.4",
		"quit 221",
	}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("python saw:\n%s\nwant:\n%s", out, want)
	}
	keys := h.rawKeys()
	if len(keys) != 1 {
		t.Fatalf("stored %v", keys)
	}
	body, env := h.stored(strings.TrimSuffix(strings.TrimPrefix(keys[0], "raw/"), ".eml"))
	if !strings.HasSuffix(string(body), "\r\n\r\n.leading dot\r\nend\r\n") || env.HELO != "python.test" || !env.TLS {
		t.Errorf("stored %q with %+v", body, env)
	}
}

// TestSwaks drives Debian's swaks: a plain message, then STARTTLS with a
// pipelined transaction, then a refused recipient.
func TestSwaks(t *testing.T) {
	swaks := testenv.Require(t, "swaks", "apt-get install swaks")
	h, _ := tlsGateway(t, Config{})
	run := func(args ...string) string {
		t.Helper()
		out, _ := exec.Command(swaks, append([]string{"--server", h.addr, "--helo", "swaks.test", "--from", "sw@remote.test"}, args...)...).CombinedOutput()
		return string(out)
	}
	out := run("--to", "a@example.test")
	if !strings.Contains(out, "<-  250 2.0.0 OK: queued as ") {
		t.Errorf("plain delivery:\n%s", out)
	}
	out = run("--to", "b@example.test", "--tls", "--pipeline")
	if !strings.Contains(out, "<~  250 2.0.0 OK: queued as ") || !strings.Contains(out, "TLS started") {
		t.Errorf("STARTTLS + PIPELINING:\n%s", out)
	}
	out = run("--to", "c@nowhere.test")
	if !strings.Contains(out, "<** 550 5.7.1 Relaying denied") {
		t.Errorf("relay attempt:\n%s", out)
	}
	if n := len(h.rawKeys()); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}
}
