package inspect_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/inspect"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

type listPage struct {
	Items      []inspect.Item `json:"items"`
	NextBefore string         `json:"next_before"`
}

type deliveriesBody struct {
	MessageID  string            `json:"message_id"`
	Deliveries []delivery.Record `json:"deliveries"`
}

// TestInspectAPIFileStore and TestInspectAPIS3 drive the API over a real
// `letterbox dev` pipeline: a message sent over SMTP is listed (and
// announced on the event stream), found by search, shown whole, its raw
// source and attachment served, its delivery listed, and a replay (dry run
// first) makes a second attempt at the receiver.
func TestInspectAPIFileStore(t *testing.T) { testAPI(t, "") }

func TestInspectAPIS3(t *testing.T) {
	v := testenv.StartVersity(t, testenv.VersityOptions{})
	v.SetEnv(t)
	testAPI(t, v.StoreURL("mail"))
}

func testAPI(t *testing.T, storeURL string) {
	rc := newReceiver(t)
	srv := startDev(t, storeURL, rc, "")
	base := "http://" + srv.HTTPAddr()
	events := sse(t, base+"/api/v1/events")

	id := send(t, srv.SMTPAddr(), "Printer on fire")
	first := rc.wait(t, 10*time.Second)

	// Announced on the event stream.
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case d := <-events:
			var it inspect.Item
			if err := json.Unmarshal([]byte(d), &it); err != nil {
				t.Fatalf("event %q: %v", d, err)
			}
			seen = it.ID == id
		case <-deadline:
			t.Fatal("no event for the message")
		}
	}
	// Listed, delivered.
	var it inspect.Item
	eventually(t, 10*time.Second, "message listed as delivered", func() bool {
		var p listPage
		getJSON(t, base+"/api/v1/messages", &p)
		if len(p.Items) == 1 && p.Items[0].ID == id {
			it = p.Items[0]
		}
		return it.Status == delivery.StatusDelivered
	})
	if it.Subject != "Printer on fire" || it.From != "elodie@example.org" || len(it.RcptTo) != 1 || it.RcptTo[0] != "support@example.test" ||
		len(it.Routes) != 1 || it.Routes[0] != "support" || it.ReceivedAt.IsZero() {
		t.Fatalf("item %+v", it)
	}
	// Search.
	for q, want := range map[string]int{"printer": 1, "subject:fire": 1, "from:elodie": 1, "to:support@": 1, "route:support": 1,
		"status:delivered": 1, "status:failed": 0, "nothing-like-it": 0, "since:1h": 1, "until:1h": 0} {
		var p listPage
		if code := getJSON(t, base+"/api/v1/messages?q="+q, &p); code != 200 || len(p.Items) != want {
			t.Errorf("q=%s: %d, %d items, want %d", q, code, len(p.Items), want)
		}
	}
	if code := getJSON(t, base+"/api/v1/messages?q=since:yesterday", nil); code != 400 {
		t.Errorf("q=since:yesterday: %d, want 400", code)
	}
	if code := getJSON(t, base+"/api/v1/messages?limit=x", nil); code != 400 {
		t.Errorf("limit=x: %d, want 400", code)
	}
	// The message JSON.
	var m message.Message
	if code := getJSON(t, base+"/api/v1/messages/"+id, &m); code != 200 || m.ID != id || m.Subject != "Printer on fire" ||
		!strings.Contains(m.HTML, "coffees") || len(m.Attachments) != 1 {
		t.Fatalf("message: %d %+v", code, m)
	}
	if code := getJSON(t, base+"/api/v1/messages/01NOSUCHMESSAGE0000000000", nil); code != 404 {
		t.Errorf("unknown message: %d, want 404", code)
	}
	// Raw source and attachment.
	resp, err := http.Get(base + "/api/v1/messages/" + id + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "Subject: Printer on fire\r\n") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("raw: %d %q", resp.StatusCode, raw)
	}
	resp, err = http.Get(base + "/api/v1/messages/" + id + "/attachments/0")
	if err != nil {
		t.Fatal(err)
	}
	att, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(att) != "%PDF-1.4\n" || resp.Header.Get("Content-Type") != "application/pdf" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=order.pdf` || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("attachment: %d %q %v", resp.StatusCode, att, resp.Header)
	}
	if code := getJSON(t, base+"/api/v1/messages/"+id+"/attachments/1", nil); code != 404 {
		t.Errorf("attachment 1: %d, want 404", code)
	}
	// Deliveries.
	var d deliveriesBody
	if code := getJSON(t, base+"/api/v1/messages/"+id+"/deliveries", &d); code != 200 || len(d.Deliveries) != 1 ||
		d.Deliveries[0].Job.ID != first || len(d.Deliveries[0].Attempts) != 1 || d.Deliveries[0].Attempts[0].Status != 200 {
		t.Fatalf("deliveries: %d %+v", code, d)
	}
	// Replay: the dry run queues nothing; the replay makes a second attempt.
	var rr inspect.ReplayResult
	if code := post(t, base+"/api/v1/messages/"+id+"/replay?dry_run=1", &rr); code != 200 || !rr.DryRun || len(rr.Jobs) != 1 || rr.Jobs[0].Route != "support" {
		t.Fatalf("dry run: %d %+v", code, rr)
	}
	if code := post(t, base+"/api/v1/messages/"+id+"/replay", &rr); code != 200 || rr.DryRun || len(rr.Jobs) != 1 {
		t.Fatalf("replay: %d %+v", code, rr)
	}
	second := rc.wait(t, 10*time.Second)
	if second != rr.Jobs[0].ID || !strings.HasPrefix(second, first+".replay-") {
		t.Fatalf("replayed webhook-id %s, want %s (a replay of %s)", second, rr.Jobs[0].ID, first)
	}
	select {
	case extra := <-rc.c:
		t.Fatalf("a third webhook %s: the dry run delivered", extra)
	default:
	}
	eventually(t, 10*time.Second, "the replay's record", func() bool {
		getJSON(t, base+"/api/v1/messages/"+id+"/deliveries", &d)
		return len(d.Deliveries) == 2 && d.Deliveries[1].Status == delivery.StatusDelivered
	})
}

func post(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// newInspector returns an inspector over an empty file store, with cfg's
// other fields.
func newInspector(t *testing.T, cfg inspect.Config) *inspect.Inspector {
	t.Helper()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ix, err := inspect.OpenIndex(t.TempDir() + "/index.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	cfg.Source, cfg.Index = inspect.Source{Store: st}, ix
	in, err := inspect.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func do(in http.Handler, method, target string, mod func(*http.Request)) *http.Response {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	in.ServeHTTP(w, r)
	return w.Result()
}

// TestInspectToken: with a token, every request needs it, as a bearer
// token or as the cookie a ?token= login sets; a wrong one is refused.
func TestInspectToken(t *testing.T) {
	const token = "s3cret-token"
	in := newInspector(t, inspect.Config{Token: token})
	remote := func(r *http.Request) { r.RemoteAddr = "192.0.2.7:40000"; r.Host = "inspector.example" }
	for name, tc := range map[string]struct {
		mod  func(*http.Request)
		want int
	}{
		"none":          {nil, 401},
		"wrong bearer":  {func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret-tokeN") }, 401},
		"prefix bearer": {func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, 401},
		"basic":         {func(r *http.Request) { r.SetBasicAuth("x", token) }, 401},
		"bearer":        {func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, 200},
		"remote bearer": {func(r *http.Request) { remote(r); r.Header.Set("Authorization", "Bearer "+token) }, 200},
		"remote none":   {remote, 401},
		"cookie":        {func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "letterbox_inspect_token", Value: token}) }, 200},
		"wrong cookie":  {func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "letterbox_inspect_token", Value: "x"}) }, 401},
	} {
		if got := do(in, "GET", "/api/v1/messages", tc.mod).StatusCode; got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
	// The browser login: ?token= sets the cookie and drops the token from the address.
	resp := do(in, "GET", "/api/v1/messages?q=x&token="+token, nil)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "letterbox_inspect_token" {
			cookie = c
		}
	}
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/api/v1/messages?q=x" || cookie == nil || cookie.Value != token || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d %v %+v", resp.StatusCode, resp.Header, cookie)
	}
	if got := do(in, "GET", "/api/v1/messages?token=wrong", nil).StatusCode; got != 401 {
		t.Errorf("login with a wrong token: %d, want 401", got)
	}
}

// TestInspectLoopbackDefault: without a token the inspector binds only to
// loopback, and answers only loopback connections to a loopback host name.
func TestInspectLoopbackDefault(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:8025": true, "[::1]:8025": true, "localhost:8025": true, "127.0.0.2:0": true,
		"0.0.0.0:8025": false, ":8025": false, "[::]:8025": false, "192.0.2.1:8025": false, "inspector.example:8025": false} {
		err := inspect.CheckBind(addr, "")
		if ok != (err == nil) || (err != nil && !errors.Is(err, inspect.ErrTokenRequired)) {
			t.Errorf("CheckBind(%s, no token) = %v", addr, err)
		}
		if err := inspect.CheckBind(addr, "t"); err != nil {
			t.Errorf("CheckBind(%s, token) = %v", addr, err)
		}
	}
	in := newInspector(t, inspect.Config{})
	for name, tc := range map[string]struct {
		mod  func(*http.Request)
		want int
	}{
		"loopback":        {nil, 200},
		"localhost":       {func(r *http.Request) { r.Host = "localhost:8025" }, 200},
		"ipv6":            {func(r *http.Request) { r.RemoteAddr = "[::1]:4000"; r.Host = "[::1]:8025" }, 200},
		"remote client":   {func(r *http.Request) { r.RemoteAddr = "192.0.2.7:40000" }, 403},
		"rebinding host":  {func(r *http.Request) { r.Host = "attacker.example:8025" }, 403},
		"remote, spoofed": {func(r *http.Request) { r.RemoteAddr = "192.0.2.7:40000"; r.Host = "127.0.0.1:8025" }, 403},
	} {
		if tc.mod == nil {
			tc.mod = func(r *http.Request) { r.Host = "127.0.0.1:8025" }
		}
		if got := do(in, "GET", "/api/v1/messages", tc.mod).StatusCode; got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
}

// TestInspectReadOnlyDefault: without a replayer (letterbox inspect
// without --allow-replay), replay is refused with 403, and a cross-site
// POST is refused whatever the mode.
func TestInspectReadOnlyDefault(t *testing.T) {
	in := newInspector(t, inspect.Config{})
	local := func(r *http.Request) { r.Host = "127.0.0.1:8025" }
	resp := do(in, "POST", "/api/v1/messages/01KBX0000000000000000000AA/replay", local)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(body), "--allow-replay") {
		t.Fatalf("replay: %d %s", resp.StatusCode, body)
	}
	// No routes loaded: not even a dry run.
	if got := do(in, "POST", "/api/v1/messages/01KBX0000000000000000000AA/replay?dry_run=1", local).StatusCode; got != 403 {
		t.Errorf("dry run without routes: %d, want 403", got)
	}
	// A page elsewhere posting to the inspector.
	cross := func(r *http.Request) {
		local(r)
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		r.Header.Set("Origin", "https://attacker.example")
	}
	if got := do(in, "POST", "/api/v1/messages/01KBX0000000000000000000AA/replay?dry_run=1", cross).StatusCode; got != 403 {
		t.Errorf("cross-site POST: %d, want 403", got)
	}
}
