package routing_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

const good = `
domains: [example.test, Other.Test.]
routes:
  - name: blocked
    match: {sender: "*@spam.test"}
    reject: {code: 550, enhanced_code: "5.7.1", message: "We do not accept mail from spam.test"}
  - name: support
    match:
      recipient: "support@example.test"
    actions:
      - webhook: {url: "http://127.0.0.1:9000/support", secret: "` + secret + `"}
    stop: true
  - name: teams
    match:
      recipient: "regex:^(?P<team>[a-z]+)-team@example\\.test$"
    actions:
      - webhook: {url: "http://127.0.0.1:9000/teams/${team}", secret: "` + secret + `"}
        retry: {attempts: 3, initial: 1s, max: 10s}
  - name: invoices
    match:
      recipient: "*@example.test"
      subject: "regex:(?i)invoice"
      has_attachment: true
    actions:
      - store: true
  - name: tagged
    match: {recipient: "*@other.test", tag: "news*"}
    actions:
      - drop: true
    stop: true
  - name: everything-else
    catch_all: true
    actions:
      - webhook: {url: "http://127.0.0.1:9000/all", secret_env: HOOK_SECRET}
`

func mustParse(t *testing.T, src string) *routing.Config {
	t.Helper()
	cfg, err := routing.Parse("routes.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestCheckRecipient(t *testing.T) {
	cfg := mustParse(t, good)
	tests := []struct {
		name, from, rcpt string
		code             int
		enhanced, reason string
	}{
		{"listed domain", "a@sender.test", "support@example.test", 0, "", ""},
		{"domain case and trailing dot", "a@sender.test", "x@OTHER.test", 0, "", ""},
		{"foreign domain is relaying", "a@sender.test", "victim@elsewhere.test", 550, "5.7.1", routing.ReasonRelay},
		{"percent hack is relaying", "a@sender.test", "victim%elsewhere.test@relay.test", 550, "5.7.1", routing.ReasonRelay},
		{"reject rule", "bot@spam.test", "support@example.test", 550, "5.7.1", routing.ReasonRule},
		{"null sender is fine", "", "support@example.test", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cfg.CheckRecipient(context.Background(), tt.from, tt.rcpt)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("CheckRecipient = %v, want accept", err)
				}
				return
			}
			var rej *routing.Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("CheckRecipient = %v, want *Rejection", err)
			}
			if rej.Code != tt.code || rej.Enhanced != tt.enhanced || rej.Reason != tt.reason {
				t.Fatalf("got %d %s (%s), want %d %s (%s)", rej.Code, rej.Enhanced, rej.Reason, tt.code, tt.enhanced, tt.reason)
			}
		})
	}
}

func TestCheckRecipientUnknown(t *testing.T) {
	cfg := mustParse(t, `
domains: [example.test]
routes:
  - name: only-support
    match: {recipient: support@example.test}
    actions: [{store: true}]
`)
	err := cfg.CheckRecipient(context.Background(), "a@b.test", "nobody@example.test")
	var rej *routing.Rejection
	if !errors.As(err, &rej) || rej.Code != 550 || rej.Enhanced != "5.1.1" {
		t.Fatalf("got %v, want 550 5.1.1", err)
	}
}

func names(ms []routing.Matched) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Route.Name)
	}
	return out
}

func TestEvaluate(t *testing.T) {
	cfg := mustParse(t, good)
	msg := func(from string, rcpts []string, subject string, attachments int) *message.Message {
		m := &message.Message{Envelope: message.Envelope{MailFrom: from, RcptTo: rcpts}, Subject: subject}
		for i := 0; i < attachments; i++ {
			m.Attachments = append(m.Attachments, message.Attachment{Filename: "a.pdf", ContentType: "application/pdf"})
		}
		return m
	}
	tests := []struct {
		name string
		msg  *message.Message
		want []string
	}{
		{"stop ends the walk", msg("a@b.test", []string{"support@example.test"}, "hi", 0), []string{"support"}},
		{"regex route then catch-all", msg("a@b.test", []string{"ops-team@example.test"}, "hi", 0), []string{"teams", "everything-else"}},
		{"content match", msg("a@b.test", []string{"billing@example.test"}, "Your Invoice", 1), []string{"invoices", "everything-else"}},
		{"content mismatch", msg("a@b.test", []string{"billing@example.test"}, "Your Invoice", 0), []string{"everything-else"}},
		{"tag with stop", msg("a@b.test", []string{"me+newsletter@other.test"}, "x", 0), []string{"tagged"}},
		{"two recipients, two routes", msg("a@b.test", []string{"support@example.test", "ops-team@example.test"}, "x", 0), []string{"support", "teams", "everything-else"}},
		{"foreign recipients are ignored", msg("a@b.test", []string{"x@elsewhere.test"}, "x", 0), []string{}},
		{"reject routes never produce jobs", msg("bot@spam.test", []string{"support@example.test"}, "x", 0), []string{"support"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := names(cfg.Evaluate(context.Background(), tt.msg))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("routes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEvaluateCaptures(t *testing.T) {
	cfg := mustParse(t, good)
	ms := cfg.Evaluate(context.Background(), &message.Message{Envelope: message.Envelope{RcptTo: []string{"ops-team@example.test"}}})
	if got := ms[0].Expand(ms[0].Route.Actions[0].Webhook.URL); got != "http://127.0.0.1:9000/teams/ops" {
		t.Fatalf("expanded URL = %s", got)
	}
}

func TestEvaluateWithoutEnvelopeUsesHeaders(t *testing.T) {
	cfg := mustParse(t, good)
	m := &message.Message{To: []message.Address{{Address: "support@example.test"}, {Address: "x@elsewhere.test"}}}
	if got := names(cfg.Evaluate(context.Background(), m)); !reflect.DeepEqual(got, []string{"support"}) {
		t.Fatalf("routes = %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the error must contain this "file:line: field: message" text
	}{
		{"unknown top-level key", "domains: [a.test]\nroutez: []\n", "routes.yaml:2: routez: unknown field"},
		{"unknown match key", "domains: [a.test]\nroutes:\n  - name: r\n    match: {recpient: x@a.test}\n    actions: [{store: true}]\n", "routes.yaml:4: routes[0].match.recpient: unknown field"},
		{"no domains", "routes: []\n", "domains: list at least one domain"},
		{"bad regex", "domains: [a.test]\nroutes:\n  - name: r\n    match: {recipient: \"regex:(\"}\n    actions: [{store: true}]\n", "routes.yaml:4: routes[0].match.recipient[0]: \"regex:(\": bad regular expression"},
		{"missing url", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - webhook: {secret_env: S}\n", "routes.yaml:6: routes[0].actions[0].webhook.url: required"},
		{"unsigned webhook", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - webhook: {url: \"https://h.test/\"}\n", "routes[0].actions[0].webhook.secret: set exactly one of"},
		{"bad secret", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - webhook: {url: \"https://h.test/\", secret: nope!}\n", "routes[0].actions[0].webhook.secret: must be \"whsec_\""},
		{"bad duration", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - store: true\n        retry: {attempts: 3, initial: soon, max: 1h}\n", "routes.yaml:7: routes[0].actions[0].retry.initial: \"soon\" is not a duration"},
		{"two kinds", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - {store: true, drop: true}\n", "routes[0].actions[0]: needs exactly one of"},
		{"duplicate name", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions: [{store: true}]\n  - name: r\n    catch_all: true\n    actions: [{store: true}]\n", "routes.yaml:6: routes[1].name: \"r\" is already the name of the route at line 3"},
		{"reject on content", "domains: [a.test]\nroutes:\n  - name: r\n    match: {subject: x}\n    reject: {code: 550}\n", "routes[0].match: a reject route is decided at RCPT time"},
		{"reject bad code", "domains: [a.test]\nroutes:\n  - name: r\n    match: {sender: x@y.test}\n    reject: {code: 250}\n", "routes[0].reject.code: 250 is not an SMTP failure code"},
		{"reject class mismatch", "domains: [a.test]\nroutes:\n  - name: r\n    match: {sender: x@y.test}\n    reject: {code: 450, enhanced_code: \"5.7.1\"}\n", "routes[0].reject.enhanced_code"},
		{"bool typed", "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: yes please\n    actions: [{store: true}]\n", "routes.yaml:4: routes[0].catch_all: \"yes please\" must be true or false"},
		{"yaml syntax", "domains: [a.test\n", "routes.yaml:1: not valid YAML"},
		{"empty match", "domains: [a.test]\nroutes:\n  - name: r\n    match: {}\n    actions: [{store: true}]\n", "routes[0].match: empty match"},
		{"domain with at", "domains: [\"user@a.test\"]\nroutes: []\n", "domains[0]: \"user@a.test\" is not a domain name"},
		{"empty file", "", "routes.yaml: file is empty"},
		{"bad size", "domains: [a.test]\nroutes:\n  - name: r\n    match: {max_size: lots}\n    actions: [{store: true}]\n", "routes[0].match.max_size: \"lots\" is not a size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, tt.src, tt.want)
		})
	}
}

// wantConfigError checks that src, as routes.yaml, fails to parse with
// ConfigErrors whose text contains want.
func wantConfigError(t *testing.T, src, want string) {
	t.Helper()
	_, err := routing.Parse("routes.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded, want error containing %q", want)
	}
	var ce routing.ConfigErrors
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want ConfigErrors", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
}

// oneAction wraps one action's YAML ("store: true", "forward: {…}") in a
// routes file with one catch-all route, "r"; the action is on line 6.
func oneAction(action string) string {
	return "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - " + action + "\n"
}

// parseOneAction parses oneAction(action) and returns the action.
func parseOneAction(t *testing.T, action string) *routing.Action {
	t.Helper()
	cfg, err := routing.Parse("routes.yaml", []byte(oneAction(action)))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Route("r").Actions[0]
	if a.Line != 6 {
		t.Fatalf("action line = %d, want 6", a.Line)
	}
	return a
}

func TestExampleRoutesFilesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/routes.yaml")
	files = append(files, more...)
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if _, err := routing.Load(f); err != nil {
			t.Error(err)
		}
	}
}

func TestLiveReloadsAndKeepsLastGood(t *testing.T) {
	path := t.TempDir() + "/routes.yaml"
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("domains: [a.test]\nroutes: []\n")
	ctx := context.Background()
	lv, err := routing.NewLive(ctx, routing.FileLoader(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !lv.Get(ctx).HasDomain("x@a.test") {
		t.Fatal("first load lost")
	}
	write("domains: [a.test, bb.test]\nroutes: []\n")
	if !lv.Get(ctx).HasDomain("x@bb.test") {
		t.Fatal("change not picked up")
	}
	write("domains: [cc.test]\nroutez: []\n")
	cfg := lv.Get(ctx)
	if !cfg.HasDomain("x@bb.test") || cfg.HasDomain("x@cc.test") {
		t.Fatal("invalid reload replaced the good configuration")
	}
	if err := lv.Err(); err == nil || !strings.Contains(err.Error(), "routez: unknown field") {
		t.Fatalf("Err = %v", err)
	}
}

func TestNewLiveRefusesInvalidFile(t *testing.T) {
	path := t.TempDir() + "/routes.yaml"
	os.WriteFile(path, []byte("domains: []\n"), 0o644)
	_, err := routing.NewLive(context.Background(), routing.FileLoader(path), time.Second)
	if err == nil || !strings.Contains(err.Error(), path+":1: domains: list at least one domain") {
		t.Fatalf("NewLive = %v", err)
	}
}
