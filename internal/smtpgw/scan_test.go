package smtpgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

func ptr[T any](v T) *T { return &v }

// scanGateway runs a gateway with scanners and a policy over a fresh file
// store.
func scanGateway(t *testing.T, cfg Config, pol *routing.Policy) *harness {
	t.Helper()
	st, err := filestore.New(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc, err := routing.Parse("routes.yaml", []byte(testRoutes))
	if err != nil {
		t.Fatal(err)
	}
	// The policy, set directly (the YAML form is tested too).
	rc.Policy = pol
	return startGatewayLive(t, cfg, st, routing.Static(rc))
}

// sendMail sends one message with go-smtp's client and returns the reply
// to the end of DATA: its code, enhanced code and text.
func sendMail(t *testing.T, addr string, body io.Reader) (int, string, string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("rcpt@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, body); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatal(err)
		}
		ec := se.EnhancedCode
		return se.Code, fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2]), se.Message
	}
	_ = c.Quit()
	return 250, "2.0.0", resp.StatusText
}

func scanMessage(subject, body string) string {
	return "From: Sender <sender@remote.test>\r\nTo: rcpt@example.test\r\nSubject: " + subject + "\r\n" +
		"Date: Sun, 6 Dec 2026 14:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@remote.test>\r\n\r\n" + body + "\r\n"
}

// refID reads the message id from a refusal's "reference <id>".
func refID(t *testing.T, text string) string {
	t.Helper()
	_, id, ok := strings.Cut(text, "reference ")
	if !ok || len(id) != 26 {
		t.Fatalf("reply %q names no reference", text)
	}
	return id
}

// parsed parses a stored message as ingest does and returns its JSON
// form.
func (h *harness) parsed(key string) *message.Message {
	h.t.Helper()
	m, err := (&ingest.Handler{Store: h.st}).Parse(context.Background(), key)
	if err != nil {
		h.t.Fatalf("parse %s: %v", key, err)
	}
	return m
}

func (h *harness) verdicts(id string) store.Verdicts {
	h.t.Helper()
	var v store.Verdicts
	if err := store.GetJSON(context.Background(), h.st, store.VerdictsKey(id), &v); err != nil {
		h.t.Fatalf("verdicts of %s: %v", id, err)
	}
	return v
}

func (h *harness) exists(key string) bool {
	h.t.Helper()
	_, err := h.st.Stat(context.Background(), key)
	if err != nil && !store.IsNotFound(err) {
		h.t.Fatal(err)
	}
	return err == nil
}

// TestScanners runs real rspamd and clamd on loopback and sends mail to
// the gateway over SMTP.
func TestScanners(t *testing.T) {
	rspamd := testenv.StartRspamd(t, testenv.RspamdOptions{})
	clamd := testenv.StartClamd(t, testenv.ClamdOptions{})
	both := Config{Rspamd: rspamd.URL(), Clamd: clamd.ClamdAddr()}

	t.Run("GTUBE refused with 550 5.7.1 at reject_at", func(t *testing.T) {
		// The policy as the routes file gives it.
		h := startGatewayWith(t, both, tmpStore(t), routesWithPolicy("  spam: {reject_at: 15, quarantine_at: 6}\n  scanners: {fail: closed, timeout: 20s}\n"))
		code, enh, text := sendMail(t, h.addr, strings.NewReader(scanMessage("gtube", testenv.GTUBE)))
		if code != 550 || enh != "5.7.1" {
			t.Fatalf("reply %d %s %s; want 550 5.7.1", code, enh, text)
		}
		id := refID(t, text)
		if !h.exists(store.QuarantineKey(id)) {
			t.Error("refused message not copied to quarantine/")
		}
		// Its raw/ object is not routed (its verdicts say so) and expires.
		if m := h.parsed(store.RawKey(id)); m.Spam == nil || m.Spam.Action != "reject" {
			t.Errorf("raw object's spam verdict %+v", m.Spam)
		}
		v := h.verdicts(id)
		if v.Disposition != store.DispositionReject || v.Rule != "policy.spam.reject_at" || v.Code != "550 5.7.1" || v.Spam.Action != "reject" || v.Virus.Result != "clean" {
			t.Errorf("verdicts %+v", v)
		}
		h.waitLog("transaction", "code", 550, "rule", "policy.spam.reject_at", "reason", "spam", "spam_action", "reject", "disposition", "reject")
		if got := h.metric("letterbox_smtp_policy_rejections_total", "reason", "spam"); got != 1 {
			t.Errorf("spam rejections %v, want 1", got)
		}
		if got := h.metric("letterbox_smtp_scan_verdicts_total", "scanner", "rspamd", "verdict", "reject"); got != 1 {
			t.Errorf("rspamd reject verdicts %v, want 1", got)
		}
		if got := h.metric("letterbox_smtp_scan_verdicts_total", "scanner", "clamd", "verdict", "clean"); got != 1 {
			t.Errorf("clamd clean verdicts %v, want 1", got)
		}
	})

	t.Run("GTUBE only tagged: spam.action reject in the JSON", func(t *testing.T) {
		h := scanGateway(t, both, nil)
		code, enh, text := sendMail(t, h.addr, strings.NewReader(scanMessage("gtube tagged", testenv.GTUBE)))
		if code != 250 {
			t.Fatalf("reply %d %s %s; want 250", code, enh, text)
		}
		id := queuedID(t, text)
		m := h.parsed(store.RawKey(id))
		if m.Spam == nil || m.Spam.Action != "reject" || m.Spam.Score < 15 || m.Spam.Scanner != "rspamd" || len(m.Spam.Symbols) == 0 {
			t.Fatalf("spam %+v", m.Spam)
		}
		if m.Virus == nil || m.Virus.Result != "clean" || m.Virus.Scanner != "clamd" {
			t.Fatalf("virus %+v", m.Virus)
		}
	})

	t.Run("EICAR refused with 554 5.7.1", func(t *testing.T) {
		h := scanGateway(t, both, &routing.Policy{Virus: &routing.VirusPolicy{Infected: "reject"}})
		code, enh, text := sendMail(t, h.addr, strings.NewReader(scanMessage("eicar", testenv.EICAR)))
		if code != 554 || enh != "5.7.1" || !strings.Contains(text, "Eicar-Test-Signature") {
			t.Fatalf("reply %d %s %s; want 554 5.7.1 naming the signature", code, enh, text)
		}
		id := refID(t, text)
		if !h.exists(store.QuarantineKey(id)) {
			t.Error("refused message not copied to quarantine/")
		}
		h.waitLog("transaction", "code", 554, "rule", "policy.virus.infected", "virus", "infected")
	})

	t.Run("test signature quarantined and accepted", func(t *testing.T) {
		h := scanGateway(t, both, &routing.Policy{Virus: &routing.VirusPolicy{Infected: "quarantine"}})
		code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("virus", "see "+testenv.TestVirus)))
		if code != 250 {
			t.Fatalf("reply %d %s; want 250", code, text)
		}
		id := queuedID(t, text)
		if !h.exists(store.QuarantineKey(id)) {
			t.Fatal("quarantined message not under quarantine/")
		}
		v := h.verdicts(id)
		if v.Disposition != store.DispositionQuarantine || v.Rule != "policy.virus.infected" || v.Virus.Signatures[0] != "Letterbox-Test-Signature.UNOFFICIAL" {
			t.Errorf("verdicts %+v", v)
		}
		// The quarantined copy keeps its envelope and verdicts.
		ctx := context.Background()
		obj, err := h.st.Stat(ctx, store.QuarantineKey(id))
		if err != nil {
			t.Fatal(err)
		}
		env, err := store.Envelope(ctx, h.st, obj)
		if err != nil || env == nil || env.MailFrom != "sender@remote.test" {
			t.Errorf("quarantined envelope %+v, %v", env, err)
		}
		if qv, err := store.ReadVerdicts(ctx, h.st, obj); err != nil || qv == nil || qv.Virus.Result != "infected" {
			t.Errorf("quarantined verdicts %+v, %v", qv, err)
		}
		h.waitLog("transaction", "code", 250, "result", "quarantined", "rule", "policy.virus.infected")
	})

	t.Run("spam over quarantine_at quarantined", func(t *testing.T) {
		h := scanGateway(t, both, &routing.Policy{Spam: &routing.SpamPolicy{QuarantineAt: ptr(10.0)}})
		code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("gtube q", testenv.GTUBE)))
		if code != 250 {
			t.Fatalf("reply %d %s", code, text)
		}
		id := queuedID(t, text)
		if !h.exists(store.QuarantineKey(id)) || h.verdicts(id).Rule != "policy.spam.quarantine_at" {
			t.Fatal("not quarantined by policy.spam.quarantine_at")
		}
	})

	t.Run("clean mail passes", func(t *testing.T) {
		h := scanGateway(t, both, &routing.Policy{Spam: &routing.SpamPolicy{RejectAt: ptr(15.0)}, Virus: &routing.VirusPolicy{Infected: "reject"},
			Scanners: &routing.ScannerPolicy{Fail: "closed"}})
		code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("lunch", "Lunch on Tuesday?")))
		if code != 250 {
			t.Fatalf("reply %d %s", code, text)
		}
		id := queuedID(t, text)
		m := h.parsed(store.RawKey(id))
		if m.Spam == nil || m.Spam.Score >= 15 || m.Spam.Action == "error" || m.Virus == nil || m.Virus.Result != "clean" {
			t.Fatalf("spam %+v virus %+v", m.Spam, m.Virus)
		}
		if v := h.verdicts(id); v.Disposition != store.DispositionAccept {
			t.Errorf("disposition %q", v.Disposition)
		}
	})

	t.Run("on S3", func(t *testing.T) {
		// The verdicts object is written while the raw object's (multipart)
		// upload waits for its last part.
		v := testenv.StartVersity(t, testenv.VersityOptions{})
		v.SetEnv(t)
		st, err := s3store.New(t.Context(), v.StoreURL("mail"))
		if err != nil {
			t.Fatal(err)
		}
		rc := mustRoutes(t)
		rc.Policy = &routing.Policy{Spam: &routing.SpamPolicy{RejectAt: ptr(15.0)}}
		h := startGatewayLive(t, both, st, routing.Static(rc))
		code, enh, text := sendMail(t, h.addr, strings.NewReader(scanMessage("gtube s3", testenv.GTUBE)))
		if code != 550 || enh != "5.7.1" {
			t.Fatalf("reply %d %s %s; want 550 5.7.1", code, enh, text)
		}
		id := refID(t, text)
		obj, err := st.Stat(t.Context(), store.QuarantineKey(id))
		if err != nil {
			t.Fatalf("quarantine copy: %v", err)
		}
		if qv, err := store.ReadVerdicts(t.Context(), st, obj); err != nil || qv == nil || qv.Disposition != store.DispositionReject {
			t.Fatalf("quarantine copy's verdicts %+v, %v", qv, err)
		}
		big := scanMessage("big s3", strings.Repeat("Lunch on Tuesday? Bring the minutes, please.\r\n", 12<<20/46))
		code, _, text = sendMail(t, h.addr, strings.NewReader(big))
		if code != 250 {
			t.Fatalf("12 MiB message: %d %s", code, text)
		}
		m := h.parsed(store.RawKey(queuedID(t, text)))
		if m.Spam == nil || m.Spam.Action == "error" || m.Virus == nil || m.Virus.Result != "clean" || m.Size < 12<<20 {
			t.Fatalf("12 MiB message: spam %+v virus %+v size %d", m.Spam, m.Virus, m.Size)
		}
	})

	t.Run("policy hook with the verdicts", func(t *testing.T) {
		hs := startHook(t)
		cfg := hookConfig()
		cfg.Rspamd, cfg.Clamd = both.Rspamd, both.Clamd
		h := startGatewayWith(t, cfg, tmpStore(t), hookRoutes(hs.URL, ""))
		gtube := func(subject string) (int, string, string) {
			return sendMail(t, h.addr, strings.NewReader(scanMessage(subject, testenv.GTUBE)))
		}

		code, _, text := gtube("hook accept")
		if code != 250 {
			t.Fatalf("accept: %d %s", code, text)
		}
		var data *policyhook.Query
		for _, q := range hs.asked() {
			if q.Stage == policyhook.StageData {
				data = q
			}
		}
		if data == nil || data.Spam == nil || data.Spam.Action != "reject" || data.Virus == nil || data.Virus.Result != "clean" {
			t.Fatalf("the hook's end-of-DATA question lacks the verdicts: %+v", data)
		}

		hs.set(policyhook.StageData, answerJSON(`{"action":"reject","code":550,"enhanced_code":"5.7.1","message":"Not here"}`))
		before := len(h.rawKeys())
		code, enh, text := gtube("hook reject")
		if code != 550 || enh != "5.7.1" || text != "Not here" {
			t.Fatalf("reject: %d %s %s", code, enh, text)
		}
		if n := len(h.rawKeys()); n != before {
			t.Errorf("raw objects %d, want %d: a hook refusal stores nothing", n, before)
		}

		hs.set(policyhook.StageData, answerJSON(`{"action":"quarantine"}`))
		code, _, text = gtube("hook quarantine")
		if code != 250 {
			t.Fatalf("quarantine: %d %s", code, text)
		}
		id := queuedID(t, text)
		if v := h.verdicts(id); v.Disposition != store.DispositionQuarantine || v.Rule != "policy.hook" || v.Spam.Action != "reject" {
			t.Errorf("verdicts %+v", v)
		}
		if !h.exists(store.QuarantineKey(id)) {
			t.Error("not copied to quarantine/")
		}
	})

	t.Run("stopped scanner", func(t *testing.T) {
		// Each case gets a scanner that was running and is stopped.
		stopped := testenv.StartClamd(t, testenv.ClamdOptions{})
		stopped.Stop()
		cfg := Config{Rspamd: rspamd.URL(), Clamd: stopped.ClamdAddr()}
		t.Run("fail open accepts with verdict error", func(t *testing.T) {
			h := scanGateway(t, cfg, &routing.Policy{Scanners: &routing.ScannerPolicy{Fail: "open"}})
			code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("open", "hello")))
			if code != 250 {
				t.Fatalf("reply %d %s; want 250", code, text)
			}
			m := h.parsed(store.RawKey(queuedID(t, text)))
			if m.Virus == nil || m.Virus.Result != "error" || m.Virus.Error == "" || m.Spam == nil || m.Spam.Action == "error" {
				t.Fatalf("virus %+v spam %+v", m.Virus, m.Spam)
			}
		})
		t.Run("fail closed gives 451 4.7.0 and stores nothing", func(t *testing.T) {
			h := scanGateway(t, cfg, &routing.Policy{Scanners: &routing.ScannerPolicy{Fail: "closed"}})
			code, enh, text := sendMail(t, h.addr, strings.NewReader(scanMessage("closed", "hello")))
			if code != 451 || enh != "4.7.0" {
				t.Fatalf("reply %d %s %s; want 451 4.7.0", code, enh, text)
			}
			if keys := h.rawKeys(); len(keys) != 0 {
				t.Errorf("raw objects %v; want none", keys)
			}
			h.waitLog("transaction", "code", 451, "rule", "policy.scanners.fail", "virus", "error")
		})
	})
}

// TestScannerDeadline: a scanner that stalls is cut off at
// policy.scanners.timeout, and the failure mode applies.
func TestScannerDeadline(t *testing.T) {
	// An rspamd that never answers.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	// A clamd that accepts and never reads.
	stalled := testenv.StalledListener(t)
	timeout := routing.Duration(500 * time.Millisecond)
	big := scanMessage("big", strings.Repeat("0123456789abcdef0123456789abcdef\r\n", 64<<10)) // 2 MiB: more than socket buffers

	t.Run("rspamd never answers, fail open", func(t *testing.T) {
		h := scanGateway(t, Config{Rspamd: srv.URL}, &routing.Policy{Scanners: &routing.ScannerPolicy{Fail: "open", Timeout: timeout}})
		start := time.Now()
		code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("slow", "hello")))
		if code != 250 {
			t.Fatalf("reply %d %s", code, text)
		}
		m := h.parsed(store.RawKey(queuedID(t, text)))
		if m.Spam == nil || m.Spam.Action != "error" || m.Spam.Error != "scanner timed out" {
			t.Fatalf("spam %+v", m.Spam)
		}
		t.Logf("answered after %v with a %v deadline", time.Since(start), time.Duration(timeout))
	})
	t.Run("clamd never reads, fail closed", func(t *testing.T) {
		h := scanGateway(t, Config{Clamd: "tcp://" + stalled}, &routing.Policy{Scanners: &routing.ScannerPolicy{Fail: "closed", Timeout: timeout}})
		code, enh, text := sendMail(t, h.addr, strings.NewReader(big))
		if code != 451 || enh != "4.7.0" {
			t.Fatalf("reply %d %s %s; want 451 4.7.0", code, enh, text)
		}
		line := h.waitLog("transaction", "code", 451, "virus", "error")
		if !strings.Contains(fmt.Sprint(line["virus_error"]), "deadline") && !strings.Contains(fmt.Sprint(line["virus_error"]), "timed out") {
			t.Errorf("virus_error %v; want a missed deadline", line["virus_error"])
		}
	})
}

// TestScanMemory streams a 150 MiB message through both scanners and the
// store: the heap stays bounded (the tee hands blocks on, it buffers
// nothing whole).
func TestScanMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("150 MiB")
	}
	rspamd := testenv.StartRspamd(t, testenv.RspamdOptions{})
	clamd := testenv.StartClamd(t, testenv.ClamdOptions{StreamMaxLength: 200 << 20})
	h := scanGateway(t, Config{Rspamd: rspamd.URL(), Clamd: clamd.ClamdAddr(), MaxMessageBytes: 200 << 20},
		&routing.Policy{Scanners: &routing.ScannerPolicy{Fail: "closed", Timeout: routing.Duration(5 * time.Minute)}})
	const size = 150 << 20
	head := "From: Sender <sender@remote.test>\r\nTo: rcpt@example.test\r\nSubject: big\r\n\r\n"
	line := strings.Repeat("x", 76) + "\r\n"
	body := io.MultiReader(strings.NewReader(head), io.LimitReader(&repeatReader{s: line}, size), strings.NewReader(testenv.TestVirus+"\r\n"))

	grown := testenv.HeapGrowth()
	code, _, text := sendMail(t, h.addr, body)
	g := grown()
	t.Logf("150 MiB message through rspamd and clamd: peak heap growth %.1f MiB", float64(g)/(1<<20))
	if code != 250 {
		t.Fatalf("reply %d %s", code, text)
	}
	if g > 64<<20 {
		t.Fatalf("heap grew by %.1f MiB; want under 64 MiB", float64(g)/(1<<20))
	}
	v := h.verdicts(queuedID(t, text))
	// rspamd's 50 MiB limit: not scanned, accepted even though failing
	// closed (retrying would not help). clamd saw the whole message,
	// with the test signature at its very end.
	if v.Spam == nil || v.Spam.Action != "error" || !strings.Contains(v.Spam.Error, "size limit") {
		t.Errorf("spam %+v; want an error for the size limit", v.Spam)
	}
	if v.Virus == nil || v.Virus.Result != "infected" {
		t.Errorf("virus %+v; want infected (the signature is in the last line)", v.Virus)
	}
}

// repeatReader repeats s forever.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

// TestScannerConfig: bad scanner addresses stop New, naming the flag.
func TestScannerConfig(t *testing.T) {
	routes := routing.Static(mustRoutes(t))
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{Addr: ":0", Rspamd: "127.0.0.1:11333"}, `--rspamd: rspamd "127.0.0.1:11333": want an http or https URL`},
		{Config{Addr: ":0", Clamd: "127.0.0.1:3310"}, `--clamd: clamd "127.0.0.1:3310": want tcp://HOST:PORT or unix:///PATH`},
		{Config{Addr: ":0", Clamd: "unix://clamd.sock"}, "--clamd"},
	} {
		if _, err := New(tt.c, tmpStore(t), routes, nil, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.c, err, tt.want)
		}
	}
	g, err := New(Config{Addr: ":0", Rspamd: "http://127.0.0.1:11333/", Clamd: "unix:///run/clamav/clamd.ctl"}, tmpStore(t), routes, nil, nil)
	if err != nil || !g.scanners.Enabled() {
		t.Fatalf("New = %v, scanners %+v", err, g)
	}
}

// TestDecide: the order of the policy's decisions, table by table.
func TestDecide(t *testing.T) {
	spam := func(score float64) *message.Spam { return &message.Spam{Score: score, Action: "no action"} }
	infected := &message.Virus{Result: "infected", Signatures: []string{"Sig"}}
	clean := &message.Virus{Result: "clean"}
	down := errors.New("connection refused")
	full := &routing.Policy{
		Spam:     &routing.SpamPolicy{RejectAt: ptr(15.0), QuarantineAt: ptr(6.0)},
		Virus:    &routing.VirusPolicy{Infected: "quarantine"},
		Scanners: &routing.ScannerPolicy{Fail: "closed"},
	}
	for _, tt := range []struct {
		name        string
		pol         *routing.Policy
		res         scan.Result
		disposition string
		rule        string
		code        int
	}{
		{"no policy tags everything", nil, scan.Result{Spam: spam(30), Virus: infected}, store.DispositionAccept, "", 0},
		{"no policy fails open", nil, scan.Result{Spam: &message.Spam{Action: "error"}, SpamErr: down}, store.DispositionAccept, "", 0},
		{"at reject_at", full, scan.Result{Spam: spam(15), Virus: clean}, store.DispositionReject, "policy.spam.reject_at", 550},
		{"just under reject_at", full, scan.Result{Spam: spam(14.9), Virus: clean}, store.DispositionQuarantine, "policy.spam.quarantine_at", 0},
		{"under quarantine_at", full, scan.Result{Spam: spam(5.9), Virus: clean}, store.DispositionAccept, "", 0},
		{"virus reject beats spam reject", &routing.Policy{Spam: full.Spam, Virus: &routing.VirusPolicy{Infected: "reject"}}, scan.Result{Spam: spam(20), Virus: infected}, store.DispositionReject, "policy.virus.infected", 554},
		{"spam reject beats virus quarantine", full, scan.Result{Spam: spam(20), Virus: infected}, store.DispositionReject, "policy.spam.reject_at", 550},
		{"virus quarantine", full, scan.Result{Spam: spam(0), Virus: infected}, store.DispositionQuarantine, "policy.virus.infected", 0},
		{"virus tag", &routing.Policy{Virus: &routing.VirusPolicy{Infected: "tag"}}, scan.Result{Virus: infected}, store.DispositionAccept, "", 0},
		{"a verdict beats fail closed", full, scan.Result{Spam: spam(20), Virus: &message.Virus{Result: "error"}, VirusErr: down}, store.DispositionReject, "policy.spam.reject_at", 550},
		{"fail closed", full, scan.Result{Spam: spam(1), Virus: &message.Virus{Result: "error"}, VirusErr: down}, store.DispositionReject, "policy.scanners.fail", 451},
		{"too large is not failed closed", full, scan.Result{Spam: &message.Spam{Action: "error"}, SpamErr: scan.ErrTooLarge, Virus: clean}, store.DispositionAccept, "", 0},
		{"a failed spam scan has no score", full, scan.Result{Spam: &message.Spam{Action: "error", Score: 99}, SpamErr: down, Virus: clean}, store.DispositionReject, "policy.scanners.fail", 451},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.pol, tt.res, "01ID")
			code := 0
			if d.Reply != nil {
				code = d.Reply.Code
			}
			if d.Disposition != tt.disposition || d.Rule != tt.rule || code != tt.code {
				t.Fatalf("decide = %+v (code %d), want %s %q %d", d, code, tt.disposition, tt.rule, tt.code)
			}
			if code == 451 && !d.Temporary {
				t.Error("451 must store nothing (Temporary)")
			}
		})
	}
}

// TestScanSpan: with tracing on, the wait for the verdicts is a span,
// smtp.scan, under smtp.data, carrying the verdicts and the decision.
func TestScanSpan(t *testing.T) {
	rec := spanRecorder()
	// An rspamd speaking /checkv2 on loopback (the real one is in
	// TestScanners; this test is about the span).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"score":7.5,"required_score":15,"action":"add header","symbols":{"X":{"name":"X","score":7.5}}}`)
	}))
	t.Cleanup(srv.Close)
	h := scanGateway(t, Config{Rspamd: srv.URL}, &routing.Policy{Spam: &routing.SpamPolicy{QuarantineAt: ptr(6.0)}})
	code, _, text := sendMail(t, h.addr, strings.NewReader(scanMessage("traced scan", "hello")))
	if code != 250 {
		t.Fatalf("reply %d %s", code, text)
	}
	id := queuedID(t, text)
	attr := func(s sdktrace.ReadOnlySpan, key string) any {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value.AsInterface()
			}
		}
		return nil
	}
	deadline := time.Now().Add(safety)
	for {
		var scanSpan, data sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if attr(s, telemetry.AttrMessageID) != id {
				continue
			}
			switch s.Name() {
			case "smtp.scan":
				scanSpan = s
			case "smtp.data":
				data = s
			}
		}
		if scanSpan != nil && data != nil {
			if scanSpan.Parent().SpanID() != data.SpanContext().SpanID() {
				t.Errorf("smtp.scan's parent is %v, want smtp.data", scanSpan.Parent().SpanID())
			}
			if attr(scanSpan, "letterbox.spam_action") != "add header" || attr(scanSpan, "letterbox.disposition") != "quarantine" || attr(scanSpan, "letterbox.rule") != "policy.spam.quarantine_at" {
				t.Errorf("smtp.scan attributes %v", scanSpan.Attributes())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no smtp.scan and smtp.data spans for %s", id)
		}
		time.Sleep(10 * time.Millisecond) // spans end after the reply
	}
}
