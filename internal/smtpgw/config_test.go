package smtpgw

import (
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/routing"
)

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
