package routing_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/letterboxmail/letterbox/message"
)

const verdictRoutes = `
domains: [example.test]
routes:
  - name: viruses
    match: {recipient: "*@example.test", virus: infected}
    actions:
      - quarantine: true
  - name: very-spammy
    match: {spam_score: ">= 10"}
    actions:
      - drop: true
  - name: spammy
    match: {spam_action: ["add header", "rewrite subject"]}
    actions:
      - store: true
  - name: ham
    match: {spam_score: "< 5"}
    actions:
      - store: true
  - name: scan-failed
    match: {spam_action: error}
    actions:
      - store: true
  - name: office
    match: {client_ip: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]}
    actions:
      - store: true
  - name: all
    catch_all: true
    actions:
      - store: true
`

func TestEvaluateVerdicts(t *testing.T) {
	cfg := mustParse(t, verdictRoutes)
	msg := func(ip string, spam *message.Spam, virus *message.Virus) *message.Message {
		return &message.Message{Envelope: message.Envelope{RcptTo: []string{"a@example.test"}, ClientIP: ip}, Spam: spam, Virus: virus}
	}
	spam := func(score float64, action string) *message.Spam { return &message.Spam{Score: score, Action: action} }
	tests := []struct {
		name string
		msg  *message.Message
		want []string
	}{
		{"infected is quarantined and stops", msg("203.0.113.1", spam(1, "no action"), &message.Virus{Result: "infected"}), []string{"viruses"}},
		{"clean goes on", msg("203.0.113.1", spam(1, "no action"), &message.Virus{Result: "clean"}), []string{"ham", "all"}},
		{"score at the bound", msg("203.0.113.1", spam(10, "reject"), nil), []string{"very-spammy"}},
		{"score just under", msg("203.0.113.1", spam(9.99, "add header"), nil), []string{"spammy", "all"}},
		{"score 5 is not < 5", msg("203.0.113.1", spam(5, "no action"), nil), []string{"all"}},
		{"negative score", msg("203.0.113.1", spam(-1.5, "no action"), nil), []string{"ham", "all"}},
		{"failed scan matches spam_action error, no spam_score", msg("203.0.113.1", &message.Spam{Action: "error"}, nil), []string{"scan-failed", "all"}},
		{"unscanned matches no verdict condition", msg("203.0.113.1", nil, nil), []string{"all"}},
		{"client in a v4 range", msg("192.0.2.200", nil, nil), []string{"office", "all"}},
		{"client single address", msg("198.51.100.7", nil, nil), []string{"office", "all"}},
		{"client v4-mapped", msg("::ffff:192.0.2.9", nil, nil), []string{"office", "all"}},
		{"client in a v6 range", msg("2001:db8:1::25", nil, nil), []string{"office", "all"}},
		{"client outside", msg("198.51.100.8", nil, nil), []string{"all"}},
		{"no client ip", msg("", nil, nil), []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := names(cfg.Evaluate(context.Background(), tt.msg))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("routes = %v, want %v", got, tt.want)
			}
		})
	}
	if k := cfg.Route("viruses").Actions[0].Kind(); k != "quarantine" {
		t.Errorf("Kind() = %q, want quarantine", k)
	}
}

func TestVerdictConfigErrors(t *testing.T) {
	route := func(match string) string {
		return "domains: [a.test]\nroutes:\n  - name: r\n    match: " + match + "\n    actions: [{store: true}]\n"
	}
	tests := []struct {
		name, src, want string
	}{
		{"score without operator", route(`{spam_score: "5"}`), `routes.yaml:4: routes[0].match.spam_score: "5": want a comparison such as ">= 5"`},
		{"score not a number", route(`{spam_score: ">= lots"}`), `routes.yaml:4: routes[0].match.spam_score: ">= lots"`},
		{"score NaN", route(`{spam_score: ">= NaN"}`), `routes[0].match.spam_score`},
		{"unknown spam action", route(`{spam_action: [reject, spam]}`), `routes.yaml:4: routes[0].match.spam_action[1]: "spam" is not an action`},
		{"unknown virus result", route(`{virus: dirty}`), `routes.yaml:4: routes[0].match.virus[0]: "dirty" is not a result (clean, infected or error)`},
		{"bad CIDR", route(`{client_ip: ["192.0.2.0/33"]}`), `routes.yaml:4: routes[0].match.client_ip[0]: "192.0.2.0/33" is not an address or CIDR`},
		{"not an address", route(`{client_ip: mail.example}`), `routes[0].match.client_ip[0]: "mail.example" is not an address or CIDR`},
		{"verdicts are not known at RCPT", "domains: [a.test]\nroutes:\n  - name: r\n    match: {virus: infected}\n    reject: {code: 550}\n", "routes[0].match: a reject route is decided at RCPT time"},
		{"quarantine with another kind", oneAction("{quarantine: true, store: true}"), "routes.yaml:6: routes[0].actions[0]: needs exactly one of webhook, forward, lambda, sqs, sns, eventbridge, store: true or drop: true (or quarantine: true)"},
		{"quarantine not a bool", oneAction("{quarantine: please}"), `routes.yaml:6: routes[0].actions[0].quarantine: "please" must be true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, tt.src, tt.want)
		})
	}
}

func TestQuarantineEndsTheWalk(t *testing.T) {
	a := parseOneAction(t, "quarantine: true")
	if !a.Quarantine || a.Kind() != "quarantine" {
		t.Fatalf("action %+v", a)
	}
	cfg := mustParse(t, oneAction("quarantine: true"))
	if !cfg.Route("r").Ends() {
		t.Error("a quarantine route must end the walk")
	}
}
