package routing_test

import (
	"context"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// withPolicy is a minimal routes file whose policy: key is the given YAML
// (indented under "policy:", starting at line 3).
func withPolicy(policy string) string {
	return "domains: [a.test]\nroutes: []\npolicy:\n" + policy
}

func TestPolicyConfigErrors(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"spam empty", "  spam: {}\n", "routes.yaml:4: policy.spam: set reject_at, quarantine_at or both"},
		{"spam not a number", "  spam: {reject_at: high}\n", "routes.yaml:4: policy.spam.reject_at: \"high\" must be a number"},
		{"spam quoted number", "  spam: {reject_at: \"15\"}\n", "policy.spam.reject_at: \"15\" must be a number"},
		{"spam nan", "  spam: {reject_at: .nan}\n", "policy.spam.reject_at: \".nan\" must be a number"},
		{"spam inf", "  spam: {reject_at: .inf}\n", "policy.spam.reject_at: \".inf\" must be a number"},
		{"spam quarantine above reject", "  spam: {reject_at: 6, quarantine_at: 15}\n", "routes.yaml:4: policy.spam.quarantine_at: 15 must be below reject_at (6)"},
		{"spam quarantine equals reject", "  spam: {reject_at: 6.5, quarantine_at: 6.5}\n", "policy.spam.quarantine_at: 6.5 must be below reject_at (6.5)"},
		{"spam unknown field", "  spam: {reject: 6}\n", "routes.yaml:4: policy.spam.reject: unknown field (known fields: reject_at, quarantine_at)"},
		{"virus missing", "  virus: {}\n", "routes.yaml:4: policy.virus.infected: required: reject, quarantine or tag"},
		{"virus bad", "  virus: {infected: delete}\n", "policy.virus.infected: \"delete\": use reject, quarantine or tag"},
		{"scanners bad fail", "  scanners: {fail: maybe}\n", "routes.yaml:4: policy.scanners.fail: \"maybe\": use open (accept) or closed"},
		{"scanners timeout too long", "  scanners: {timeout: 11m}\n", "policy.scanners.timeout: 11m0s is longer than 5m0s"},
		{"scanners bad timeout", "  scanners: {timeout: soon}\n", "policy.scanners.timeout: \"soon\" is not a duration"},
		{"allow bad cidr", "  clients: {allow: [10.0.0.0/33]}\n", "routes.yaml:4: policy.clients.allow[0]: \"10.0.0.0/33\" is not an address or CIDR"},
		{"deny host bits", "  clients:\n    deny: [192.0.2.0/24, 198.51.100.7/24]\n", "routes.yaml:5: policy.clients.deny[1]: \"198.51.100.7/24\" has host bits set; did you mean 198.51.100.0/24?"},
		{"deny mapped", "  clients: {deny: [\"::ffff:10.0.0.0/104\"]}\n", "policy.clients.deny[0]: \"::ffff:10.0.0.0/104\": write IPv4 ranges in IPv4 form"},
		{"deny zone", "  clients: {deny: [\"fe80::1%eth0\"]}\n", "policy.clients.deny[0]: \"fe80::1%eth0\": no zone"},
		{"deny not a list of strings", "  clients: {deny: {a: b}}\n", "policy.clients.deny: must be a list"},
		{"rate negative", "  clients: {rate: {per_ip: -1, window: 1h}}\n", "routes.yaml:4: policy.clients.rate.per_ip: -1 must be 0 (no limit) or more"},
		{"rate without window", "  clients: {rate: {per_24: 100}}\n", "policy.clients.rate.window: required with a rate"},
		{"rate window too long", "  clients: {rate: {per_64: 10, window: 25h}}\n", "policy.clients.rate.window: 25h0m0s is longer than 24h0m0s"},
		{"rate window too short", "  clients: {rate: {per_ip: 10, window: 10ms}}\n", "policy.clients.rate.window: 10ms is shorter than 1s"},
		{"rate not a number", "  clients: {rate: {per_ip: 1.5, window: 1h}}\n", "policy.clients.rate.per_ip: \"1.5\" must be a whole number"},
		{"hook no url", "  hook: {secret_env: HOOK}\n", "routes.yaml:4: policy.hook.url: required"},
		{"hook ftp", "  hook: {url: \"ftp://h.test/x\", secret_env: HOOK}\n", "policy.hook.url: \"ftp://h.test/x\" must be an absolute http or https URL, or a Lambda function ARN"},
		{"hook relative", "  hook: {url: \"/policy\", secret_env: HOOK}\n", "policy.hook.url: \"/policy\" must be an absolute"},
		{"hook credentials", "  hook: {url: \"https://u:p@h.test/x\", secret_env: HOOK}\n", "policy.hook.url: must not carry credentials"},
		{"hook bad arn", "  hook: {url: \"arn:aws:sqs:eu-west-1:123456789012:q\"}\n", "policy.hook.url: \"arn:aws:sqs:eu-west-1:123456789012:q\" is not a Lambda function ARN"},
		{"hook unsigned", "  hook: {url: \"https://h.test/x\"}\n", "routes.yaml:4: policy.hook.secret_env: required: every hook request is signed"},
		{"hook two secrets", "  hook: {url: \"https://h.test/x\", secret: \"" + secret + "\", secret_env: HOOK}\n", "policy.hook.secret: set secret or secret_env, not both"},
		{"hook bad secret", "  hook: {url: \"https://h.test/x\", secret: \"hunter2-not-a-secret\"}\n", "policy.hook.secret: must be \"whsec_\" followed by base64"},
		{"hook bad env name", "  hook: {url: \"https://h.test/x\", secret_env: \"MY-SECRET\"}\n", "policy.hook.secret_env: \"MY-SECRET\" is not an environment variable name"},
		{"hook timeout too long", "  hook: {url: \"https://h.test/x\", secret_env: HOOK, timeout: 31s}\n", "policy.hook.timeout: 31s is longer than 30s"},
		{"hook timeout too short", "  hook: {url: \"https://h.test/x\", secret_env: HOOK, timeout: 1ms}\n", "policy.hook.timeout: 1ms is too short"},
		{"hook bad fail", "  hook: {url: \"https://h.test/x\", secret_env: HOOK, fail: ignore}\n", "policy.hook.fail: \"ignore\": use open (accept) or closed"},
		{"hook unknown field", "  hook: {url: \"https://h.test/x\", secret_env: HOOK, retries: 2}\n", "policy.hook.retries: unknown field"},
		{"policy unknown key", "  rate: {per_ip: 1}\n", "routes.yaml:4: policy.rate: unknown field (known fields: spam, virus, scanners, clients, hook)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, withPolicy(tt.policy), tt.want)
		})
	}
}

// A literal secret never appears in an error message.
func TestPolicyHookSecretNotInErrors(t *testing.T) {
	_, err := routing.Parse("routes.yaml", []byte(withPolicy("  hook: {url: \"https://h.test/x\", secret: \"whsec_!!not-base64-hunter2\"}\n")))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if s := err.Error(); strings.Contains(s, "hunter2") {
		t.Fatalf("error repeats the secret: %s", s)
	}
}

func TestPolicyValid(t *testing.T) {
	cfg := mustParse(t, withPolicy(`  spam: {reject_at: 15, quarantine_at: 6.5}
  virus: {infected: quarantine}
  scanners: {fail: closed, timeout: 20s}
  clients:
    allow: [192.0.2.10, "2001:db8:1::/48"]
    deny: [192.0.2.0/24, "2001:db8::/32"]
    rate: {per_ip: 100, per_24: 1000, per_64: 500, window: 1h}
  hook: {url: "https://policy.example.test/smtp", secret_env: POLICY_HOOK_SECRET}
`))
	p := cfg.Policy
	if p == nil || *p.Spam.RejectAt != 15 || *p.Spam.QuarantineAt != 6.5 || p.Virus.Infected != "quarantine" ||
		p.Scanners.Fail != "closed" || time.Duration(p.Scanners.Timeout) != 20*time.Second {
		t.Fatalf("policy = %+v", p)
	}
	if r := p.Clients.Rate; r.PerIP != 100 || r.Per24 != 1000 || r.Per64 != 500 || time.Duration(r.Window) != time.Hour {
		t.Fatalf("rate = %+v", r)
	}
	if h := p.Hook; h.Fail != routing.FailClosed || time.Duration(h.Timeout) != routing.DefaultHookTimeout || h.IsLambda() {
		t.Fatalf("hook defaults = %+v", h)
	}
	for _, tt := range []struct {
		ip             string
		allowed, denie bool
	}{
		{"192.0.2.10", true, false},        // allow wins over deny
		{"::ffff:192.0.2.10", true, false}, // IPv4-mapped is its IPv4 form
		{"192.0.2.11", false, true},        // in deny
		{"198.51.100.1", false, false},     // in neither
		{"2001:db8:1:2::5", true, false},   // allow /48 inside deny /32
		{"2001:db8:2::5", false, true},     // deny /32
		{"2001:db9::1", false, false},      // neither
	} {
		ip := netip.MustParseAddr(tt.ip)
		if got := p.Clients.Allowed(ip); got != tt.allowed {
			t.Errorf("Allowed(%s) = %v", ip, got)
		}
		if got := p.Clients.Denied(ip); got != tt.denie {
			t.Errorf("Denied(%s) = %v", ip, got)
		}
	}
	var nilClients *routing.ClientPolicy
	if nilClients.Allowed(netip.MustParseAddr("192.0.2.1")) || nilClients.Denied(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("a nil client policy decides something")
	}

	lam := mustParse(t, withPolicy("  hook: {url: \"arn:aws:lambda:eu-west-1:123456789012:function:policy:live\", timeout: 2s, fail: open}\n"))
	if h := lam.Policy.Hook; !h.IsLambda() || h.Fail != routing.FailOpen || time.Duration(h.Timeout) != 2*time.Second {
		t.Fatalf("lambda hook = %+v", h)
	}
	neg := mustParse(t, withPolicy("  spam: {quarantine_at: -2}\n"))
	if *neg.Policy.Spam.QuarantineAt != -2 || neg.Policy.Spam.RejectAt != nil {
		t.Fatalf("spam = %+v", neg.Policy.Spam)
	}
}

// The policy reloads with the rest of the file: a live configuration
// picks up a new deny list, and an invalid policy keeps the last good one.
func TestLiveReloadsPolicy(t *testing.T) {
	path := t.TempDir() + "/routes.yaml"
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("192.0.2.1")
	write(withPolicy("  clients: {deny: [198.51.100.0/24]}\n"))
	ctx := context.Background()
	lv, err := routing.NewLive(ctx, routing.FileLoader(path), 0)
	if err != nil {
		t.Fatal(err)
	}
	if lv.Get(ctx).Policy.Clients.Denied(ip) {
		t.Fatal("denied before the change")
	}
	write(withPolicy("  clients: {deny: [192.0.2.0/24]}\n"))
	if !lv.Get(ctx).Policy.Clients.Denied(ip) {
		t.Fatal("new deny list not picked up")
	}
	write(withPolicy("  clients: {deny: [192.0.2.0/33]}\n"))
	if !lv.Get(ctx).Policy.Clients.Denied(ip) {
		t.Fatal("invalid policy replaced the good one")
	}
	if err := lv.Err(); err == nil || !strings.Contains(err.Error(), "policy.clients.deny[0]") {
		t.Fatalf("Err = %v", err)
	}
}

// docs/routes.md documents every field of the policy: key.
func TestPolicyFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/routes.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(routing.Duration(0)) {
				walk(prefix+name+".", ft)
				continue
			}
			if !strings.Contains(string(doc), "| `"+prefix+name+"` |") {
				t.Errorf("docs/routes.md has no row for policy field %s%s", prefix, name)
			}
		}
	}
	walk("", reflect.TypeOf(routing.Policy{}))
}
