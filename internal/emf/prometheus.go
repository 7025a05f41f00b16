package emf

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Prometheus turns a Prometheus registry's counters and histograms into
// EMF lines, so that a long-running process's metrics (the gateway's)
// reach CloudWatch through its log stream, without an agent. Each round
// writes, for every series that changed since the last round, its
// increase: a counter's as the metric of the family's name, a histogram's
// count and sum as NAME_count and NAME_sum. The series' labels are
// dimensions, after Dims. Gauges are left out.
type Prometheus struct {
	W        *Writer
	Gatherer prometheus.Gatherer
	// Dims come first on every line (e.g. Service=smtpgw).
	Dims []Dim
	// Prefix keeps only families whose name starts with it.
	Prefix string

	last map[string]float64
}

// Emit writes one round.
func (p *Prometheus) Emit() error {
	fams, err := p.Gatherer.Gather()
	if err != nil {
		return err
	}
	if p.last == nil {
		p.last = map[string]float64{}
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, p.Prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			dims := append([]Dim(nil), p.Dims...)
			var key strings.Builder
			key.WriteString(name)
			labels := m.GetLabel()
			sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
			for _, l := range labels {
				dims = append(dims, Dim{l.GetName(), l.GetValue()})
				key.WriteString("," + l.GetName() + "=" + l.GetValue())
			}
			var metrics []Metric
			delta := func(suffix string, v float64, unit string) {
				k := key.String() + suffix
				if d := v - p.last[k]; d > 0 {
					metrics = append(metrics, Metric{Name: name + suffix, Unit: unit, Value: d})
				}
				p.last[k] = v
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				delta("", m.GetCounter().GetValue(), Count)
			case dto.MetricType_HISTOGRAM:
				unit := ""
				if strings.HasSuffix(name, "_seconds") {
					unit = "Seconds"
				}
				delta("_count", float64(m.GetHistogram().GetSampleCount()), Count)
				delta("_sum", m.GetHistogram().GetSampleSum(), unit)
			}
			if err := p.W.Emit(dims, nil, metrics...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run emits a round every interval until ctx ends, and a last one then.
func (p *Prometheus) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = p.Emit()
			return
		case <-t.C:
			_ = p.Emit()
		}
	}
}
