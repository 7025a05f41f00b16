package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// `letterbox dev` reloads its TLS certificate on SIGHUP, as the smtpgw
// binary does (the signal is the command's, not the gateway package's),
// and stops cleanly on SIGINT.
func TestDevReloadsTLSOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	routes := writeRoutes(t, dir, "http://127.0.0.1:9")
	cert, key := testenv.WriteCert(t, dir, "before.test")
	dev := exec.Command(bin, "dev", "--store", "file://"+filepath.Join(dir, "store"), "--routes", routes,
		"--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-auth", "--tls-cert", cert, "--tls-key", key, "--log-format", "json")
	stdout, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := &testenv.Buffer{}
	dev.Stderr = log
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = dev.Wait(); close(exited) }()
	t.Cleanup(func() {
		dev.Process.Kill()
		<-exited
	})
	// The first line names the SMTP address.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no start line: %v\n%s", err, log.String())
	}
	addr, _, ok := strings.Cut(strings.TrimPrefix(line, "letterbox dev: SMTP on "), ",")
	if !ok {
		t.Fatalf("start line %q", line)
	}
	if got := testenv.PeerName(t, addr); got != "before.test" {
		t.Fatalf("certificate %q, want before.test", got)
	}
	testenv.WriteCert(t, dir, "after.test")
	if err := dev.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "CN=after.test") {
		select {
		case <-exited:
			t.Fatalf("letterbox dev exited on SIGHUP: %v\n%s", waitErr, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testenv.PeerName(t, addr); got != "after.test" {
		t.Errorf("after SIGHUP: certificate %q, want after.test", got)
	}
	if err := dev.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGINT: %v\n%s", waitErr, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("letterbox dev did not stop on SIGINT")
	}
}
