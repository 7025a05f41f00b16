package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SelfSigned returns a self-signed server certificate (DER) and its key
// (ECDSA P-256), valid from an hour ago for a day, for the names: the
// first is the common name; each is a DNS name, or an IP address SAN when
// it parses as one.
func SelfSigned(tb testing.TB, names ...string) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

// WriteCert writes a self-signed certificate for name (SelfSigned) to
// dir/cert.pem and dir/key.pem, each written to a temporary name and
// renamed as a certificate manager would, and returns their paths.
func WriteCert(tb testing.TB, dir, name string) (string, string) {
	tb.Helper()
	der, key := SelfSigned(tb, name)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certPath, "CERTIFICATE", der}, {keyPath, "PRIVATE KEY", kder}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			tb.Fatal(err)
		}
	}
	return certPath, keyPath
}

// PeerName says STARTTLS (RFC 3207) to the SMTP server at addr and returns
// the common name of the certificate it presents (not verified).
func PeerName(tb testing.TB, addr string) string {
	tb.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		tb.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	return st.PeerCertificates[0].Subject.CommonName
}
