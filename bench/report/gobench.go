package report

import (
	"bufio"
	"bytes"
	"slices"
	"strconv"
	"strings"
)

// GoBench is `go test -bench` output, parsed: each sub-benchmark's name
// (without the -GOMAXPROCS suffix) -> unit ("ns/op", "B/op", a custom
// metric) -> one value per repetition (-count).
type GoBench map[string]map[string][]float64

// ParseGoBench reads the result lines of benchmark bench's sub-benchmarks
// ("BenchmarkParse/NAME-2  N  V UNIT  V UNIT ...") from out.
func ParseGoBench(out []byte, bench string) GoBench {
	g := GoBench{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		name, ok := strings.CutPrefix(f0(f), bench+"/")
		if !ok || len(f) < 4 {
			continue
		}
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		if g[name] == nil {
			g[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				g[name][f[i+1]] = append(g[name][f[i+1]], v)
			}
		}
	}
	return g
}

func f0(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Median is the median of name's values in unit; ok is false when there
// are none.
func (g GoBench) Median(name, unit string) (m float64, ok bool) {
	xs := slices.Clone(g[name][unit])
	if len(xs) == 0 {
		return 0, false
	}
	slices.Sort(xs)
	return xs[len(xs)/2], true
}
