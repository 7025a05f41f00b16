package pipeline

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/smtpgw"
)

// GatewayFlags is the gateway's configuration as the command line and the
// environment give it, for the smtpgw binary and `letterbox dev`.
type GatewayFlags struct {
	config  smtpgw.Config
	envErrs map[string]error
}

// RegisterGatewayFlags registers the gateway's flags on fs, each
// defaulting to its LETTERBOX_* environment variable as getenv reads it
// (flags win over the environment):
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
//	--policy-hook            LETTERBOX_POLICY_HOOK
//
// The policy hook's signing secret comes from LETTERBOX_POLICY_HOOK_SECRET
// only, never a flag (flags show in process listings); getenv also
// resolves the routes file's policy.hook.secret_env.
//
// This is the one place a gateway setting becomes a flag: a new
// smtpgw.Config field gets its line here (and in docs/gateway.md). The
// listen address (--smtp) is registered by each command, whose defaults
// differ. Call Config after fs.Parse.
func RegisterGatewayFlags(fs *flag.FlagSet, getenv func(string) string) *GatewayFlags {
	g := &GatewayFlags{envErrs: map[string]error{}}
	c := &g.config
	r := registrar{fs: fs, envErrs: g.envErrs, getenv: getenv}
	r.str(&c.Hostname, "hostname", "LETTERBOX_HOSTNAME", "host name in the greeting and Received header (default: the system's)")
	r.str(&c.SubmissionAddr, "submission", "LETTERBOX_SUBMISSION_ADDR", "optional submission listener (e.g. :587) requiring STARTTLS and AUTH")
	r.str(&c.TLSCert, "tls-cert", "LETTERBOX_TLS_CERT", "PEM certificate chain file for STARTTLS, reloaded on SIGHUP or change (or the PEM text itself)")
	r.str(&c.TLSKey, "tls-key", "LETTERBOX_TLS_KEY", "PEM private key file for STARTTLS (or the PEM text itself)")
	r.value(&int64Value{p: &c.MaxMessageBytes}, smtpgw.DefaultMaxMessageBytes, "max-message-bytes", "LETTERBOX_MAX_MESSAGE_BYTES", "largest message accepted, in bytes (SIZE, RFC 1870)")
	r.value(&intValue{p: &c.MaxRecipients}, smtpgw.DefaultMaxRecipients, "max-recipients", "LETTERBOX_MAX_RECIPIENTS", "recipients per message; more get 452 4.5.3")
	r.value(&intValue{p: &c.MaxConnections}, smtpgw.DefaultMaxConnections, "max-connections", "LETTERBOX_MAX_CONNECTIONS", "concurrent connections; more get 421 4.7.0")
	r.value(&intValue{p: &c.MaxConnectionsPerIP}, smtpgw.DefaultMaxConnectionsPerIP, "max-connections-per-ip", "LETTERBOX_MAX_CONNECTIONS_PER_IP", "concurrent connections per client IP; more get 421 4.7.0")
	r.value(&intValue{p: &c.MaxErrors}, smtpgw.DefaultMaxErrors, "max-errors", "LETTERBOX_MAX_ERRORS", "error replies per session before disconnecting with 421 4.7.0")
	r.value(&durationValue{p: &c.CommandTimeout}, smtpgw.DefaultCommandTimeout, "command-timeout", "LETTERBOX_COMMAND_TIMEOUT", "wait for each command (RFC 5321 §4.5.3.2)")
	r.value(&durationValue{p: &c.DataTimeout}, smtpgw.DefaultDataTimeout, "data-timeout", "LETTERBOX_DATA_TIMEOUT", "wait for each block of message data")
	r.value(&durationValue{p: &c.ShutdownTimeout}, smtpgw.DefaultShutdownTimeout, "shutdown-timeout", "LETTERBOX_SHUTDOWN_TIMEOUT", "on SIGTERM, how long in-flight transactions may finish")
	r.str(&c.Resolver, "resolver", "LETTERBOX_RESOLVER", "DNS server host:port for SPF and DNSBL (default: the system resolver)")
	r.value(&stringValue{p: &c.SPFPolicy}, smtpgw.SPFOff, "spf", "LETTERBOX_SPF", "SPF at MAIL FROM: off, tag (Received-SPF header) or reject (fail gets 550 5.7.23)")
	r.value(&listValue{p: &c.DNSBL}, "", "dnsbl", "LETTERBOX_DNSBL", "comma-separated DNS blocklist zones; listed clients get 554 5.7.1")
	r.value(&prefixListValue{p: &c.ProxyProtocolFrom}, "", "proxy-protocol-from", "LETTERBOX_PROXY_PROTOCOL_FROM", "comma-separated CIDRs (load balancers) that must send a PROXY v1/v2 header")
	r.str(&c.AuthUsersFile, "auth-users", "LETTERBOX_AUTH_USERS", "file of user:bcrypt-hash lines for AUTH on the submission listener")
	r.str(&c.Rspamd, "rspamd", "LETTERBOX_RSPAMD", "rspamd normal worker URL (e.g. http://127.0.0.1:11333): spam verdicts during DATA")
	r.str(&c.Clamd, "clamd", "LETTERBOX_CLAMD", "clamd address, tcp://HOST:PORT or unix:///PATH: virus verdicts during DATA")
	r.str(&c.PolicyHook, "policy-hook", "LETTERBOX_POLICY_HOOK", "policy hook URL or Lambda function ARN, asked at RCPT and end of DATA; overrides policy.hook.url (secret: LETTERBOX_POLICY_HOOK_SECRET)")
	c.PolicyHookSecret = getenv("LETTERBOX_POLICY_HOOK_SECRET")
	c.Getenv = getenv
	return g
}

// Addr is where the SMTP listen address goes: each command registers it
// as its own --smtp flag, with its own default.
func (g *GatewayFlags) Addr() *string { return &g.config.Addr }

// Config returns the gateway's configuration once the flags are parsed.
// An invalid environment value is an error naming the variable, unless
// its flag overrode it.
func (g *GatewayFlags) Config() (smtpgw.Config, error) {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(g.envErrs)) {
		errs = append(errs, fmt.Errorf("environment %s: %w", name, g.envErrs[name]))
	}
	return g.config, errors.Join(errs...)
}

type registrar struct {
	fs      *flag.FlagSet
	envErrs map[string]error
	getenv  func(string) string
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
			r.envErrs[env] = err
		}
	}
	envErrs := r.envErrs
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
