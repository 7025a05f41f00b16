package smtpgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/webhook"
)

// Defaults. Timeouts follow RFC 5321 §4.5.3.2.7: a server waits at least
// five minutes for the next command (and, here, for each block of message
// data).
const (
	DefaultMaxMessageBytes     = 26214400 // 25 MiB
	DefaultMaxRecipients       = 100
	DefaultMaxConnections      = 2000
	DefaultMaxConnectionsPerIP = 50
	DefaultMaxErrors           = 20
	DefaultCommandTimeout      = 5 * time.Minute
	DefaultDataTimeout         = 5 * time.Minute
	DefaultStoreTimeout        = 2 * time.Minute
	DefaultShutdownTimeout     = 25 * time.Second
	DefaultProxyHeaderTimeout  = 10 * time.Second
	DefaultTLSCheckInterval    = 10 * time.Second
	DefaultAuthFailureBurst    = 5
	DefaultAuthFailureInterval = 12 * time.Second
	DefaultDNSTimeout          = 10 * time.Second
)

// SPF policies.
const (
	SPFOff    = "off"    // no SPF check
	SPFTag    = "tag"    // check and record the result in a Received-SPF header
	SPFReject = "reject" // tag, and refuse "fail" with 550 5.7.23
)

// Config configures a Gateway. The zero value of a field means its default.
type Config struct {
	// Addr is the SMTP (MX) listen address, e.g. ":25" or "127.0.0.1:2525".
	Addr string
	// SubmissionAddr, when set, is a second listener that requires AUTH
	// (after STARTTLS) before MAIL FROM, e.g. ":587".
	SubmissionAddr string
	// Hostname is the name in the greeting and the Received header;
	// empty means "localhost" (pipeline.Gateway sets the system's).
	Hostname string

	// TLSCert and TLSKey are PEM files, or PEM text; with them STARTTLS
	// is offered. Files are reloaded on ReloadTLS (SIGHUP) and when they
	// change.
	TLSCert, TLSKey string
	// TLSCheckInterval is how often a handshake checks the files for
	// changes.
	TLSCheckInterval time.Duration

	MaxMessageBytes     int64
	MaxRecipients       int
	MaxConnections      int
	MaxConnectionsPerIP int
	// MaxErrors is the number of error replies a session may receive
	// before it is disconnected with 421 4.7.0.
	MaxErrors int

	// CommandTimeout bounds the wait for each command line; DataTimeout
	// the wait for each read of message data (RFC 5321 §4.5.3.2).
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// StoreTimeout bounds the store commit after the last byte of a
	// message arrived; past it the client gets 451 4.3.0.
	StoreTimeout time.Duration
	// ShutdownTimeout is how long ListenAndServe lets in-flight
	// transactions finish when its context ends.
	ShutdownTimeout time.Duration

	// Resolver is a DNS server (host:port) for SPF and DNSBL lookups;
	// empty means the system resolver.
	Resolver   string
	DNSTimeout time.Duration
	// SPFPolicy is SPFOff, SPFTag or SPFReject.
	SPFPolicy string
	// DNSBL lists blocklist zones (e.g. zen.spamhaus.org); a listed
	// client gets 554 5.7.1 at MAIL FROM.
	DNSBL []string

	// ProxyProtocolFrom lists the source ranges (load balancers) that
	// must send a PROXY protocol v1 or v2 header; other sources must not.
	ProxyProtocolFrom  []netip.Prefix
	ProxyHeaderTimeout time.Duration

	// AuthUsersFile is an htpasswd-style file of "user:bcrypt-hash"
	// lines for AUTH on the submission listener. It is re-read when it
	// changes.
	AuthUsersFile string
	// AuthFailureBurst failed AUTH attempts are allowed per client IP,
	// then one more per AuthFailureInterval.
	AuthFailureBurst    int
	AuthFailureInterval time.Duration

	// Rspamd is the base URL of an rspamd normal worker (e.g.
	// http://127.0.0.1:11333) asked about every message; Clamd is
	// clamd's address, tcp://HOST:PORT or unix:///PATH. The routes
	// file's policy: key says what their verdicts decide (scan.go).
	Rspamd string
	Clamd  string
	// PolicyHook, when set, is the policy hook's URL (or Lambda
	// function ARN), overriding policy.hook.url in the routes file; the
	// rest of policy.hook (timeout, fail) applies, or its defaults.
	// PolicyHookSecret signs its requests ("whsec_…"), overriding
	// policy.hook.secret and secret_env.
	PolicyHook       string
	PolicyHookSecret string
	// Getenv resolves policy.hook.secret_env (the command passes
	// os.Getenv); nil resolves nothing.
	Getenv func(string) string
	// HookEgress says where the policy hook may connect: strict by
	// default; `letterbox dev` allows loopback.
	HookEgress egress.Policy
	// HookLambda invokes a policy hook that is a Lambda function; nil
	// makes such a hook fail (and its failure mode apply).
	HookLambda policyhook.LambdaAPI

	// now is the rate limiter's clock (tests set a fake one).
	now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	def(&c.MaxRecipients, DefaultMaxRecipients)
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	def(&c.MaxErrors, DefaultMaxErrors)
	def(&c.AuthFailureBurst, DefaultAuthFailureBurst)
	defd(&c.CommandTimeout, DefaultCommandTimeout)
	defd(&c.DataTimeout, DefaultDataTimeout)
	defd(&c.StoreTimeout, DefaultStoreTimeout)
	defd(&c.ShutdownTimeout, DefaultShutdownTimeout)
	defd(&c.ProxyHeaderTimeout, DefaultProxyHeaderTimeout)
	defd(&c.TLSCheckInterval, DefaultTLSCheckInterval)
	defd(&c.AuthFailureInterval, DefaultAuthFailureInterval)
	defd(&c.DNSTimeout, DefaultDNSTimeout)
	if c.SPFPolicy == "" {
		c.SPFPolicy = SPFOff
	}
}

// validate checks a configuration whose defaults are set.
func (c *Config) validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("no SMTP listen address (--smtp)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.SubmissionAddr != "" {
		if c.TLSCert == "" {
			errs = append(errs, errors.New("--submission needs --tls-cert and --tls-key: AUTH is offered only after STARTTLS"))
		}
		if c.AuthUsersFile == "" {
			errs = append(errs, errors.New("--submission needs --auth-users FILE"))
		}
	}
	if c.MaxMessageBytes < 0 || c.MaxMessageBytes > 4<<30-1 {
		errs = append(errs, fmt.Errorf("--max-message-bytes %d: must be between 1 and 4294967295", c.MaxMessageBytes))
	}
	for _, v := range []struct {
		name string
		n    int
	}{
		{"--max-recipients", c.MaxRecipients},
		{"--max-connections", c.MaxConnections},
		{"--max-connections-per-ip", c.MaxConnectionsPerIP},
		{"--max-errors", c.MaxErrors},
	} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive", v.name, v.n))
		}
	}
	switch c.SPFPolicy {
	case SPFOff, SPFTag, SPFReject:
	default:
		errs = append(errs, fmt.Errorf("--spf %q: use off, tag or reject", c.SPFPolicy))
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			errs = append(errs, fmt.Errorf("--resolver %q: want host:port", c.Resolver))
		}
	}
	if c.PolicyHook != "" {
		if err := routing.CheckHookURL(c.PolicyHook); err != nil {
			errs = append(errs, fmt.Errorf("--policy-hook: %w", err))
		}
	}
	if c.PolicyHookSecret != "" {
		if _, err := webhook.ParseSecret(c.PolicyHookSecret); err != nil {
			// The value is a secret: never repeated.
			errs = append(errs, errors.New("LETTERBOX_POLICY_HOOK_SECRET: must be \"whsec_\" followed by base64"))
		}
	}
	for _, z := range c.DNSBL {
		if z == "" || strings.ContainsAny(z, " /@") {
			errs = append(errs, fmt.Errorf("--dnsbl %q is not a DNS zone", z))
		}
	}
	return errors.Join(errs...)
}
