package smtpgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Run serves SMTP and, on httpAddr, /metrics, /healthz and /readyz until
// ctx ends; then it shuts down gracefully within Config.ShutdownTimeout.
// It is the gateway binary's whole life (the binary reloads the TLS
// certificate on SIGHUP with ReloadTLS); `letterbox dev` serves its own
// HTTP and runs ListenAndServe.
func (g *Gateway) Run(ctx context.Context, httpAddr string, gatherer prometheus.Gatherer) error {
	if err := g.Listen(); err != nil {
		return err
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", httpAddr, err)
	}
	hs := &http.Server{Handler: g.HTTPHandler(gatherer), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() {
		if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	g.log.InfoContext(ctx, "HTTP listening", "addr", hl.Addr().String(), "paths", "/metrics /healthz /readyz")
	smtpDone := make(chan error, 1)
	go func() { smtpDone <- g.ListenAndServe(ctx) }()
	select {
	case err = <-errc:
		sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
		_ = g.Shutdown(sctx)
		cancel()
		<-smtpDone
	case err = <-smtpDone:
	}
	// /healthz keeps answering while SMTP drains; stop HTTP last.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return err
}
