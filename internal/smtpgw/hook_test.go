package smtpgw

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/webhook"
)

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// policyHookServer is a hook that verifies each request's Standard
// Webhooks signature and answers per stage.
type policyHookServer struct {
	*httptest.Server
	mu      sync.Mutex
	answer  map[string]func(http.ResponseWriter, *http.Request)
	queries []*policyhook.Query
}

func startHook(t *testing.T) *policyHookServer {
	t.Helper()
	v, err := webhook.NewVerifier(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	hs := &policyHookServer{answer: map[string]func(http.ResponseWriter, *http.Request){}}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, body); err != nil {
			t.Errorf("hook request signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req policyhook.Request
		if err := json.Unmarshal(body, &req); err != nil || req.Data == nil {
			t.Errorf("hook request body %q: %v", body, err)
			return
		}
		hs.mu.Lock()
		hs.queries = append(hs.queries, req.Data)
		f := hs.answer[req.Data.Stage]
		hs.mu.Unlock()
		if f == nil {
			f = answerJSON(`{"action":"accept"}`)
		}
		f(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func (hs *policyHookServer) set(stage string, f func(http.ResponseWriter, *http.Request)) {
	hs.mu.Lock()
	hs.answer[stage] = f
	hs.mu.Unlock()
}

func (hs *policyHookServer) asked() []*policyhook.Query {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]*policyhook.Query(nil), hs.queries...)
}

func answerJSON(s string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, s) }
}

// hang never answers: the gateway's deadline ends the request.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func hookRoutes(url, extra string) string {
	return routesWithPolicy("  hook: {url: \"" + url + "\", secret_env: TEST_HOOK_SECRET" + extra + "}\n")
}

func hookConfig() Config {
	return Config{HookEgress: egress.Policy{AllowLoopback: true}, Getenv: func(k string) string {
		if k == "TEST_HOOK_SECRET" {
			return hookSecret
		}
		return ""
	}}
}

// TestPolicyHookReplies: the hook's accept, reject, defer and quarantine
// answers, and its timeout under both failure modes, give the documented
// reply at RCPT and at the end of DATA.
func TestPolicyHookReplies(t *testing.T) {
	hs := startHook(t)
	open := startGatewayWith(t, hookConfig(), tmpStore(t), hookRoutes(hs.URL, ", timeout: 300ms, fail: open"))
	closed := startGatewayWith(t, hookConfig(), tmpStore(t), hookRoutes(hs.URL, ", timeout: 300ms, fail: closed"))
	for _, tt := range []struct {
		name     string
		h        *harness
		answer   func(http.ResponseWriter, *http.Request)
		code     int
		enhanced string
		text     string
	}{
		{"accept", closed, answerJSON(`{"action":"accept"}`), 250, "2.0.0", ""},
		{"reject", closed, answerJSON(`{"action":"reject","code":554,"enhanced_code":"5.7.26","message":"Unauthenticated mail refused"}`), 554, "5.7.26", "Unauthenticated mail refused"},
		{"reject default code", closed, answerJSON(`{"action":"reject"}`), 550, "5.7.1", "Message refused by policy"},
		{"defer", closed, answerJSON(`{"action":"defer","code":451,"enhanced_code":"4.7.1","message":"Greylisted, come back in 5 minutes"}`), 451, "4.7.1", "Greylisted, come back in 5 minutes"},
		{"timeout open", open, hang, 250, "2.0.0", ""},
		{"timeout closed", closed, hang, 451, "4.7.0", "Policy check temporarily unavailable"},
	} {
		for _, stage := range []string{policyhook.StageRcpt, policyhook.StageData} {
			t.Run(tt.name+" at "+stage, func(t *testing.T) {
				hs.set(policyhook.StageRcpt, nil)
				hs.set(policyhook.StageData, nil)
				hs.set(stage, tt.answer)
				before := tt.h.rawKeys()
				c := dialRaw(t, tt.h.addr)
				c.hello("client.test")
				c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
				if stage == policyhook.StageRcpt {
					text := c.cmd("RCPT TO:<a@example.test>", tt.code, tt.enhanced)
					if !strings.Contains(text, tt.text) {
						t.Errorf("reply %q lacks %q", text, tt.text)
					}
					return
				}
				c.cmd("RCPT TO:<a@example.test>", 250, "2.0.0")
				c.cmd("DATA", 354, "")
				c.send(testMessage("hooked") + ".\r\n")
				text := c.expect(tt.code, tt.enhanced)
				if !strings.Contains(text, tt.text) {
					t.Errorf("reply %q lacks %q", text, tt.text)
				}
				after := tt.h.rawKeys()
				if tt.code == 250 && len(after) != len(before)+1 {
					t.Errorf("accepted message not in raw/: %d → %d", len(before), len(after))
				}
				if tt.code != 250 && len(after) != len(before) {
					t.Errorf("refused message left in raw/: %d → %d", len(before), len(after))
				}
				c.cmd("QUIT", 221, "")
			})
		}
	}
	// What the hook was told.
	var rcptQ, dataQ *policyhook.Query
	for _, q := range hs.asked() {
		switch {
		case q.Stage == policyhook.StageRcpt && rcptQ == nil:
			rcptQ = q
		case q.Stage == policyhook.StageData && dataQ == nil:
			dataQ = q
		}
	}
	if rcptQ == nil || rcptQ.Rcpt != "a@example.test" || rcptQ.MailFrom != "s@remote.test" || rcptQ.Client.IP != "127.0.0.1" ||
		rcptQ.Client.HELO != "client.test" || rcptQ.RcptTo == nil || len(rcptQ.RcptTo) != 0 || rcptQ.MessageID == "" || rcptQ.SessionID == "" {
		t.Errorf("rcpt query = %+v", rcptQ)
	}
	if dataQ == nil || len(dataQ.RcptTo) != 1 || dataQ.Size == 0 || !hasHeader(dataQ.Headers, "Subject", "hooked") || !hasHeader(dataQ.Headers, "Received", "") {
		t.Errorf("data query = %+v", dataQ)
	}
	if got := closed.metric("letterbox_smtp_policy_hook_total", "stage", "rcpt", "result", "error"); got != 1 {
		t.Errorf("rcpt errors = %v", got)
	}
}

func hasHeader(hs []policyhook.Header, name, contains string) bool {
	for _, h := range hs {
		if h.Name == name && strings.Contains(h.Value, contains) {
			return true
		}
	}
	return false
}

// TestPolicyHookQuarantine: a quarantine answer gives 250 and keeps the
// message in quarantine/, out of raw/ (so it is not delivered); so does a
// refusal after the message was stored.
func TestPolicyHookQuarantine(t *testing.T) {
	hs := startHook(t)
	h := startGatewayWith(t, hookConfig(), tmpStore(t), hookRoutes(hs.URL, ""))
	for _, tt := range []struct {
		stage, answer string
		code          int
	}{
		{policyhook.StageData, `{"action":"quarantine"}`, 250},
		{policyhook.StageRcpt, `{"action":"quarantine"}`, 250},
		{policyhook.StageData, `{"action":"reject","code":550}`, 550},
	} {
		hs.set(policyhook.StageRcpt, nil)
		hs.set(policyhook.StageData, nil)
		hs.set(tt.stage, answerJSON(tt.answer))
		before := len(h.rawKeys())
		c := dialRaw(t, h.addr)
		c.hello("client.test")
		c.envelope("s@remote.test", "a@example.test")
		c.cmd("DATA", 354, "")
		c.send(testMessage("quarantine") + ".\r\n")
		text := c.expect(tt.code, "")
		id := ""
		if tt.code == 250 {
			id = queuedID(t, text)
		}
		if id == "" {
			h.waitLog("transaction", "reason", reasonPolicyHook, "code", float64(tt.code))
			if keys := h.rawKeys(); len(keys) != before {
				t.Fatalf("%s at %s: raw/ holds %v, %d before", tt.answer, tt.stage, keys, before)
			}
			continue
		}
		h.waitLog("transaction", "result", "quarantined", "rule", "policy.hook", "code", float64(tt.code))
		// The raw object's verdicts keep ingest from routing it (it
		// expires with raw/; nothing deletes); the copy is under
		// quarantine/ with the envelope and the verdicts.
		_, raw, err := h.st.Get(t.Context(), store.RawKey(id))
		if err != nil {
			t.Fatal(err)
		}
		if v, err := store.ReadVerdicts(t.Context(), h.st, raw); err != nil || v == nil || v.Disposition != store.DispositionQuarantine || v.Rule != "policy.hook" {
			t.Fatalf("%s at %s: raw object's verdicts %+v, %v", tt.answer, tt.stage, v, err)
		}
		rc, obj, err := h.st.Get(t.Context(), store.QuarantineKey(id))
		if err != nil {
			t.Fatalf("quarantined message: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !strings.Contains(string(b), "Subject: quarantine") || obj.Meta[store.MetaVerdictsKey] == "" || obj.Meta[store.MetaEnvelope] == "" {
			t.Fatalf("quarantined object meta %v", obj.Meta)
		}
	}
}

// TestPolicyHookHostile: a hook that misbehaves gets the failure mode
// applied within its deadline, and the gateway keeps serving.
func TestPolicyHookHostile(t *testing.T) {
	hs := startHook(t)
	h := startGatewayWith(t, hookConfig(), tmpStore(t), hookRoutes(hs.URL, ", timeout: 500ms, fail: closed"))
	for _, tt := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
	}{
		{"huge body", func(w http.ResponseWriter, _ *http.Request) {
			chunk := strings.Repeat(" ", 64<<10)
			for range 256 { // 16 MiB of whitespace before nothing
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}},
		{"slow drip", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for _, b := range []byte(`{"action":"accept"}`) {
				w.Write([]byte{b})
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}},
		{"invalid JSON", answerJSON(`{"action": accept}`)},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
		}},
		{"reply injection", answerJSON(`{"action":"reject","message":"no\r\n250 2.0.0 OK"}`)},
		{"reject with a 2xx code", answerJSON(`{"action":"reject","code":250}`)},
		{"defer with a 5xx code", answerJSON(`{"action":"defer","code":550}`)},
		{"server error", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hs.set(policyhook.StageRcpt, tt.answer)
			c := dialRaw(t, h.addr)
			c.hello("client.test")
			c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
			c.cmd("RCPT TO:<a@example.test>", 451, "4.7.0")
			c.cmd("QUIT", 221, "")
		})
	}
	// Still healthy: a good answer goes through on a new connection.
	hs.set(policyhook.StageRcpt, nil)
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	if err := h.g.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.waitLog("policy hook failed; deferring (hook.fail: closed)", "stage", "rcpt")
}

// TestPolicyHookSSRF: the hook connects only where the egress guard
// allows; a hook on a private or loopback address is refused at call
// time, and the failure mode applies.
func TestPolicyHookSSRF(t *testing.T) {
	hs := startHook(t)
	for _, url := range []string{hs.URL, "http://10.0.0.1:8080/policy", "http://169.254.169.254/"} {
		cfg := hookConfig()
		cfg.HookEgress = egress.Policy{} // as the gateway binary runs
		h := startGatewayWith(t, cfg, tmpStore(t), hookRoutes(url, ", fail: closed"))
		c := dialRaw(t, h.addr)
		c.hello("client.test")
		c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
		c.cmd("RCPT TO:<a@example.test>", 451, "4.7.0")
		line := h.waitLog("policy hook failed; deferring (hook.fail: closed)")
		if !strings.Contains(line["err"].(string), "destination address is not allowed") {
			t.Errorf("%s: err = %v", url, line["err"])
		}
	}
	if n := len(hs.asked()); n != 0 {
		t.Fatalf("the hook on loopback was reached %d times", n)
	}
}

// TestPolicyHookFlag: --policy-hook sets the hook without a policy: key
// (secret from LETTERBOX_POLICY_HOOK_SECRET), with the defaults (fail:
// closed); without a secret the gateway refuses to start. A go-smtp
// client sees the reject.
func TestPolicyHookFlag(t *testing.T) {
	hs := startHook(t)
	hs.set(policyhook.StageRcpt, answerJSON(`{"action":"reject","code":550,"enhanced_code":"5.7.1","message":"Not via this hook"}`))
	cfg := Config{HookEgress: egress.Policy{AllowLoopback: true}, PolicyHook: hs.URL, PolicyHookSecret: hookSecret}
	h := startGatewayWith(t, cfg, tmpStore(t), testRoutes)
	sc, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Mail("s@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	err = sc.Rcpt("a@example.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || se.Message != "Not via this hook" {
		t.Fatalf("RCPT = %v", err)
	}

	// A routes file's hook whose secret_env is empty stops the start too.
	if _, err := New(Config{Addr: "127.0.0.1:0", Getenv: func(string) string { return "" }}, tmpStore(t),
		routing.Static(parseRoutes(t, hookRoutes(hs.URL, ""))), nil, nil); err == nil || !strings.Contains(err.Error(), `policy.hook: no signing secret`) {
		t.Errorf("New with an empty secret_env = %v", err)
	}
	for _, bad := range []Config{
		{Addr: "127.0.0.1:0", PolicyHook: hs.URL},
		{Addr: "127.0.0.1:0", PolicyHook: hs.URL, PolicyHookSecret: "whsec_%%%"},
		{Addr: "127.0.0.1:0", PolicyHook: "ftp://h.test/", PolicyHookSecret: hookSecret},
	} {
		if _, err := New(bad, tmpStore(t), routing.Static(parseRoutes(t, testRoutes)), nil, nil); err == nil || !strings.Contains(err.Error(), "policy-hook") && !strings.Contains(err.Error(), "POLICY_HOOK_SECRET") {
			t.Errorf("New(%q) = %v", bad.PolicyHook, err)
		} else if strings.Contains(err.Error(), "%%%") {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

func parseRoutes(t *testing.T, src string) *routing.Config {
	t.Helper()
	rc, err := routing.Parse("routes.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestPolicyHookRefusesBeforeCommit: a reject at the end of DATA is
// decided before the store commits: no raw object, no storage event (so
// nothing is routed), no quarantine copy; the session goes on.
func TestPolicyHookRefusesBeforeCommit(t *testing.T) {
	hs := startHook(t)
	hs.set(policyhook.StageData, answerJSON(`{"action":"reject","code":554,"enhanced_code":"5.7.1","message":"Content refused"}`))
	var mu sync.Mutex
	seen := 0
	st := store.WithEvents(tmpStore(t), "bucket", func(context.Context, events.S3EventRecord) {
		mu.Lock()
		seen++
		mu.Unlock()
	})
	h := startGatewayWith(t, hookConfig(), st, hookRoutes(hs.URL, ""))
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("refused") + ".\r\n")
	c.expect(554, "5.7.1")
	// The session goes on: the next message is accepted.
	hs.set(policyhook.StageData, nil)
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send(testMessage("accepted") + ".\r\n")
	c.expect(250, "2.0.0")
	mu.Lock()
	defer mu.Unlock()
	if seen != 1 || len(h.rawKeys()) != 1 {
		t.Fatalf("%d storage events, raw/ %v; want only the accepted message", seen, h.rawKeys())
	}
	var quarantined []string
	h.st.List(t.Context(), store.QuarantinePrefix, "", func(o store.Object) bool { quarantined = append(quarantined, o.Key); return true })
	if len(quarantined) != 0 {
		t.Fatalf("quarantine/ holds %v", quarantined)
	}
	h.waitLog("transaction", "code", float64(554), "result", "refused", "reason", reasonPolicyHook)
}
