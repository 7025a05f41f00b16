package smtpgw

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// certLoader serves the certificate for STARTTLS (RFC 3207) and reloads it
// from its files on Reload (SIGHUP) and, at most once per check interval,
// when a handshake finds that the files changed. Sessions already in TLS
// keep their keys; only new handshakes see a new certificate. A failed
// reload keeps the certificate in use.
//
// The certificate and key may also be given as PEM text instead of file
// names (ECS passes secrets that way, in LETTERBOX_TLS_CERT and
// LETTERBOX_TLS_KEY); they then never change.
type certLoader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	m                 *metrics

	mu      sync.Mutex
	cert    *tls.Certificate
	version string // modification times and sizes of both files
	checked time.Time
}

func newCertLoader(certFile, keyFile string, interval time.Duration, log *slog.Logger, m *metrics) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, interval: interval, log: log, m: m}
	if err := l.Reload(context.Background()); err != nil {
		return nil, err
	}
	return l, nil
}

// isPEM reports whether a --tls-cert or --tls-key value is PEM text
// rather than a file name.
func isPEM(s string) bool { return strings.Contains(s, "-----BEGIN ") }

func (l *certLoader) name() string {
	if isPEM(l.certFile) {
		return "(PEM from the environment)"
	}
	return l.certFile
}

func (l *certLoader) fileVersion() (string, error) {
	if isPEM(l.certFile) {
		return "inline", nil
	}
	var v string
	for _, f := range []string{l.certFile, l.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		v += fmt.Sprintf("%d-%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return v, nil
}

// Reload reads the files now.
func (l *certLoader) Reload(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reloadLocked(ctx)
}

func (l *certLoader) reloadLocked(ctx context.Context) error {
	l.checked = time.Now()
	version, _ := l.fileVersion()
	var cert tls.Certificate
	var err error
	switch {
	case isPEM(l.certFile) && isPEM(l.keyFile):
		cert, err = tls.X509KeyPair([]byte(l.certFile), []byte(l.keyFile))
	case isPEM(l.certFile) || isPEM(l.keyFile):
		err = errors.New("give both the certificate and the key as PEM text, or both as files")
	default:
		cert, err = tls.LoadX509KeyPair(l.certFile, l.keyFile)
	}
	if err == nil && cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		l.m.certReloads.WithLabelValues("error").Inc()
		if isPEM(l.certFile) || isPEM(l.keyFile) {
			err = fmt.Errorf("load TLS certificate and key: %w", err)
		} else {
			err = fmt.Errorf("load TLS certificate %s and key %s: %w", l.certFile, l.keyFile, err)
		}
		if l.cert != nil {
			l.log.ErrorContext(ctx, "TLS certificate reload failed; keeping the certificate in use", "err", err)
		}
		// Do not retry the same broken files on every handshake.
		l.version = version
		return err
	}
	l.cert, l.version = &cert, version
	l.m.certReloads.WithLabelValues("ok").Inc()
	l.m.certNotAfter.Set(float64(cert.Leaf.NotAfter.Unix()))
	l.log.InfoContext(ctx, "TLS certificate loaded", "cert", l.name(), "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (l *certLoader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= l.interval {
		l.checked = time.Now()
		if v, err := l.fileVersion(); err == nil && v != l.version {
			_ = l.reloadLocked(context.Background())
		}
	}
	return l.cert, nil
}

// tlsConfig returns the server TLS configuration: TLS 1.2 or later, the
// reloading certificate, and handshake metrics.
func (g *Gateway) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: g.certs.getCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			g.m.tlsHandshakes.WithLabelValues("ok", tls.VersionName(cs.Version)).Inc()
			return nil
		},
	}
}
