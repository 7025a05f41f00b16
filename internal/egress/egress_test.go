package egress_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		addr              string
		strict, loop, all bool
	}{
		{"93.184.215.14", true, true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true, true},
		{"127.0.0.1", false, true, true},
		{"::1", false, true, true},
		{"::ffff:127.0.0.1", false, true, true},
		{"10.1.2.3", false, false, true},
		{"172.31.255.255", false, false, true},
		{"192.168.1.1", false, false, true},
		{"169.254.169.254", false, false, true}, // cloud metadata
		{"100.64.0.1", false, false, true},
		{"fd00::1", false, false, true},
		{"fe80::1", false, false, true},
		{"0.0.0.0", false, false, true},
		{"::ffff:10.0.0.1", false, false, true},
		{"224.0.0.1", false, false, true},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := (egress.Policy{}).Allowed(a); got != tt.strict {
			t.Errorf("strict Allowed(%s) = %v", tt.addr, got)
		}
		if got := (egress.Policy{AllowLoopback: true}).Allowed(a); got != tt.loop {
			t.Errorf("loopback Allowed(%s) = %v", tt.addr, got)
		}
		if got := (egress.Policy{AllowPrivate: true}).Allowed(a); got != tt.all {
			t.Errorf("private Allowed(%s) = %v", tt.addr, got)
		}
	}
}

func TestDialRefusesLoopbackByName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	client := &http.Client{Transport: &http.Transport{DialContext: egress.Policy{}.DialContext}}
	// "localhost" resolves to loopback: the check is on the dialled address.
	_, err := client.Get("http://localhost:" + port + "/")
	if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
		t.Fatalf("Get = %v, want permanent ErrForbidden", err)
	}
	allowed := &http.Client{Transport: &http.Transport{DialContext: egress.Policy{AllowLoopback: true}.DialContext}}
	resp, err := allowed.Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback allowed: %v", err)
	}
	resp.Body.Close()
}
