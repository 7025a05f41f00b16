// Package report holds what the benchmark commands share for their results:
// the machine's description and load, and replacing a marked section of a
// Markdown file (docs/benchmarks.md) with a new run's results.
package report

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

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
