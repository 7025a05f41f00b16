package mailauth

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
)

// resolver sends every query to one DNS server, with a timeout per query,
// and makes names absolute so that no search domain is appended.
type resolver struct {
	r       *net.Resolver
	timeout time.Duration
}

func newResolver(addr string, timeout time.Duration) (*resolver, error) {
	if addr == "" {
		return &resolver{r: net.DefaultResolver, timeout: timeout}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fault.Permanentf("mailauth: resolver %q: want host:port", addr)
	}
	d := net.Dialer{Timeout: timeout}
	return &resolver{
		r: &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		timeout: timeout,
	}, nil
}

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (r *resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.r.LookupTXT(ctx, fqdn(name))
}

func (r *resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.r.LookupMX(ctx, fqdn(name))
}

func (r *resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.r.LookupIPAddr(ctx, fqdn(host))
}

func (r *resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.r.LookupAddr(ctx, addr)
}

// lookupTXTFunc adapts LookupTXT to go-msgauth's context-free callback.
func (r *resolver) lookupTXTFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
}

// dnsKind classifies a lookup error: "notfound", "temporary" or "error".
func dnsKind(err error) string {
	if err == nil {
		return ""
	}
	if de, ok := err.(*net.DNSError); ok {
		switch {
		case de.IsNotFound:
			return "notfound"
		case de.IsTimeout || de.IsTemporary:
			return "temporary"
		}
		return "error"
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "temporary"
	}
	return "error"
}

// serverRe matches the server a Go DNS error names, which is the system's
// configured one even when queries go to Config.Resolver.
var serverRe = regexp.MustCompile(`(lookup \S+) on [^ ]+:( |$)`)

func describe(err error) string {
	if err == nil {
		return ""
	}
	return cleanReason(fmt.Sprint(err))
}

// cleanReason removes the misleading server name from DNS error texts.
func cleanReason(s string) string {
	return serverRe.ReplaceAllString(s, "$1:$2")
}
