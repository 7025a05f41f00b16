package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Targets of issue 5 at 200 msg/s on a 2-core machine.
const (
	targetRate = 200
	targetP50  = 20.0  // ms
	targetP99  = 100.0 // ms
)

type fixedSummary struct {
	store                    string
	rate                     float64
	p50, p95, p99, max       []float64 // per run
	accepted, delivered, off int       // summed over runs
	errors                   int
	achieved, slope          []float64
	loads                    []string
}

type summary struct {
	machine  string
	commit   string // the measured checkout
	runs     int
	fixed    []*fixedSummary
	stores   []storeDir
	maxRates map[string][]float64 // by store
	steps    []result
}

func summarize(cfg config, all []result, maxRates map[string][]float64) *summary {
	s := &summary{machine: machine(), commit: cfg.commit, runs: cfg.runs, stores: cfg.stores, maxRates: maxRates}
	type key struct {
		store string
		rate  float64
	}
	byRate := map[key]*fixedSummary{}
	for _, st := range cfg.stores {
		for _, rate := range cfg.rates {
			f := &fixedSummary{store: st.Name, rate: rate}
			byRate[key{st.Name, rate}] = f
			s.fixed = append(s.fixed, f)
		}
	}
	for _, r := range all {
		if r.Phase != "fixed" {
			s.steps = append(s.steps, r)
			continue
		}
		f := byRate[key{r.Store, r.Rate}]
		f.p50 = append(f.p50, r.P50)
		f.p95 = append(f.p95, r.P95)
		f.p99 = append(f.p99, r.P99)
		f.max = append(f.max, r.Max)
		f.achieved = append(f.achieved, r.Achieved)
		f.loads = append(f.loads, r.Load)
		f.slope = append(f.slope, r.Slope)
		f.accepted += r.Accepted
		f.delivered += r.Delivered
		f.off += r.Offered
		f.errors += r.Errors
	}
	return s
}

func med(xs []float64) float64 { return median(append([]float64(nil), xs...)) }

func (s *summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "medians of %d runs (latency from the 250 reply to the webhook's arrival):\n", s.runs)
	fmt.Fprintf(&b, "%-6s %8s %9s %9s %9s %9s  %s\n", "store", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "acked/offered, delivered, errors")
	for _, f := range s.fixed {
		fmt.Fprintf(&b, "%-6s %8.0f %9.1f %9.1f %9.1f %9.1f  %d/%d, %d, %d\n", f.store, f.rate, med(f.p50), med(f.p95), med(f.p99), med(f.max), f.accepted, f.off, f.delivered, f.errors)
	}
	for _, f := range s.fixed {
		if f.rate == targetRate {
			fmt.Fprintf(&b, "%s: targets at %d msg/s: p50 < %.0f ms: %s (%.1f); p99 < %.0f ms: %s (%.1f)\n", f.store, targetRate,
				targetP50, verdict(med(f.p50) < targetP50), med(f.p50), targetP99, verdict(med(f.p99) < targetP99), med(f.p99))
		}
	}
	for _, st := range s.stores {
		if rs := s.maxRates[st.Name]; len(rs) > 0 {
			fmt.Fprintf(&b, "%s: highest rate sustained without a growing backlog: %.0f msg/s (median; runs: %s)\n", st.Name, med(rs), joinRates(rs))
		}
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func joinRates(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}

const (
	beginMark = "<!-- e2e:results:begin (written by make bench-e2e) -->"
	endMark   = "<!-- e2e:results:end -->"
	heading   = "## End-to-end latency (`make bench-e2e`)"
)

// writeDocs replaces the generated block of the e2e section of
// docs/benchmarks.md, adding the section when it is missing and keeping
// every other section, and writes docs/e2e-latency.csv.
func writeDocs(cfg config, s *summary, all []result, started time.Time) error {
	path := filepath.Join(cfg.root, "docs", "benchmarks.md")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = "# Benchmarks\n"
	}
	block := beginMark + "\n" + s.markdown(cfg, started) + endMark
	switch i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark); {
	case i >= 0 && j > i:
		doc = doc[:i] + block + doc[j+len(endMark):]
	case strings.Contains(doc, heading):
		k := strings.Index(doc, heading) + len(heading)
		doc = doc[:k] + "\n\n" + block + doc[k:]
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + heading + "\n\n" + block + "\n"
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return writeCSV(filepath.Join(cfg.root, "docs", "e2e-latency.csv"), s, all)
}

func (s *summary) markdown(cfg config, started time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Date: %s\n", started.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "- Machine: %s\n", s.machine)
	fmt.Fprintf(&b, "- Code: %s\n", s.commit)
	fmt.Fprintf(&b, "- Command: `make bench-e2e` (= `bin/bench/e2e -docs -runs %d -duration %v -rates %s`)\n", cfg.runs, cfg.duration, strings.ReplaceAll(joinRates(cfg.rates), " ", ""))
	fmt.Fprintf(&b, "- Pipeline: `letterbox dev --store file://… --no-auth --log-level %s`, one catch-all webhook route to a receiver in the benchmark process that verifies each signature; %d-byte messages, up to %d per SMTP session; %v warm-up before each measurement\n",
		cfg.logLevel, cfg.size, cfg.perSession, cfg.warmup)
	b.WriteString("- Stores: ")
	for i, st := range s.stores {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "**%s** = a file store under `%s` (%s)", st.Name, st.Dir, fsType(st.Dir))
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "Latency from the sender reading `250 … queued as <id>` to the webhook for `<id>` reaching the receiver, medians of %d runs of %v each:\n\n", s.runs, cfg.duration)
	b.WriteString("| store | msg/s | p50 ms | p95 ms | p99 ms | max ms | acknowledged / offered | delivered | achieved msg/s | backlog growth msg/s | load avg per run |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, f := range s.fixed {
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %d / %d | %d | %.1f | %+.2f | %s |\n", f.store, f.rate, med(f.p50), med(f.p95), med(f.p99), med(f.max),
			f.accepted, f.off, f.delivered, med(f.achieved), med(f.slope), strings.Join(f.loads, ", "))
	}
	b.WriteString("\n")
	for _, f := range s.fixed {
		if f.rate == targetRate {
			fmt.Fprintf(&b, "- %s, targets at %d msg/s: p50 < %.0f ms **%s** (%.1f ms), p99 < %.0f ms **%s** (%.1f ms). Per run: p50 %s ms; p99 %s ms.\n", f.store, targetRate,
				targetP50, verdict(med(f.p50) < targetP50), med(f.p50), targetP99, verdict(med(f.p99) < targetP99), med(f.p99), join1(f.p50), join1(f.p99))
		}
	}
	b.WriteString("\n")
	if len(s.maxRates) > 0 {
		for _, st := range s.stores {
			if rs := s.maxRates[st.Name]; len(rs) > 0 {
				fmt.Fprintf(&b, "- %s: highest rate sustained without a growing backlog **%.0f msg/s** (median of %d runs: %s msg/s)\n", st.Name, med(rs), len(rs), joinRates(rs))
			}
		}
		fmt.Fprintf(&b, "\nSteps of %v each (after a 3 s warm-up) on a fresh pipeline, rates %s msg/s until one is not sustained, then one midpoint; a step is sustained when every message is acknowledged and delivered, at least 95 %% of the offered rate is acknowledged, and the backlog (acknowledged − received, sampled every 250 ms) grows by at most %.0f %% of the rate per second over the second half of the step and ends below one second of traffic.\n\n",
			cfg.stepDuration, joinRates(cfg.stepRates), cfg.stepThreshold*100)
		b.WriteString("| store | run | msg/s | p50 ms | p99 ms | achieved msg/s | backlog growth msg/s | backlog at end | sessions | load avg | sustained |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range s.steps {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f | %.1f | %.1f | %+.2f | %d | %d | %s | %s |\n", r.Store, r.Run, r.Rate, r.P50, r.P99, r.Achieved, r.Slope, r.BacklogEnd, r.PeakSessions, r.Load, yesNo(r.Sustained))
		}
		b.WriteString("\n")
	}
	b.WriteString("Every run's numbers: [`docs/e2e-latency.csv`](e2e-latency.csv) (latency percentiles against the offered rate, fixed runs and steps).\n")
	return b.String()
}

// fsType names the file system holding dir, from /proc/mounts.
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "file system unknown"
	}
	abs, _ := filepath.Abs(dir)
	best, typ, dev := "", "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, typ, dev = mp, f[2], f[0]
		}
	}
	switch typ {
	case "":
		return "file system unknown"
	case dev:
		return typ
	}
	return typ + " on " + dev
}

func join1(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 1, 64))
	}
	return strings.Join(parts, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func writeCSV(path string, s *summary, all []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"store", "phase", "run", "rate_msg_s", "duration_s", "offered", "acknowledged", "delivered", "errors",
		"achieved_msg_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "backlog_growth_msg_s", "backlog_end", "sessions", "sustained", "loadavg"})
	num := func(x float64) string {
		if math.IsNaN(x) {
			return ""
		}
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	for _, r := range all {
		w.Write([]string{r.Store, r.Phase, strconv.Itoa(r.Run), num(r.Rate), num(r.Duration.Seconds()), strconv.Itoa(r.Offered), strconv.Itoa(r.Accepted),
			strconv.Itoa(r.Delivered), strconv.Itoa(r.Errors), num(r.Achieved), num(r.P50), num(r.P95), num(r.P99), num(r.Max),
			num(r.Slope), strconv.Itoa(r.BacklogEnd), strconv.Itoa(r.PeakSessions), strconv.FormatBool(r.Sustained), r.Load})
	}
	for _, fx := range s.fixed {
		w.Write([]string{fx.store, "fixed", "median", num(fx.rate), "", strconv.Itoa(fx.off), strconv.Itoa(fx.accepted), strconv.Itoa(fx.delivered),
			strconv.Itoa(fx.errors), num(med(fx.achieved)), num(med(fx.p50)), num(med(fx.p95)), num(med(fx.p99)), num(med(fx.max)),
			num(med(fx.slope)), "", "", "", ""})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return f.Close()
}
