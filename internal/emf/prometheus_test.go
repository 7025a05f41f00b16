package emf

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPrometheusIncreases(t *testing.T) {
	reg := prometheus.NewRegistry()
	tx := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "letterbox_smtp_transactions_total"}, []string{"listener", "code"})
	store := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "letterbox_smtp_store_write_seconds"}, []string{"result"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "go_other_total"})
	open := prometheus.NewGauge(prometheus.GaugeOpts{Name: "letterbox_smtp_connections_open"})
	reg.MustRegister(tx, store, other, open)
	var buf bytes.Buffer
	w := New(&buf, "letterbox/stack")
	w.now = func() time.Time { return time.UnixMilli(1) }
	p := &Prometheus{W: w, Gatherer: reg, Dims: []Dim{{"Service", "smtpgw"}}, Prefix: "letterbox_"}
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}

	tx.WithLabelValues("smtp", "250").Add(3)
	tx.WithLabelValues("smtp", "451").Inc()
	store.WithLabelValues("ok").Observe(0.5)
	other.Inc()
	open.Set(7)
	if err := p.Emit(); err != nil {
		t.Fatal(err)
	}
	got := lines()
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3 (two counters, one histogram; no gauge, no other prefix): %v", len(got), got)
	}
	want := map[string]float64{"250": 3, "451": 1}
	for _, l := range got[1:] {
		if l["letterbox_smtp_transactions_total"] != want[l["code"].(string)] || l["Service"] != "smtpgw" || l["listener"] != "smtp" {
			t.Errorf("line %v", l)
		}
	}
	if got[0]["letterbox_smtp_store_write_seconds_count"] != 1.0 || got[0]["letterbox_smtp_store_write_seconds_sum"] != 0.5 || got[0]["result"] != "ok" {
		t.Errorf("histogram line %v", got[0])
	}

	// The next round writes increases only, and nothing for what did not
	// change.
	tx.WithLabelValues("smtp", "250").Add(2)
	if err := p.Emit(); err != nil {
		t.Fatal(err)
	}
	got = lines()
	if len(got) != 1 || got[0]["letterbox_smtp_transactions_total"] != 2.0 || got[0]["code"] != "250" {
		t.Fatalf("second round %v", got)
	}
}
