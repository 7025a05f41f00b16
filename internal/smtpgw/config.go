package smtpgw

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
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
	// Hostname is the name in the greeting and the Received header.
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

	envErrs map[string]error
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
		if c.Hostname == "" {
			c.Hostname = "localhost"
		}
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
	for name, err := range c.envErrs {
		errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
	}
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
	for _, z := range c.DNSBL {
		if z == "" || strings.ContainsAny(z, " /@") {
			errs = append(errs, fmt.Errorf("--dnsbl %q is not a DNS zone", z))
		}
	}
	return errors.Join(errs...)
}

// RegisterFlags registers the gateway's flags on fs, each defaulting to its
// LETTERBOX_* environment variable as getenv reads it (flags win over the
// environment; the command passes os.Getenv, so this package reads no
// configuration itself):
//
//	--hostname               LETTERBOX_HOSTNAME
//	--submission             LETTERBOX_SUBMISSION_ADDR
//	--tls-cert, --tls-key    LETTERBOX_TLS_CERT, LETTERBOX_TLS_KEY
//	--max-message-bytes      LETTERBOX_MAX_MESSAGE_BYTES
//	--max-recipients         LETTERBOX_MAX_RECIPIENTS
//	--max-connections        LETTERBOX_MAX_CONNECTIONS
//	--max-connections-per-ip LETTERBOX_MAX_CONNECTIONS_PER_IP
//	--max-errors             LETTERBOX_MAX_ERRORS
//	--command-timeout        LETTERBOX_COMMAND_TIMEOUT
//	--data-timeout           LETTERBOX_DATA_TIMEOUT
//	--shutdown-timeout       LETTERBOX_SHUTDOWN_TIMEOUT
//	--resolver               LETTERBOX_RESOLVER
//	--spf                    LETTERBOX_SPF
//	--dnsbl                  LETTERBOX_DNSBL
//	--proxy-protocol-from    LETTERBOX_PROXY_PROTOCOL_FROM
//	--auth-users             LETTERBOX_AUTH_USERS
//	--rspamd                 LETTERBOX_RSPAMD
//	--clamd                  LETTERBOX_CLAMD
//
// The listen address (--smtp) is registered by the command, which shares
// it with other servers. An invalid environment value is reported by New
// unless a flag overrides it.
func RegisterFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) {
	if c.envErrs == nil {
		c.envErrs = map[string]error{}
	}
	r := registrar{fs: fs, c: c, getenv: getenv}
	r.str(&c.Hostname, "hostname", "LETTERBOX_HOSTNAME", "host name in the greeting and Received header (default: the system's)")
	r.str(&c.SubmissionAddr, "submission", "LETTERBOX_SUBMISSION_ADDR", "optional submission listener (e.g. :587) requiring STARTTLS and AUTH")
	r.str(&c.TLSCert, "tls-cert", "LETTERBOX_TLS_CERT", "PEM certificate chain file for STARTTLS, reloaded on SIGHUP or change (or the PEM text itself)")
	r.str(&c.TLSKey, "tls-key", "LETTERBOX_TLS_KEY", "PEM private key file for STARTTLS (or the PEM text itself)")
	r.value(&int64Value{p: &c.MaxMessageBytes}, DefaultMaxMessageBytes, "max-message-bytes", "LETTERBOX_MAX_MESSAGE_BYTES", "largest message accepted, in bytes (SIZE, RFC 1870)")
	r.value(&intValue{p: &c.MaxRecipients}, DefaultMaxRecipients, "max-recipients", "LETTERBOX_MAX_RECIPIENTS", "recipients per message; more get 452 4.5.3")
	r.value(&intValue{p: &c.MaxConnections}, DefaultMaxConnections, "max-connections", "LETTERBOX_MAX_CONNECTIONS", "concurrent connections; more get 421 4.7.0")
	r.value(&intValue{p: &c.MaxConnectionsPerIP}, DefaultMaxConnectionsPerIP, "max-connections-per-ip", "LETTERBOX_MAX_CONNECTIONS_PER_IP", "concurrent connections per client IP; more get 421 4.7.0")
	r.value(&intValue{p: &c.MaxErrors}, DefaultMaxErrors, "max-errors", "LETTERBOX_MAX_ERRORS", "error replies per session before disconnecting with 421 4.7.0")
	r.value(&durationValue{p: &c.CommandTimeout}, DefaultCommandTimeout, "command-timeout", "LETTERBOX_COMMAND_TIMEOUT", "wait for each command (RFC 5321 §4.5.3.2)")
	r.value(&durationValue{p: &c.DataTimeout}, DefaultDataTimeout, "data-timeout", "LETTERBOX_DATA_TIMEOUT", "wait for each block of message data")
	r.value(&durationValue{p: &c.ShutdownTimeout}, DefaultShutdownTimeout, "shutdown-timeout", "LETTERBOX_SHUTDOWN_TIMEOUT", "on SIGTERM, how long in-flight transactions may finish")
	r.str(&c.Resolver, "resolver", "LETTERBOX_RESOLVER", "DNS server host:port for SPF and DNSBL (default: the system resolver)")
	r.value(&stringValue{p: &c.SPFPolicy}, SPFOff, "spf", "LETTERBOX_SPF", "SPF at MAIL FROM: off, tag (Received-SPF header) or reject (fail gets 550 5.7.23)")
	r.value(&listValue{p: &c.DNSBL}, "", "dnsbl", "LETTERBOX_DNSBL", "comma-separated DNS blocklist zones; listed clients get 554 5.7.1")
	r.value(&prefixListValue{p: &c.ProxyProtocolFrom}, "", "proxy-protocol-from", "LETTERBOX_PROXY_PROTOCOL_FROM", "comma-separated CIDRs (load balancers) that must send a PROXY v1/v2 header")
	r.str(&c.AuthUsersFile, "auth-users", "LETTERBOX_AUTH_USERS", "file of user:bcrypt-hash lines for AUTH on the submission listener")
	r.str(&c.Rspamd, "rspamd", "LETTERBOX_RSPAMD", "rspamd normal worker URL (e.g. http://127.0.0.1:11333): spam verdicts during DATA")
	r.str(&c.Clamd, "clamd", "LETTERBOX_CLAMD", "clamd address, tcp://HOST:PORT or unix:///PATH: virus verdicts during DATA")
}

type registrar struct {
	fs     *flag.FlagSet
	c      *Config
	getenv func(string) string
}

// settable is a flag.Value that can take its default.
type settable interface {
	flag.Value
	setDefault(def any)
}

func (r registrar) str(p *string, name, env, usage string) {
	r.value(&stringValue{p: p}, "", name, env, usage)
}

func (r registrar) value(v settable, def any, name, env, usage string) {
	v.setDefault(def)
	if s := r.getenv(env); s != "" {
		if err := v.Set(s); err != nil {
			r.c.envErrs[env] = err
		}
	}
	envErrs := r.c.envErrs
	r.fs.Var(&flagOverride{Value: v, clear: func() { delete(envErrs, env) }}, name, usage+" ["+env+"]")
}

// flagOverride forgets an invalid environment value once the flag is set.
type flagOverride struct {
	flag.Value
	clear func()
}

func (f *flagOverride) String() string {
	if f == nil || f.Value == nil {
		return ""
	}
	return f.Value.String()
}

func (f *flagOverride) Set(s string) error {
	if err := f.Value.Set(s); err != nil {
		return err
	}
	f.clear()
	return nil
}

type stringValue struct{ p *string }

func (v *stringValue) setDefault(d any) {
	if s := d.(string); s != "" || *v.p == "" {
		*v.p = s
	}
}
func (v *stringValue) Set(s string) error { *v.p = s; return nil }
func (v *stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

type intValue struct{ p *int }

func (v *intValue) setDefault(d any) {
	if *v.p == 0 {
		*v.p = d.(int)
	}
}
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*v.p = n
	return nil
}
func (v *intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

type int64Value struct{ p *int64 }

func (v *int64Value) setDefault(d any) {
	if *v.p == 0 {
		*v.p = int64(d.(int))
	}
}
func (v *int64Value) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}
func (v *int64Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

// parseBytes reads a byte count: digits with an optional KiB, MiB or GiB
// suffix.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	for suf, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if rest, ok := strings.CutSuffix(t, suf); ok {
			t, mult = strings.TrimSpace(rest), m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 26214400 or 25MiB)", s)
	}
	return n * mult, nil
}

type durationValue struct{ p *time.Duration }

func (v *durationValue) setDefault(d any) {
	if *v.p == 0 {
		*v.p = d.(time.Duration)
	}
}
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 5m)", s)
	}
	*v.p = d
	return nil
}
func (v *durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

type listValue struct{ p *[]string }

func (v *listValue) setDefault(any) {}
func (v *listValue) Set(s string) error {
	*v.p = nil
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*v.p = append(*v.p, f)
		}
	}
	return nil
}
func (v *listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

type prefixListValue struct{ p *[]netip.Prefix }

func (v *prefixListValue) setDefault(any) {}
func (v *prefixListValue) Set(s string) error {
	ps, err := ParsePrefixes(s)
	if err != nil {
		return err
	}
	*v.p = ps
	return nil
}
func (v *prefixListValue) String() string {
	if v.p == nil {
		return ""
	}
	var ss []string
	for _, p := range *v.p {
		ss = append(ss, p.String())
	}
	return strings.Join(ss, ",")
}

// ParsePrefixes parses a comma-separated list of CIDRs; a bare address is
// a single-address prefix.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8)", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
