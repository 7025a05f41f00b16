package inspect_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

var updateImages = flag.Bool("update-images", false, "copy the browser test's screenshots to docs/images")

// browser starts Debian's chromium, headless, for the test (without its
// sandbox: CI runs as root), and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("starts chromium; skipped in -short mode")
	}
	bin := testenv.Require(t, "chromium", "apt-get install chromium (.ci/install-tools)")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860), chromedp.UserDataDir(t.TempDir()),
		// The preview's sandboxed iframe stays in the page's process, so the
		// test can read inside it (the sandbox is the same either way).
		chromedp.Flag("disable-features", "IsolateSandboxedIframes"),
		chromedp.Flag("disable-site-isolation-trials", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// within runs actions with a deadline.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.documentElement.outerHTML`))
		t.Fatalf("%s: %v\npage: %s", what, err, page)
	}
}

// waitJS evaluates cond in the page until it is true, across page loads.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error %v)", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshot saves the viewport as NAME.png among the test's artefacts
// (go test -artifacts), and in docs/images with -update-images.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if *updateImages {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "inspector-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInspectBrowser drives the inspector of a real `letterbox dev`
// pipeline in headless Chromium: a message sent over SMTP appears in the
// open list without a reload, search finds it, the message view shows the
// HTML preview while the message's script does not run, and the replay
// button (after its dry run) makes a second delivery attempt at the
// receiver; the API returns what the pages show.
func TestInspectBrowser(t *testing.T) {
	ctx := browser(t)
	rc := newReceiver(t)
	srv := startDev(t, "", rc, "")
	base := "http://" + srv.HTTPAddr()

	// An older message, so that search has something to leave out.
	send(t, srv.SMTPAddr(), "Weekly digest")
	rc.wait(t, 10*time.Second)
	within(t, ctx, 20*time.Second, "open the list",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#messages tbody tr`)),
	)
	// Mark this page: a reload would lose the mark.
	eval[bool](t, ctx, `window.__sameList = true`)

	id := send(t, srv.SMTPAddr(), "Printer on fire")
	within(t, ctx, 20*time.Second, "the new message appears in the open list",
		chromedp.WaitVisible(chromedp.CSS(`#messages tbody tr[data-id="`+id+`"]`)),
	)
	if !eval[bool](t, ctx, `window.__sameList === true`) {
		t.Fatal("the page was reloaded")
	}
	if got := eval[string](t, ctx, `document.querySelector('#messages tbody tr').dataset.id`); got != id {
		t.Fatalf("first row %s, want the newest message %s", got, id)
	}
	first := rc.wait(t, 10*time.Second)
	// Its status follows the delivery, still without a reload.
	within(t, ctx, 20*time.Second, "status delivered",
		chromedp.WaitVisible(chromedp.CSS(`#messages tbody tr[data-id="`+id+`"] .status.delivered`)),
	)
	screenshot(t, ctx, "list")

	// Search as you type.
	within(t, ctx, 20*time.Second, "search",
		chromedp.SendKeys(chromedp.ID("q"), "printer"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#messages tbody tr').length === 1 && document.querySelector('#messages tbody tr').dataset.id === "`+id+`"`),
	)
	if loc := eval[string](t, ctx, `location.search`); loc != "?q=printer" {
		t.Errorf("address after search: %q", loc)
	}
	screenshot(t, ctx, "search")
	var page listPage
	getJSON(t, base+"/api/v1/messages?q=printer", &page)
	rowText := eval[string](t, ctx, `document.querySelector('#messages tbody tr').innerText`)
	if len(page.Items) != 1 || page.Items[0].ID != id || !strings.Contains(rowText, page.Items[0].Subject) || !strings.Contains(rowText, page.Items[0].From) ||
		!strings.Contains(rowText, page.Items[0].Status) || !strings.Contains(rowText, strings.Join(page.Items[0].Routes, ", ")) {
		t.Fatalf("the API (%+v) and the list row (%q) disagree", page.Items, rowText)
	}

	// The message view: the preview shows the HTML; its script does not run.
	within(t, ctx, 20*time.Second, "open the message",
		chromedp.Click(chromedp.CSS(`#messages tbody tr[data-id="`+id+`"] td.subject a`)),
		chromedp.WaitVisible(chromedp.ID("preview")),
		chromedp.Poll[chromedp.Void](`(() => { try { return document.getElementById('preview').contentWindow.length === 0 } catch (e) { return false } })()`),
	)
	frames, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.ID("preview")))
	if err != nil || len(frames) != 1 {
		t.Fatalf("preview frame: %v", err)
	}
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	text, err := chromedp.Run(c, chromedp.Text(chromedp.CSS("#order"), chromedp.FromNode(frames[0])))
	cancel()
	if err != nil || text != "Two coffees, please." {
		t.Fatalf("preview text %q, %v", text, err)
	}
	if got := eval[string](t, ctx, `document.title + "|" + String(window.pwned)`); got != "Printer on fire · letterbox|undefined" {
		t.Fatalf("the message's script ran: title|window.pwned = %q", got)
	}
	// The frame is sandboxed without scripts and has an opaque origin: the
	// page cannot reach into it, nor it into the page.
	if got := eval[string](t, ctx, `(() => { const f = document.getElementById('preview'); let d; try { d = f.contentDocument } catch (e) { d = 'error' } return f.getAttribute('sandbox') + '|' + String(d) })()`); got != "|null" {
		t.Fatalf("preview frame sandbox|contentDocument = %q, want an empty sandbox and no access", got)
	}
	// The remote image (a tracking pixel) is not loaded.
	if got := eval[int](t, ctx, `performance.getEntriesByType('resource').filter(e => e.name.includes('tracker.example')).length`); got != 0 {
		t.Fatalf("the remote image was requested %d times", got)
	}
	screenshot(t, ctx, "message")

	// Deliveries: dry run first, then the replay makes a second attempt.
	within(t, ctx, 20*time.Second, "open the deliveries",
		chromedp.Navigate(base+"/messages/"+id+"/deliveries"),
		chromedp.WaitVisible(chromedp.CSS(`section.record`)),
		chromedp.Click(chromedp.ID("dry-run")),
		chromedp.WaitVisible(chromedp.ID("replay-confirm")),
	)
	if out := eval[string](t, ctx, `document.getElementById('replay-out').innerText`); !strings.Contains(out, "A replay would queue:") || !strings.Contains(out, "webhook for route support") {
		t.Fatalf("dry run shows %q", out)
	}
	select {
	case extra := <-rc.c:
		t.Fatalf("the dry run delivered %s", extra)
	default:
	}
	within(t, ctx, 20*time.Second, "replay", chromedp.Click(chromedp.ID("replay-confirm")))
	second := rc.wait(t, 20*time.Second)
	if !strings.HasPrefix(second, first+".replay-") {
		t.Fatalf("second attempt has webhook-id %s, want a replay of %s", second, first)
	}
	// The page reloads itself once the new attempt is recorded.
	waitJS(t, ctx, 20*time.Second, "the page shows both deliveries",
		`document.querySelectorAll('section.record').length === 2 && document.querySelectorAll('section.record td .status.delivered').length === 2`)
	screenshot(t, ctx, "deliveries")
	var d deliveriesBody
	getJSON(t, base+"/api/v1/messages/"+id+"/deliveries", &d)
	shown := eval[string](t, ctx, `document.getElementById('records').innerText`)
	if len(d.Deliveries) != 2 {
		t.Fatalf("API deliveries: %+v", d)
	}
	for _, r := range d.Deliveries {
		if !strings.Contains(shown, r.Job.ID) {
			t.Errorf("the page does not show job %s of the API", r.Job.ID)
		}
	}

	within(t, ctx, 20*time.Second, "routes page",
		chromedp.Navigate(base+"/routes"),
		chromedp.WaitVisible(chromedp.CSS(`table.routes`)),
	)
	screenshot(t, ctx, "routes")
}
