// Package testenv gives tests the real external programs they run against
// (versitygw, Postfix's smtp-source, swaks, python3, rspamd, clamd) and
// decides what happens when one is missing: a local run skips with a loud
// message saying why and how to install it; under CI (CI or
// LETTERBOX_REQUIRE_TOOLS set) the test fails, so a skipped test can never
// pass CI silently. HeapGrowth measures the heap of the tests that stream
// large messages.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Strict reports whether missing tools fail tests instead of skipping them.
func Strict() bool {
	return os.Getenv("CI") != "" || os.Getenv("LETTERBOX_REQUIRE_TOOLS") != ""
}

// LookPath finds a program on PATH, in $GOBIN, $GOPATH/bin or ./.tools/bin
// at the module root.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(string(trimNL(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if root, err := ModuleRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, ".tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in GOBIN, GOPATH/bin or .tools/bin", name)
}

// Require returns the path of a program, or skips (locally) or fails (CI)
// the test, naming how to install it.
func Require(tb testing.TB, name, install string) string {
	tb.Helper()
	p, err := LookPath(name)
	if err == nil {
		return p
	}
	Missing(tb, fmt.Sprintf("%v; install it with: %s", err, install))
	return ""
}

// Missing skips the test with a loud message, or fails it under CI.
func Missing(tb testing.TB, why string) {
	tb.Helper()
	if Strict() {
		tb.Fatalf("required test dependency missing (CI must install it): %s", why)
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s: %s ***\n*** run .ci/run or 'make tools' to run it; CI never skips it ***\n\n", tb.Name(), why)
	tb.Skipf("SKIPPED (not run): %s", why)
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found")
		}
		dir = parent
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
