package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// harakaVersion is the Haraka make bench-smtp installs (mk/bench.mk's
// HARAKA_VERSION); startHaraka refuses another.
const harakaVersion = "3.3.4"

// queueFsync is Haraka's queue plugin for the benchmark: a file per
// message, fsynced before the 250.
//
//go:embed haraka/queue_fsync.js
var queueFsync string

// startHaraka runs Haraka (Node.js) from e.haraka on a fresh
// configuration in d: listening on loopback, one worker per CPU (Haraka's
// recommended nodes=cpus), accepting mail for example.test only
// (rcpt_to.in_host_list) and queueing each message with queue_fsync into
// d/spool. Logging is at WARN, as a server under load would run.
func (e *benchEnv) startHaraka(d string) (*server, error) {
	if e.haraka == "" {
		return nil, errors.New("-haraka is not set (make bench-smtp installs Haraka into .tools/haraka)")
	}
	pkg, err := filepath.Abs(filepath.Join(e.haraka, "node_modules", "Haraka"))
	if err != nil {
		return nil, err
	}
	if err := checkHarakaVersion(pkg); err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	root, spool := filepath.Join(d, "haraka"), filepath.Join(d, "spool")
	for _, sub := range []string{"config", "plugins", "queue"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(spool, 0o755); err != nil {
		return nil, err
	}
	// Haraka crashes at the greeting without connection.ini in the
	// configuration directory: take the package's own.
	conn, err := os.ReadFile(filepath.Join(pkg, "config", "connection.ini"))
	if err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	files := map[string]string{
		"config/connection.ini":  string(conn),
		"config/smtp.ini":        "[main]\nlisten=" + addr + "\nnodes=cpus\ngraceful_shutdown=false\ndaemonize=false\n",
		"config/plugins":         "rcpt_to.in_host_list\nqueue_fsync\n",
		"config/host_list":       "example.test\n",
		"config/me":              "haraka.bench.test\n",
		"config/log.ini":         "[main]\nlevel=warn\ntimestamps=false\nformat=default\n",
		"config/queue_fsync.ini": "[main]\ndir=" + spool + "\n",
		"plugins/queue_fsync.js": queueFsync,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(filepath.Join(d, "haraka.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, filepath.Join(pkg, "bin", "haraka"), "-c", root)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the master and its workers stop together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	pgid := cmd.Process.Pid
	stop := func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		// Workers that outlive the master.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if err := waitDial(addr, exited); err != nil {
		stop()
		b, _ := os.ReadFile(filepath.Join(d, "haraka.log"))
		return nil, fmt.Errorf("haraka: %w\n%s", err, b)
	}
	return &server{addr: addr, stop: stop, count: func() (int, error) { return countFiles(spool) }}, nil
}

func checkHarakaVersion(pkg string) error {
	out, err := exec.Command("node", "-p", "require(process.argv[1]).version", filepath.Join(pkg, "package.json")).Output()
	if err != nil {
		return fmt.Errorf("haraka: no Haraka in %s (make bench-smtp installs it): %v", pkg, err)
	}
	if v := string(out); v != harakaVersion+"\n" {
		return fmt.Errorf("haraka: %s has Haraka %q, want %s", pkg, v, harakaVersion)
	}
	return nil
}
