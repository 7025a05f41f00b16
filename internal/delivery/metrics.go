package delivery

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/letterboxmail/letterbox/internal/emf"
)

// Metrics counts delivery attempts. A nil *Metrics records nothing.
// `letterbox dev` serves them on /metrics (NewMetrics); the deliver
// function writes them as EMF lines (NewEMFMetrics).
type Metrics struct {
	emf      *emf.Writer
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	dead     *prometheus.CounterVec
}

// NewMetrics registers the delivery metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_delivery_attempts_total", Help: "Delivery attempts by action kind and outcome (delivered, retry, failed).",
		}, []string{"kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "letterbox_delivery_attempt_seconds", Help: "Duration of delivery attempts by action kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_delivery_dead_letters_total", Help: "Jobs dead-lettered, by action kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.attempts, m.latency, m.dead)
	return m
}

func (m *Metrics) observe(ctx context.Context, j *Job, outcome string, seconds float64) {
	if m == nil {
		return
	}
	m.emitEMF(ctx, j, outcome, seconds)
	if m.attempts == nil {
		return
	}
	kind := j.Kind
	m.attempts.WithLabelValues(kind, outcome).Inc()
	m.latency.WithLabelValues(kind).Observe(seconds)
	if outcome == StatusFailed {
		m.dead.WithLabelValues(kind).Inc()
	}
}
