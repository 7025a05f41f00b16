package smtpgw

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPHandler: /healthz, /readyz (which fails once shutdown starts) and
// /metrics with the gateway's series.
func TestHTTPHandler(t *testing.T) {
	h := startGateway(t, Config{})
	srv := httptest.NewServer(h.g.HTTPHandler(h.reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 250, "2.0.0")
	c.cmd("RCPT TO:<x@nowhere.test>", 550, "5.7.1")
	c.cmd("QUIT", 221, "2.0.0")
	h.waitLog("session")

	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`letterbox_smtp_connections_total{listener="smtp",result="accepted"} 1`,
		`letterbox_smtp_policy_rejections_total{reason="relay_denied"} 1`,
		`letterbox_smtp_transactions_total{code="0",listener="smtp"} 1`,
		`letterbox_smtp_connections_open{listener="smtp"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
	if err := h.g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after shutdown: %d %q", code, body)
	}
}
