package smtpgw

import (
	"context"

	"errors"
	"net"
	"testing"
	"time"
)

// TestShutdown: idle sessions get 421 4.3.2 at once; a transaction in
// flight finishes and is stored, then its session gets 421 4.3.2; new
// connections are refused; Shutdown returns when all sessions ended.
func TestShutdown(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "mx.test")
	h := startGateway(t, Config{TLSCert: cert, TLSKey: key})
	idle := dialRaw(t, h.addr)
	idle.hello("idle.test")
	idleTLS := dialRaw(t, h.addr)
	idleTLS.hello("idle-tls.test")
	idleTLS = idleTLS.startTLS(t)
	idleTLS.hello("idle-tls.test")
	busy := dialRaw(t, h.addr)
	busy.hello("busy.test")
	busy.envelope("s@remote.test", "a@example.test")
	busy.cmd("DATA", 354, "")
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() { done <- h.g.Shutdown(context.Background()) }()
	idle.expect(421, "4.3.2")
	idle.expectClosed()
	idleTLS.expect(421, "4.3.2")
	idleTLS.expectClosed()
	if err := h.g.Ready(t.Context()); err == nil {
		t.Error("ready while shutting down")
	}
	if nc, err := net.Dial("tcp", h.addr); err == nil {
		nc.Close()
		t.Error("a new connection was accepted while shutting down")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a transaction in flight", err)
	default:
	}

	busy.send("second half\r\n.\r\n")
	id := queuedID(t, busy.expect(250, "2.0.0"))
	busy.expect(421, "4.3.2")
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	body, _ := h.stored(id)
	if len(body) == 0 {
		t.Fatal("in-flight message not stored")
	}
	if err := <-h.served; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
	h.served <- nil // for the cleanup
}

// TestShutdownDeadline: a transaction that does not finish by the deadline
// is cut off, Shutdown says so, and nothing of it is stored.
func TestShutdownDeadline(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("slow.test")
	c.envelope("s@remote.test", "a@example.test")
	c.cmd("DATA", 354, "")
	c.send("Subject: never finished\r\n\r\nsome data\r\n")
	waitFor(t, func() bool { return h.metric("letterbox_smtp_connections_open") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's error", err)
	}
	c.expectClosed()
	if keys := h.rawKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
	<-h.served
	h.served <- nil
}

// TestMailWhileDraining: a pipelined MAIL that arrives after the drain began
// is refused with 421 4.3.2.
func TestMailWhileDraining(t *testing.T) {
	h := startGateway(t, Config{})
	c := dialRaw(t, h.addr)
	c.hello("client.test")
	// A transaction in flight keeps the session open through the drain.
	c.envelope("s@remote.test", "a@example.test")
	done := make(chan error, 1)
	go func() { done <- h.g.Shutdown(context.Background()) }()
	waitFor(t, func() bool { return h.g.Ready(t.Context()) != nil })
	c.send("RSET\r\nMAIL FROM:<late@remote.test>\r\n")
	c.expect(250, "2.0.0")
	if text := c.expect(421, "4.3.2"); text != "421 4.3.2 Service shutting down, try again later" {
		t.Errorf("reply to MAIL %q", text)
	}
	c.expectClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-h.served
	h.served <- nil
}
