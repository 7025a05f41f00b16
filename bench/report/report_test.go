package report_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/bench/report"
)

func TestReplaceSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	os.WriteFile(p, []byte("# B\n\n<!-- x:begin (written by make x) -->\nold\n<!-- x:end -->\n\nafter\n"), 0o644)
	if err := report.ReplaceSection(p, "x", "new\nlines"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "# B\n\n<!-- x:begin (written by make x) -->\nnew\nlines\n<!-- x:end -->\n\nafter\n"; string(b) != want {
		t.Fatalf("got %q", b)
	}
	if err := report.ReplaceSection(p, "y", "z"); err == nil || !strings.Contains(err.Error(), "no <!-- y:begin") {
		t.Fatalf("missing section: %v", err)
	}
}

// TestRoot finds the letterbox checkout from bench/report (the test's
// working directory), not bench's own module.
func TestRoot(t *testing.T) {
	root, err := report.Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "smtpgw", "cmd", "smtpgw")); err != nil {
		t.Fatalf("Root() = %s, which has no smtpgw/cmd/smtpgw: %v", root, err)
	}
	t.Chdir(t.TempDir())
	if _, err := report.Root(); err == nil || !strings.Contains(err.Error(), "not inside a letterbox checkout") {
		t.Fatalf("Root() outside a checkout: %v", err)
	}
}
