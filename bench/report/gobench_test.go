package report_test

import (
	"testing"

	"github.com/letterboxmail/letterbox/bench/report"
)

func TestParseGoBench(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkParse/plain-2         	    1000	      3000 ns/op	     512 B/op	       9 allocs/op
BenchmarkParse/plain-2         	    1000	      1000 ns/op	     512 B/op	       9 allocs/op
BenchmarkParse/plain-2         	    1000	      2000 ns/op	     512 B/op	       9 allocs/op
BenchmarkParse/multi-part-2    	     100	     50000 ns/op	      1.5 MiB/peak
BenchmarkOther/plain-2         	    1000	         7 ns/op
PASS
`)
	g := report.ParseGoBench(out, "BenchmarkParse")
	if m, ok := g.Median("plain", "ns/op"); !ok || m != 2000 {
		t.Errorf("plain ns/op median = %v, %v; want 2000", m, ok)
	}
	if m, ok := g.Median("multi-part", "MiB/peak"); !ok || m != 1.5 {
		t.Errorf("multi-part MiB/peak = %v, %v; want 1.5 (the name keeps its own dash)", m, ok)
	}
	if _, ok := g.Median("plain", "MiB/peak"); ok {
		t.Error("a unit plain never reported has a median")
	}
	if len(g) != 2 {
		t.Errorf("names = %v; BenchmarkOther must not be read", g)
	}
}
