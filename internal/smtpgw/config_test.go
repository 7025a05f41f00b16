package smtpgw

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/routing"
)

func TestRegisterFlags(t *testing.T) {
	t.Setenv("LETTERBOX_MAX_MESSAGE_BYTES", "150MiB")
	t.Setenv("LETTERBOX_MAX_RECIPIENTS", "7")
	t.Setenv("LETTERBOX_TLS_CERT", "/env/cert.pem")
	t.Setenv("LETTERBOX_PROXY_PROTOCOL_FROM", "10.0.0.0/8, 192.0.2.1")
	t.Setenv("LETTERBOX_SPF", "reject")
	t.Setenv("LETTERBOX_DNSBL", "zen.example,bl.example")
	t.Setenv("LETTERBOX_COMMAND_TIMEOUT", "1m")
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterFlags(fs, &c, os.Getenv)
	if err := fs.Parse([]string{"--max-recipients", "9", "--resolver", "127.0.0.1:5353"}); err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageBytes != 150<<20 || c.MaxRecipients != 9 || c.TLSCert != "/env/cert.pem" || c.Resolver != "127.0.0.1:5353" ||
		c.SPFPolicy != SPFReject || strings.Join(c.DNSBL, " ") != "zen.example bl.example" || c.CommandTimeout != time.Minute ||
		len(c.ProxyProtocolFrom) != 2 || c.ProxyProtocolFrom[1] != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("config %+v", c)
	}
	if c.MaxConnections != DefaultMaxConnections || c.DataTimeout != DefaultDataTimeout {
		t.Errorf("defaults not set: %+v", c)
	}
	// Every flag name the issue fixes exists.
	for _, name := range []string{"tls-cert", "tls-key", "max-message-bytes", "max-recipients", "resolver", "proxy-protocol-from"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no --%s flag", name)
		}
	}
	fs.SetOutput(io.Discard)
	fs.PrintDefaults() // must not panic on zero values
}

// TestInvalidEnvironment: a bad LETTERBOX_* value fails New, naming the
// variable, unless its flag overrides it.
func TestInvalidEnvironment(t *testing.T) {
	t.Setenv("LETTERBOX_MAX_RECIPIENTS", "many")
	routes := routing.Static(mustRoutes(t))
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterFlags(fs, &c, os.Getenv)
	c.Addr = "127.0.0.1:0"
	_, err := New(c, tmpStore(t), routes, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "LETTERBOX_MAX_RECIPIENTS") {
		t.Errorf("New = %v", err)
	}

	var c2 Config
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterFlags(fs2, &c2, os.Getenv)
	if err := fs2.Parse([]string{"--max-recipients=5"}); err != nil {
		t.Fatal(err)
	}
	c2.Addr = "127.0.0.1:0"
	if _, err := New(c2, tmpStore(t), routes, nil, nil); err != nil {
		t.Errorf("New with the flag overriding: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	routes := routing.Static(mustRoutes(t))
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{}, "--smtp"},
		{Config{Addr: ":0", TLSCert: "x"}, "go together"},
		{Config{Addr: ":0", SubmissionAddr: ":0"}, "--submission needs --tls-cert"},
		{Config{Addr: ":0", SPFPolicy: "maybe"}, "--spf"},
		{Config{Addr: ":0", Resolver: "8.8.8.8"}, "host:port"},
		{Config{Addr: ":0", TLSCert: "/nonexistent", TLSKey: "/nonexistent"}, "load TLS certificate"},
	} {
		if _, err := New(tt.c, tmpStore(t), routes, nil, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error about %q", tt.c, err, tt.want)
		}
	}
}

func tmpStore(t *testing.T) *filestore.Store {
	t.Helper()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mustRoutes(t *testing.T) *routing.Config {
	t.Helper()
	rc, err := routing.Parse("routes.yaml", []byte(testRoutes))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func routingStatic(t *testing.T) *routing.Live { return routing.Static(mustRoutes(t)) }
