package scantest_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/scan"
	"github.com/letterboxmail/letterbox/internal/scan/scantest"
	"github.com/letterboxmail/letterbox/message"
)

const signature = "SCANTEST-SIGNATURE"

// memVirus is a minimal correct virus scanner: it streams the message and
// looks for one byte string.
type memVirus struct{ bug string }

func (m memVirus) ScanVirus(ctx context.Context, body io.Reader) (*message.Virus, error) {
	if m.bug == "answers-without-reading" {
		return &message.Virus{Result: scan.Clean, Scanner: "mem"}, nil
	}
	found := false
	tail := []byte{}
	buf := make([]byte, 4096)
	for {
		n, err := body.Read(buf)
		win := append(tail, buf[:n]...)
		found = found || bytes.Contains(win, []byte(signature))
		tail = append([]byte{}, win[max(0, len(win)-len(signature)):]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			if m.bug == "verdict-on-broken-data" {
				break
			}
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	v := &message.Virus{Result: scan.Clean, Scanner: "mem"}
	if m.bug == "no-name" {
		v.Scanner = ""
	}
	if found {
		v.Result, v.Signatures = scan.Infected, []string{"Scantest"}
	}
	return v, nil
}

// TestMemScanner shows the suite can be passed.
func TestMemScanner(t *testing.T) {
	scantest.Virus(t, memVirus{}, scantest.Message("see "+signature))
}

// TestBrokenScanner is run by TestSuiteCatchesBrokenScanners in a child
// process, with SCANTEST_BUG set.
func TestBrokenScanner(t *testing.T) {
	bug := os.Getenv("SCANTEST_BUG")
	if bug == "" {
		t.Skip("run by TestSuiteCatchesBrokenScanners")
	}
	scantest.Virus(t, memVirus{bug: bug}, scantest.Message("see "+signature))
}

// TestSuiteCatchesBrokenScanners runs the suite against scanners that each
// break one rule, and checks that it fails them in the subtest that owns
// the rule.
func TestSuiteCatchesBrokenScanners(t *testing.T) {
	for _, tt := range []struct{ bug, failing string }{
		{"answers-without-reading", "ReadsTheWholeMessage"},
		{"verdict-on-broken-data", "BrokenBodyIsAnError"},
		{"no-name", "Clean"},
	} {
		t.Run(tt.bug, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenScanner$", "-test.v")
			cmd.Env = append(os.Environ(), "SCANTEST_BUG="+tt.bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a scanner that %s", tt.bug)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBrokenScanner/"+tt.failing) {
				t.Fatalf("the suite failed, but not in %s:\n%s", tt.failing, out)
			}
		})
	}
}
