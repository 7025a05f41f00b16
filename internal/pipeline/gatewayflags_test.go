package pipeline

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/smtpgw"
)

func TestRegisterGatewayFlags(t *testing.T) {
	env := map[string]string{
		"LETTERBOX_MAX_MESSAGE_BYTES":   "150MiB",
		"LETTERBOX_MAX_RECIPIENTS":      "7",
		"LETTERBOX_TLS_CERT":            "/env/cert.pem",
		"LETTERBOX_PROXY_PROTOCOL_FROM": "10.0.0.0/8, 192.0.2.1",
		"LETTERBOX_SPF":                 "reject",
		"LETTERBOX_DNSBL":               "zen.example,bl.example",
		"LETTERBOX_COMMAND_TIMEOUT":     "1m",
		"LETTERBOX_POLICY_HOOK":         "https://env.test/hook",
		"LETTERBOX_POLICY_HOOK_SECRET":  "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"HOOK_SECRET_ENV":               "from-getenv",
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	g := RegisterGatewayFlags(fs, func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--max-recipients", "9", "--resolver", "127.0.0.1:5353"}); err != nil {
		t.Fatal(err)
	}
	c, err := g.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageBytes != 150<<20 || c.MaxRecipients != 9 || c.TLSCert != "/env/cert.pem" || c.Resolver != "127.0.0.1:5353" ||
		c.SPFPolicy != smtpgw.SPFReject || strings.Join(c.DNSBL, " ") != "zen.example bl.example" || c.CommandTimeout != time.Minute ||
		len(c.ProxyProtocolFrom) != 2 || c.ProxyProtocolFrom[1] != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("config %+v", c)
	}
	if c.MaxConnections != smtpgw.DefaultMaxConnections || c.DataTimeout != smtpgw.DefaultDataTimeout {
		t.Errorf("defaults not set: %+v", c)
	}
	if c.PolicyHook != "https://env.test/hook" || c.PolicyHookSecret != env["LETTERBOX_POLICY_HOOK_SECRET"] || c.Getenv == nil || c.Getenv("HOOK_SECRET_ENV") != "from-getenv" {
		t.Errorf("policy hook: %q, secret set %v, getenv %v", c.PolicyHook, c.PolicyHookSecret != "", c.Getenv != nil)
	}
	if fs.Lookup("policy-hook-secret") != nil {
		t.Error("the hook's secret must not be a flag")
	}
	// Every flag name the issue fixes exists.
	for _, name := range []string{"tls-cert", "tls-key", "max-message-bytes", "max-recipients", "resolver", "proxy-protocol-from", "policy-hook"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no --%s flag", name)
		}
	}
	*g.Addr() = "127.0.0.1:2525"
	if c, _ := g.Config(); c.Addr != "127.0.0.1:2525" {
		t.Errorf("Addr = %q", c.Addr)
	}
	fs.SetOutput(io.Discard)
	fs.PrintDefaults() // must not panic on zero values
}

// An invalid LETTERBOX_* value is an error naming the variable, unless its
// flag overrides it.
func TestInvalidGatewayEnvironment(t *testing.T) {
	env := map[string]string{"LETTERBOX_MAX_RECIPIENTS": "many", "LETTERBOX_DATA_TIMEOUT": "-1s"}
	getenv := func(k string) string { return env[k] }
	g := RegisterGatewayFlags(flag.NewFlagSet("t", flag.ContinueOnError), getenv)
	_, err := g.Config()
	if err == nil || err.Error() != "environment LETTERBOX_DATA_TIMEOUT: \"-1s\" is not a positive duration (e.g. 5m)\n"+
		"environment LETTERBOX_MAX_RECIPIENTS: \"many\" is not an integer" {
		t.Errorf("Config = %v", err)
	}

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	g = RegisterGatewayFlags(fs, getenv)
	if err := fs.Parse([]string{"--max-recipients=5", "--data-timeout=1m"}); err != nil {
		t.Fatal(err)
	}
	if c, err := g.Config(); err != nil || c.MaxRecipients != 5 || c.DataTimeout != time.Minute {
		t.Errorf("Config with the flags overriding = %+v, %v", c, err)
	}
}

// docs/gateway.md's flag table names every gateway flag with its
// variable: a flag added to RegisterGatewayFlags is documented there.
func TestGatewayFlagsAreDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterGatewayFlags(fs, func(string) string { return "" })
	fs.VisitAll(func(f *flag.Flag) {
		env := regexp.MustCompile(`\[(LETTERBOX_[A-Z0-9_]+)\]$`).FindStringSubmatch(f.Usage)
		if env == nil {
			t.Errorf("--%s: its usage does not end with its [LETTERBOX_*] variable", f.Name)
			return
		}
		row := regexp.MustCompile("(?m)^\\| .*`--" + regexp.QuoteMeta(f.Name) + "[ `].*$").FindString(doc)
		if row == "" || !strings.Contains(row, "`"+env[1]+"`") {
			t.Errorf("docs/gateway.md's flag table has no row for --%s with %s", f.Name, env[1])
		}
	})
}
