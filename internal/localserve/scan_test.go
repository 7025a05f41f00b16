package localserve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/localserve"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// TestDevScansWithRspamdAndClamd: `letterbox dev --rspamd --clamd` puts
// the verdicts in the webhook's JSON, and a route matching virus:
// infected with quarantine: true keeps the message under quarantine/ and
// sends nothing.
func TestDevScansWithRspamdAndClamd(t *testing.T) {
	rspamd := testenv.StartRspamd(t, testenv.RspamdOptions{})
	clamd := testenv.StartClamd(t, testenv.ClamdOptions{})
	dir := t.TempDir()
	h := newHook(t)
	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte(fmt.Sprintf(`
domains: [example.test]
routes:
  - name: viruses
    match: {recipient: "*@example.test", virus: infected}
    actions:
      - quarantine: true
  - name: all
    match: {recipient: "*@example.test"}
    actions:
      - webhook: {url: "%s/all", secret: "%s"}
`, h.srv.URL, secret)), 0o644)
	srv, err := localserve.Start(context.Background(), localserve.Config{
		HTTPAddr: "127.0.0.1:0", StoreURL: "file://" + filepath.Join(dir, "store"), RoutesPath: routes,
		Gateway: smtpgw.Config{Addr: "127.0.0.1:0", Hostname: "mx.test", Rspamd: rspamd.URL(), Clamd: clamd.ClamdAddr()}, NoAuth: true,
		Logger: slog.New(slog.NewTextHandler(testLog, nil)), Out: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	mail := func(subject, body string) string {
		return "From: Sender <sender@example.org>\r\nTo: support@example.test\r\nSubject: " + subject +
			"\r\nMessage-ID: <" + subject + "@example.org>\r\nDate: Sun, 6 Dec 2026 14:00:00 +0000\r\n\r\n" + body + "\r\n"
	}

	// Infected first: had it been routed to the webhook, it would arrive
	// before the GTUBE message.
	reply, err := send(t, srv.SMTPAddr(), "sender@example.org", []string{"support@example.test"}, mail("eicar", testenv.EICAR))
	if err != nil {
		t.Fatal(err)
	}
	_, infected, _ := strings.Cut(reply, "queued as ")
	if _, err := send(t, srv.SMTPAddr(), "sender@example.org", []string{"support@example.test"}, mail("gtube", testenv.GTUBE)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-h.events:
		m := ev.Data
		if m.Subject != "gtube" {
			t.Fatalf("webhook for %q; the infected message must not be delivered", m.Subject)
		}
		if m.Spam == nil || m.Spam.Action != "reject" || m.Spam.Scanner != "rspamd" || m.Virus == nil || m.Virus.Result != "clean" {
			t.Fatalf("spam %+v virus %+v", m.Spam, m.Virus)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook within 30s")
	}
	st, err := filestore.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		obj, err := st.Stat(context.Background(), store.QuarantineKey(infected))
		if err == nil {
			v, err := store.ReadVerdicts(context.Background(), st, obj)
			if err != nil || v == nil || v.Virus.Result != "infected" || v.Disposition != store.DispositionAccept {
				t.Fatalf("quarantined copy's verdicts %+v, %v", v, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not quarantined: %v", infected, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
