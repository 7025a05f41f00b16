package smtpgw

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Policy rejection reasons: the "reason" label of
// letterbox_smtp_policy_rejections_total and the "reason" log key.
const (
	reasonConnLimit      = "connection_limit"
	reasonConnLimitIP    = "connection_limit_ip"
	reasonTooManyRcpts   = "too_many_recipients"
	reasonSPFFail        = "spf_fail"
	reasonSPFTempError   = "spf_temperror"
	reasonDNSBL          = "dnsbl"
	reasonSize           = "message_size"
	reasonBareNewline    = "bare_newline"
	reasonLineTooLong    = "line_too_long"
	reasonTooManyErrors  = "too_many_errors"
	reasonAuthRequired   = "auth_required"
	reasonAuthFailed     = "auth_failed"
	reasonAuthRateLimit  = "auth_rate_limited"
	reasonShuttingDown   = "shutting_down"
	reasonProxyHeader    = "proxy_header"
	reasonTLSFailed      = "tls_handshake_failed"
	reasonInvalidAddress = "invalid_address"
	reasonClientDenied   = "client_denied"
	reasonRateLimit      = "rate_limited"
	reasonPolicyHook     = "policy_hook"
)

type metrics struct {
	connections      *prometheus.CounterVec // listener, result
	connectionsOpen  *prometheus.GaugeVec   // listener
	transactions     *prometheus.CounterVec // listener, code
	bytes            prometheus.Counter
	messageSize      prometheus.Histogram
	storeWrite       *prometheus.HistogramVec // result
	tlsHandshakes    *prometheus.CounterVec   // result, version
	rejections       *prometheus.CounterVec   // reason
	authAttempts     *prometheus.CounterVec   // mechanism, result
	certReloads      *prometheus.CounterVec   // result
	certNotAfter     prometheus.Gauge
	sessionsDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_connections_total",
			Help: "SMTP connections by listener (smtp, submission) and result (accepted, or why refused).",
		}, []string{"listener", "result"}),
		connectionsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "letterbox_smtp_connections_open",
			Help: "SMTP connections open now.",
		}, []string{"listener"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_transactions_total",
			Help: "Mail transactions by listener and final reply code (250 stored; 0 when the client went away).",
		}, []string{"listener", "code"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "letterbox_smtp_received_bytes_total",
			Help: "Bytes of message data received (accepted or not).",
		}),
		messageSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "letterbox_smtp_message_size_bytes",
			Help:    "Size of stored messages as received.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10), // 1 KiB … 256 MiB
		}),
		storeWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "letterbox_smtp_store_write_seconds",
			Help:    "Time from the end of message data to the store's commit (or failure).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"result"}),
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_tls_handshakes_total",
			Help: "STARTTLS handshakes by result and TLS version.",
		}, []string{"result", "version"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_policy_rejections_total",
			Help: "Refusals by reason: relay_denied, unknown_recipient, reject_rule, spf_fail, dnsbl, message_size, bare_newline, connection_limit, client_denied, rate_limited, policy_hook, …",
		}, []string{"reason"}),
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_auth_attempts_total",
			Help: "AUTH attempts on the submission listener by mechanism and result.",
		}, []string{"mechanism", "result"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "letterbox_smtp_tls_certificate_loads_total",
			Help: "Loads of the TLS certificate and key files by result.",
		}, []string{"result"}),
		certNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "letterbox_smtp_tls_certificate_not_after_seconds",
			Help: "Expiry (Unix time) of the certificate in use.",
		}),
		sessionsDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "letterbox_smtp_session_duration_seconds",
			Help:    "Duration of SMTP sessions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.connections, m.connectionsOpen, m.transactions, m.bytes, m.messageSize, m.storeWrite,
		m.tlsHandshakes, m.rejections, m.authAttempts, m.certReloads, m.certNotAfter, m.sessionsDuration,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
