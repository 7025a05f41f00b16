// Command inspect runs BenchmarkInspect (internal/inspect) — the
// inspector's first page, searches and index sync with 100,000 messages,
// in the file store and in versitygw — and writes the medians to
// docs/benchmarks.md. Run by `make bench-inspect`.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/bench/report"
)

func main() {
	benchtime := flag.String("benchtime", "3s", "go test -benchtime: each measurement repeats for this long; medians of the repetitions are reported")
	docs := flag.String("docs", "", "replace the <!-- inspect:results --> section of this Markdown file")
	flag.Parse()
	log.SetFlags(0)
	start := time.Now()
	load := report.LoadAvg()
	n := os.Getenv("LETTERBOX_BENCH_INSPECT_N")
	if n == "" {
		n = "100000"
	}
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkInspect$", "-benchtime", *benchtime, "-timeout", "60m", "./internal/inspect/")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	os.Stdout.Write(out)
	if err != nil {
		log.Fatalf("bench-inspect: %v", err)
	}
	vals := report.ParseGoBench(out, "BenchmarkInspect") // store/name -> unit -> values
	med := func(name, unit string) string {
		m, ok := vals.Median(name, unit)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f", m/1e6)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Run of %s\n\n", start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Command: `make bench-inspect` (`go test -run '^$' -bench '^BenchmarkInspect$' -benchtime %s ./internal/inspect/`, %s messages in each store; medians of each measurement's repetitions)\n", *benchtime, n)
	fmt.Fprintf(&b, "- Machine: %s, %d CPUs, %s; load average at the start %s, at the end %s\n\n", report.CPUModel(), runtime.NumCPU(), runtime.Version(), load, report.LoadAvg())
	b.WriteString("| ms (median) | file store (SQLite) | versitygw (S3) |\n|---|---:|---:|\n")
	for _, r := range []struct{ name, label string }{
		{"first-page", "first page (`GET /api/v1/messages?limit=50`)"},
		{"page-deep", "a page in the middle (`before=`)"},
		{"search-word", "search, a rare word (`q=cancellation`)"},
		{"search-fields", "search, two fields (`q=from:sender-42@ status:failed`)"},
		{"search-none", "search that finds nothing (whole index scanned)"},
		{"sync-idle", "idle sync: the poll that finds nothing new"},
	} {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.label, med("file/"+r.name, "median-ns"), med("s3/"+r.name, "median-ns"))
	}
	fmt.Fprintf(&b, "| index build, per message already stored | %s | %s |\n", med("file/build-per-message", "ns/msg"), med("s3/build-per-message", "ns/msg"))
	fmt.Print("\n" + b.String())
	if *docs != "" {
		if err := report.ReplaceSection(*docs, "inspect:results", b.String()); err != nil {
			log.Fatalf("bench-inspect: %v", err)
		}
	}
}
