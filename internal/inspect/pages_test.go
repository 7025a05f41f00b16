package inspect_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
)

func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestInspectPages renders each page over a real pipeline and checks the
// preview's isolation: sanitised HTML, a CSP with no script and no remote
// image until asked, and the iframe's empty sandbox.
func TestInspectPages(t *testing.T) {
	rc := newReceiver(t)
	srv := startDev(t, "", rc, "")
	base := "http://" + srv.HTTPAddr()
	id := send(t, srv.SMTPAddr(), "Pages <test> & more")
	rc.wait(t, 10*time.Second)
	eventually(t, 10*time.Second, "listed as delivered", func() bool {
		var p listPage
		getJSON(t, base+"/api/v1/messages", &p)
		return len(p.Items) == 1 && p.Items[0].Status == delivery.StatusDelivered
	})

	resp, body := fetch(t, base+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, "Pages &lt;test&gt; &amp; more") || !strings.Contains(body, `href="/messages/`+id+`"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("list: %d %s\n%s", resp.StatusCode, resp.Header, body)
	}
	resp, body = fetch(t, base+"/?q=since:tomorrow")
	if resp.StatusCode != 200 || !strings.Contains(body, `class="error"`) {
		t.Errorf("bad search: %d\n%s", resp.StatusCode, body)
	}
	resp, body = fetch(t, base+"/messages/"+id)
	for _, want := range []string{`<iframe id="preview" sandbox="" referrerpolicy="no-referrer" src="/messages/` + id + `/preview"`,
		"Remote images are blocked", "order.pdf", "Two coffees, please.", "<b>support</b>", "webhook: POST " + rc.srv.URL + "/support"} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("message page: %d", resp.StatusCode)
	}
	resp, body = fetch(t, base+"/messages/"+id+"/preview")
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "sandbox") || strings.Contains(csp, "https:") ||
		strings.Contains(csp, "script-src") {
		t.Fatalf("preview: %d CSP %q", resp.StatusCode, csp)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "onerror") || strings.Contains(body, "pwned") || !strings.Contains(body, `<p id="order">Two <b>coffees</b>, please.</p>`) {
		t.Errorf("preview not sanitised:\n%s", body)
	}
	resp, _ = fetch(t, base+"/messages/"+id+"/preview?images=1")
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "img-src data: cid: 'self' https: http:") {
		t.Errorf("preview with images: CSP %q", resp.Header.Get("Content-Security-Policy"))
	}
	resp, body = fetch(t, base+"/messages/"+id+"/deliveries")
	if resp.StatusCode != 200 || !strings.Contains(body, "route support, action 0") || !strings.Contains(body, `id="dry-run"`) {
		t.Errorf("deliveries page: %d\n%s", resp.StatusCode, body)
	}
	resp, body = fetch(t, base+"/routes")
	if resp.StatusCode != 200 || !strings.Contains(body, "recipient: [support@example.test]") {
		t.Errorf("routes page: %d\n%s", resp.StatusCode, body)
	}
	resp, body = fetch(t, base+"/static/app.js")
	if resp.StatusCode != 200 || !strings.Contains(body, "EventSource") {
		t.Errorf("app.js: %d", resp.StatusCode)
	}
	// The dev server's own endpoints still answer beside the inspector.
	for _, p := range []string{"/healthz", "/metrics"} {
		if resp, _ := fetch(t, base+p); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := fetch(t, base+"/messages/no-such"); resp.StatusCode != 404 {
		t.Errorf("unknown message page: %d", resp.StatusCode)
	}
}
