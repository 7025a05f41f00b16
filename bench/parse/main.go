// Command parse runs the parsing benchmark (BenchmarkParse in this
// directory: internal/parser beside enmime on one corpus, in one run),
// prints medians and ratios, and can write them into the marked section of
// docs/benchmarks.md. Run by `make bench-parse`.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/bench/report"
)

func main() {
	count := flag.Int("count", 10, "runs of the benchmark; medians are reported")
	docs := flag.String("docs", "", "replace the <!-- parse:results --> section of this Markdown file")
	flag.Parse()
	log.SetFlags(0)
	start := time.Now()
	load := report.LoadAvg()
	root, err := report.Root()
	if err != nil {
		log.Fatalf("bench-parse: %v", err)
	}
	// The benchmark lives in the bench module (enmime is its dependency,
	// not letterbox's).
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkParse$", "-benchmem", "-count", strconv.Itoa(*count), "./parse/")
	cmd.Dir = filepath.Join(root, "bench")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	os.Stdout.Write(out)
	if err != nil {
		log.Fatalf("bench-parse: %v", err)
	}
	vals := report.ParseGoBench(out, "BenchmarkParse")
	med := func(name, unit string) float64 {
		m, _ := vals.Median(name, unit)
		return m
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Run of %s\n\n", start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Command: `make bench-parse` (`cd bench && go test -run '^$' -bench '^BenchmarkParse$' -benchmem -count %d ./parse/`)\n", *count)
	fmt.Fprintf(&b, "- Machine: %s, %d CPUs, %s; load average at the start %s, at the end %s\n\n", report.CPUModel(), runtime.NumCPU(), runtime.Version(), load, report.LoadAvg())
	b.WriteString("| parser | MB/s (median) | allocs/msg | ms per corpus |\n|---|---:|---:|---:|\n")
	for _, n := range []string{"letterbox", "enmime"} {
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.1f |\n", n, med(n, "MB/s"), med(n, "allocs/msg"), med(n, "ns/op")/1e6)
	}
	if e := med("enmime", "MB/s"); e > 0 {
		fmt.Fprintf(&b, "\nRatio letterbox/enmime in this run: throughput %.2f×, allocations per message %.2f×.\n",
			med("letterbox", "MB/s")/e, med("letterbox", "allocs/msg")/med("enmime", "allocs/msg"))
	}
	fmt.Print("\n" + b.String())
	if *docs != "" {
		if err := report.ReplaceSection(*docs, "parse:results", b.String()); err != nil {
			log.Fatalf("bench-parse: %v", err)
		}
	}
}
