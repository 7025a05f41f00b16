// Package report holds what the benchmark commands share: the letterbox
// checkout they measure, the machine's description and load, and replacing
// a marked section of a Markdown file (docs/benchmarks.md) with a new run's
// results.
package report

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Module is the module path of the letterbox checkout the benchmarks
// measure (bench is a module of its own inside it).
const Module = "github.com/letterboxmail/letterbox"

// Root returns the root of the letterbox checkout: the nearest directory
// at or above the working directory whose go.mod declares Module. The
// benchmarks build letterbox's programs (go build ./smtpgw/cmd/smtpgw) and
// run its tests there, whether started from the root (make) or from bench/.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside a letterbox checkout (no go.mod declaring " + Module + " at or above the working directory)")
		}
		dir = parent
	}
}

// modulePath is the module path a go.mod declares ("" if none).
func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// LoadAvg returns the 1-, 5- and 15-minute load averages: on a shared
// machine, other work moves the numbers.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPUModel returns the processor's model name.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// ReplaceSection puts text between "<!-- NAME:begin … -->" and
// "<!-- NAME:end -->" in a Markdown file, keeping the rest.
func ReplaceSection(path, name, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	begin := strings.Index(doc, "<!-- "+name+":begin")
	end := strings.Index(doc, "<!-- "+name+":end -->")
	if begin < 0 || end < begin {
		return fmt.Errorf("%s has no <!-- %s:begin --> … <!-- %s:end --> section", path, name, name)
	}
	begin += strings.Index(doc[begin:], "-->") + len("-->\n")
	return os.WriteFile(path, []byte(doc[:begin]+text+"\n"+doc[end:]), 0o644)
}
