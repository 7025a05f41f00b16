// Command healthcheck probes the gateway's readiness endpoint from inside
// its container, where there is no shell, curl or wget: it exits 0 when
// GET /healthz on the gateway's HTTP address answers 200, and 1 otherwise.
// The image's HEALTHCHECK and the ECS task definition's health check run it.
//
// The address comes from LETTERBOX_HTTP_ADDR (as the gateway reads it),
// default :8025; a listen address without a host is probed on 127.0.0.1.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := probe(os.Getenv("LETTERBOX_HTTP_ADDR"), 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// probe GETs /healthz on the host:port a server listening on addr answers.
func probe(addr string, timeout time.Duration) error {
	url, err := healthURL(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the probe is always local.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func healthURL(addr string) (string, error) {
	if addr == "" {
		addr = ":8025"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("LETTERBOX_HTTP_ADDR %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
