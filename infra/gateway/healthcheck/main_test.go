package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthURL(t *testing.T) {
	for addr, want := range map[string]string{
		"":              "http://127.0.0.1:8025/healthz",
		":8025":         "http://127.0.0.1:8025/healthz",
		"0.0.0.0:9000":  "http://127.0.0.1:9000/healthz",
		"[::]:9000":     "http://127.0.0.1:9000/healthz",
		"10.0.0.5:8025": "http://10.0.0.5:8025/healthz",
		"[::1]:8025":    "http://[::1]:8025/healthz",
	} {
		got, err := healthURL(addr)
		if err != nil || got != want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := healthURL("no-port"); err == nil {
		t.Error("healthURL accepted an address without a port")
	}
}

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	if err := probe(addr, time.Second); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probe(addr, time.Second); err == nil {
		t.Fatal("503 counted as healthy")
	}

	// Nothing listening: fail, and quickly.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if err := probe(closed, time.Second); err == nil {
		t.Fatal("closed port counted as healthy")
	}
}
