// Command charts draws the benchmark charts of docs/benchmarks.md from the
// CSV files the benchmarks write: gateway throughput against concurrency
// (bench/smtp -csv) and end-to-end latency percentiles against the offered
// rate (bench/e2e). Run by `make bench` (or `make charts`).
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func main() {
	smtpCSV := flag.String("smtp", "docs/smtp-throughput.csv", "bench/smtp CSV")
	e2eCSV := flag.String("e2e", "docs/e2e-latency.csv", "bench/e2e CSV")
	out := flag.String("out", "docs", "directory for the PNG files")
	flag.Parse()
	log.SetFlags(0)
	drew := 0
	if rows, err := readCSV(*smtpCSV); err == nil {
		for _, size := range []string{"4096", "102400"} {
			name := filepath.Join(*out, "smtp-throughput-"+map[string]string{"4096": "4k", "102400": "100k"}[size]+".png")
			if err := throughput(rows, size, name); err != nil {
				log.Fatalf("charts: %s: %v", name, err)
			}
			fmt.Println("wrote", name)
			drew++
		}
	} else {
		log.Printf("charts: %v (run make bench-smtp)", err)
	}
	if rows, err := readCSV(*e2eCSV); err == nil {
		name := filepath.Join(*out, "e2e-latency.png")
		if err := latency(rows, name); err != nil {
			log.Fatalf("charts: %s: %v", name, err)
		}
		fmt.Println("wrote", name)
		drew++
	} else {
		log.Printf("charts: %v (run make bench-e2e)", err)
	}
	if drew == 0 {
		os.Exit(1)
	}
}

// readCSV returns the rows as maps keyed by the header.
func readCSV(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("%s: no data", path)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			if i < len(r) {
				m[h] = r[i]
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// throughput draws messages per second against concurrent sessions for
// each server, at one message size.
func throughput(rows []map[string]string, size, path string) error {
	p := plot.New()
	kib := int(num(size)) >> 10
	p.Title.Text = fmt.Sprintf("Accepted and stored messages/s, %d KiB messages (smtp-source on loopback)", kib)
	p.X.Label.Text = "concurrent SMTP sessions"
	p.Y.Label.Text = "messages per second (median)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	labels := map[string]string{"letterbox": "letterbox (durable)", "postfix": "Postfix queue (durable)",
		"haraka": "Haraka, file + fsync (durable)", "sink": "smtp-sink (discards: ceiling)"}
	// Every target in the CSV, in its order (bench/smtp's targets list).
	var targets []string
	for _, r := range rows {
		if !slices.Contains(targets, r["target"]) {
			targets = append(targets, r["target"])
		}
	}
	for i, tg := range targets {
		var pts plotter.XYs
		for _, r := range rows {
			if r["target"] == tg && r["size_bytes"] == size {
				pts = append(pts, plotter.XY{X: num(r["sessions"]), Y: num(r["median_msg_s"])})
			}
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortFunc(pts, func(a, b plotter.XY) int { return int(a.X - b.X) })
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		label := labels[tg]
		if label == "" {
			label = tg
		}
		p.Legend.Add(label, l, s)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}

// latency draws p50, p95 and p99 against the offered rate, for each store,
// from the fixed-rate and stepped runs (medians over runs per rate).
func latency(rows []map[string]string, path string) error {
	p := plot.New()
	p.Title.Text = "letterbox dev: 250 reply → webhook received, latency percentiles (median over runs)"
	p.X.Label.Text = "offered rate (messages per second)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	type key struct {
		store string
		rate  float64
	}
	vals := map[key]map[string][]float64{}
	var stores []string
	for _, r := range rows {
		k := key{r["store"], num(r["rate_msg_s"])}
		if vals[k] == nil {
			vals[k] = map[string][]float64{}
		}
		if !slices.Contains(stores, r["store"]) {
			stores = append(stores, r["store"])
		}
		for _, q := range []string{"p50_ms", "p95_ms", "p99_ms"} {
			vals[k][q] = append(vals[k][q], max(num(r[q]), 0.1))
		}
	}
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	dashes := map[string][]vg.Length{"p50_ms": nil, "p95_ms": {vg.Points(4), vg.Points(2)}, "p99_ms": {vg.Points(1), vg.Points(2)}}
	for si, st := range stores {
		for _, q := range []string{"p50_ms", "p95_ms", "p99_ms"} {
			var pts plotter.XYs
			for k, v := range vals {
				if k.store == st {
					pts = append(pts, plotter.XY{X: k.rate, Y: median(v[q])})
				}
			}
			slices.SortFunc(pts, func(a, b plotter.XY) int { return int(a.X - b.X) })
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			l.Color, s.Color = plotutil.Color(si), plotutil.Color(si)
			l.Dashes = dashes[q]
			s.Shape = draw.CircleGlyph{}
			p.Add(l, s)
			p.Legend.Add(fmt.Sprintf("%s store, %s", st, q[:3]), l)
		}
	}
	target := plotter.NewFunction(func(float64) float64 { return 100 })
	target.Color = color.RGBA{R: 200, A: 255}
	target.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	p.Add(target)
	p.Legend.Add("p99 target at 200 msg/s (100 ms)", target)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p.Save(10*vg.Inch, 6*vg.Inch, path)
}
