// Package routing loads the routes file and decides, for each received
// message, which routes match and which delivery actions run.
//
// It also answers the gateway's question at RCPT time (RFC 5321 §3.3):
// may this recipient be accepted? Domains not listed are refused as relaying
// (550 5.7.1), recipients no route accepts as unknown (550 5.1.1), and
// reject rules give their own code (RFC 3463 enhanced status codes).
//
// The routes file (YAML, version 1):
//
//	domains: [example.test]
//	routes:
//	  - name: support
//	    match: {recipient: "support@example.test"}
//	    actions:
//	      - webhook: {url: "https://hooks.example.test/in", secret_env: HOOK_SECRET}
//	    stop: true
//
// Unknown keys are errors; every error names the file, line and field.
package routing

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/letterboxmail/letterbox/webhook"
)

// Config is a loaded, validated routes file.
type Config struct {
	Position
	// File is where the configuration came from, for error messages.
	File    string   `yaml:"-"`
	Version int      `yaml:"version"`
	Domains []string `yaml:"domains"`
	Routes  []*Route `yaml:"routes"`
	// Policy is what the gateway decides in the SMTP session (policy.go).
	Policy *Policy `yaml:"policy"`

	domains map[string]bool
}

// Route is one rule: a match and what to do.
type Route struct {
	Position
	Name     string    `yaml:"name"`
	Match    *Match    `yaml:"match"`
	CatchAll bool      `yaml:"catch_all"`
	Actions  []*Action `yaml:"actions"`
	Reject   *Reject   `yaml:"reject"`
	Stop     bool      `yaml:"stop"`
}

// Ends reports whether a match of the route ends its recipient's walk
// through the routes: it has stop: true, or a drop or quarantine action
// (which ends the message's routing for that recipient).
func (r *Route) Ends() bool {
	if r.Stop {
		return true
	}
	for _, a := range r.Actions {
		if a != nil && (a.Drop || a.Quarantine) {
			return true
		}
	}
	return false
}

// Match holds a route's conditions; all that are set must hold.
type Match struct {
	Position
	// Envelope conditions, decidable at RCPT time.
	Recipient []string `yaml:"recipient"`
	Tag       string   `yaml:"tag"`
	Sender    string   `yaml:"sender"`
	// Content conditions, decided once the message is parsed.
	From           string            `yaml:"from"`
	Subject        string            `yaml:"subject"`
	Headers        map[string]string `yaml:"headers"`
	MinSize        ByteSize          `yaml:"min_size"`
	MaxSize        ByteSize          `yaml:"max_size"`
	HasAttachment  *bool             `yaml:"has_attachment"`
	AttachmentType string            `yaml:"attachment_type"`
	Auth           map[string]string `yaml:"auth"`
	// Verdict and client conditions (verdicts.go), decided after DATA.
	SpamScore  string   `yaml:"spam_score"`
	SpamAction []string `yaml:"spam_action"`
	Virus      []string `yaml:"virus"`
	ClientIP   []string `yaml:"client_ip"`

	spamScore      *scoreCond
	clientIP       []netip.Prefix
	recipient      []*Pattern
	tag            *Pattern
	sender         *Pattern
	from           *Pattern
	subject        *Pattern
	headers        map[string]*Pattern
	attachmentType *Pattern
}

// Reject refuses matching recipients at RCPT time with the given reply.
type Reject struct {
	Position
	Code     int    `yaml:"code"`
	Enhanced string `yaml:"enhanced_code"`
	Message  string `yaml:"message"`
}

// Action is one thing to do with a matched message. Exactly one kind is set.
type Action struct {
	Position
	Webhook *WebhookAction `yaml:"webhook"`
	Forward *ForwardAction `yaml:"forward"`
	// The publish actions (publish.go).
	Lambda      *LambdaAction      `yaml:"lambda"`
	SQS         *SQSAction         `yaml:"sqs"`
	SNS         *SNSAction         `yaml:"sns"`
	EventBridge *EventBridgeAction `yaml:"eventbridge"`
	Store       bool               `yaml:"store"`
	Drop        bool               `yaml:"drop"`
	Retry       *Retry             `yaml:"retry"`
	// Quarantine copies the message to quarantine/ in the store, out of
	// every delivery, and ends the recipient's walk through the routes.
	Quarantine bool `yaml:"quarantine"`
}

// Kind names the action's kind: webhook, forward, lambda, sqs, sns,
// eventbridge, store, quarantine or drop.
func (a *Action) Kind() string {
	switch {
	case a.Webhook != nil:
		return "webhook"
	case a.Forward != nil:
		return "forward"
	case a.Lambda != nil:
		return "lambda"
	case a.SQS != nil:
		return "sqs"
	case a.SNS != nil:
		return "sns"
	case a.EventBridge != nil:
		return "eventbridge"
	case a.Store:
		return "store"
	case a.Quarantine:
		return "quarantine"
	default:
		return "drop"
	}
}

// WebhookAction posts the message to a URL, signed per Standard Webhooks.
type WebhookAction struct {
	Position
	URL string `yaml:"url"`
	// Secret is "whsec_<base64>"; SecretEnv names an environment variable
	// holding one. Secrets (and SecretsEnv, comma-separated) sign with
	// several keys during a rotation.
	Secret     string            `yaml:"secret"`
	SecretEnv  string            `yaml:"secret_env"`
	Secrets    []string          `yaml:"secrets"`
	Headers    map[string]string `yaml:"headers"`
	Timeout    Duration          `yaml:"timeout"`
	Format     string            `yaml:"format"`
	AllowLocal bool              `yaml:"allow_private_network"`
	// Attachments says how attachments travel: "links" (time-limited
	// URLs, the default), "inline" (base64 in the body, up to
	// InlineMaxBytes each; larger ones get a link) or "metadata" (neither).
	Attachments    string   `yaml:"attachments"`
	LinkTTL        Duration `yaml:"link_ttl"`
	InlineMaxBytes ByteSize `yaml:"inline_max_bytes"`
}

// ForwardAction re-sends the message over SMTP (package forward). Without
// Smarthost, each recipient's domain is delivered to by MX lookup.
type ForwardAction struct {
	Position
	To        []string `yaml:"to"`
	Smarthost string   `yaml:"smarthost"`
	// StartTLS: true requires TLS, false never starts it; unset means
	// opportunistic, or required when credentials are set.
	StartTLS    *bool  `yaml:"starttls"`
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// Timeout bounds one attempt (default: the forwarder's, 5m).
	Timeout Duration `yaml:"timeout"`
	// AllowLocal permits private and loopback destinations (SSRF guard).
	AllowLocal bool `yaml:"allow_private_network"`
	// ARCSeal adds an ARC set (RFC 8617) with the deployment's ARC key.
	// Off by default: draft-ietf-dmarc-arc-to-historic recommends against
	// new sealing deployments, so it is for destinations that trust this
	// sealer (docs/forwarding.md).
	ARCSeal bool `yaml:"arc_seal"`
}

// Retry is an action's retry schedule: exponential backoff with jitter from
// Initial, capped at Max, for at most Attempts attempts in all.
type Retry struct {
	Position
	Attempts int      `yaml:"attempts"`
	Initial  Duration `yaml:"initial"`
	Max      Duration `yaml:"max"`
}

// DefaultRetry keeps trying for more than a day even with the shortest
// jitter: 30s, 1m, 2m … doubling to a two-hour cap, 36 attempts in all
// (at least 28 hours, about 40 on average).
var DefaultRetry = Retry{Attempts: 36, Initial: Duration(30 * time.Second), Max: Duration(2 * time.Hour)}

// Load reads and validates a routes file against the default Limits.
func Load(path string) (*Config, error) { return Limits{}.Load(path) }

// Load reads and validates a routes file against the limits.
func (l Limits) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return l.Parse(path, data)
}

// Parse validates a routes file's contents against the default Limits;
// name is used in errors.
func Parse(name string, data []byte) (*Config, error) { return Limits{}.Parse(name, data) }

// Parse validates a routes file's contents against the limits: an action
// they cannot honour is refused, naming its file, line and field.
func (l Limits) Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, ConfigErrors{yamlError(name, err)}
	}
	d := &decoder{file: name}
	cfg := &Config{File: name}
	if root.Kind == 0 {
		return nil, ConfigErrors{{File: name, Msg: "file is empty"}}
	}
	d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	if len(d.errs) == 0 {
		cfg.validate(d, l)
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func yamlError(name string, err error) *ConfigError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &line)
		msg = strings.TrimSpace(lineRE.ReplaceAllString(msg, ""))
		msg = strings.TrimPrefix(msg, ": ")
	}
	return &ConfigError{File: name, Line: line, Msg: "not valid YAML: " + msg}
}

var routeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (c *Config) validate(d *decoder, lim Limits) {
	fail := func(line int, field, format string, args ...any) {
		d.errs = append(d.errs, &ConfigError{File: c.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Version != 0 && c.Version != 1 {
		fail(c.Line, "version", "unsupported version %d (this letterbox reads version 1)", c.Version)
	}
	if len(c.Domains) == 0 {
		fail(c.Line, "domains", "list at least one domain to receive mail for; letterbox never relays for others")
	}
	c.domains = map[string]bool{}
	for i, dom := range c.Domains {
		dom = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(dom), "."))
		if dom == "" || strings.ContainsAny(dom, "@ */") {
			fail(c.Line, fmt.Sprintf("domains[%d]", i), "%q is not a domain name", c.Domains[i])
			continue
		}
		c.domains[dom] = true
	}
	if c.Policy != nil {
		c.Policy.validate(fail)
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			fail(c.Line, p, "empty route")
			continue
		}
		if !routeNameRE.MatchString(r.Name) {
			fail(r.Line, p+".name", "%q: a route needs a name of letters, digits, '.', '_' or '-' (up to 64)", r.Name)
		} else if prev, dup := names[r.Name]; dup {
			fail(r.Line, p+".name", "%q is already the name of the route at line %d", r.Name, prev)
		} else {
			names[r.Name] = r.Line
		}
		switch {
		case r.CatchAll && r.Match != nil:
			fail(r.Line, p+".catch_all", "a catch-all route takes no match")
		case !r.CatchAll && r.Match == nil:
			fail(r.Line, p+".match", "required (or set catch_all: true)")
		}
		if r.Match != nil {
			r.Match.compile(fail, p+".match")
		}
		switch {
		case r.Reject != nil && len(r.Actions) > 0:
			fail(r.Line, p+".reject", "a route either rejects or has actions, not both")
		case r.Reject == nil && len(r.Actions) == 0:
			fail(r.Line, p+".actions", "required: at least one action (webhook, forward, store or drop)")
		}
		if r.Reject != nil {
			r.Reject.validate(fail, p+".reject")
			if r.Match != nil && r.Match.hasContent() {
				fail(r.Match.Line, p+".match", "a reject route is decided at RCPT time, so it may match only recipient, tag and sender")
			}
		}
		for j, a := range r.Actions {
			ap := fmt.Sprintf("%s.actions[%d]", p, j)
			if a == nil {
				fail(r.Line, ap, "empty action")
				continue
			}
			a.validate(fail, ap, lim)
		}
	}
}

func (m *Match) compile(fail func(int, string, string, ...any), p string) {
	pat := func(field, src string) *Pattern {
		if src == "" {
			return nil
		}
		pt, err := compilePattern(src)
		if err != nil {
			fail(m.Line, p+"."+field, "%q: %v", src, err)
		}
		return pt
	}
	for i, r := range m.Recipient {
		if pt := pat(fmt.Sprintf("recipient[%d]", i), r); pt != nil {
			m.recipient = append(m.recipient, pt)
		}
	}
	m.tag = pat("tag", m.Tag)
	m.sender = pat("sender", m.Sender)
	m.from = pat("from", m.From)
	m.subject = pat("subject", m.Subject)
	m.attachmentType = pat("attachment_type", m.AttachmentType)
	if len(m.Headers) > 0 {
		m.headers = map[string]*Pattern{}
		for name, v := range m.Headers {
			m.headers[name] = pat("headers."+name, v)
		}
	}
	for k, v := range m.Auth {
		switch k {
		case "spf", "dkim", "dmarc", "arc":
		default:
			fail(m.Line, p+".auth."+k, "unknown check (use spf, dkim, dmarc or arc)")
		}
		switch v {
		case "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy":
		default:
			fail(m.Line, p+".auth."+k, "%q is not a result (pass, fail, softfail, neutral, none, temperror, permerror)", v)
		}
	}
	m.compileVerdicts(fail, p)
	if m.MaxSize > 0 && m.MinSize > m.MaxSize {
		fail(m.Line, p+".min_size", "is larger than max_size")
	}
	if !m.hasContent() && len(m.Recipient) == 0 && m.Tag == "" && m.Sender == "" {
		fail(m.Line, p, "empty match; use catch_all: true to match everything")
	}
}

// hasContent reports whether the match needs the parsed message.
func (m *Match) hasContent() bool {
	return m.From != "" || m.Subject != "" || len(m.Headers) > 0 || m.MinSize > 0 || m.MaxSize > 0 ||
		m.HasAttachment != nil || m.AttachmentType != "" || len(m.Auth) > 0 ||
		m.SpamScore != "" || len(m.SpamAction) > 0 || len(m.Virus) > 0 || len(m.ClientIP) > 0
}

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

func (r *Reject) validate(fail func(int, string, string, ...any), p string) {
	if r.Code < 400 || r.Code > 599 {
		fail(r.Line, p+".code", "%d is not an SMTP failure code (4xx temporary or 5xx permanent)", r.Code)
	}
	if r.Enhanced == "" {
		r.Enhanced = fmt.Sprintf("%d.7.1", r.Code/100)
	} else if !enhancedRE.MatchString(r.Enhanced) || r.Enhanced[0] != byte('0'+r.Code/100) {
		fail(r.Line, p+".enhanced_code", "%q must be an RFC 3463 code whose class matches %d (e.g. %d.7.1)", r.Enhanced, r.Code, r.Code/100)
	}
	if r.Message == "" {
		r.Message = "Message refused by policy"
	}
	if strings.ContainsAny(r.Message, "\r\n") {
		fail(r.Line, p+".message", "must be one line")
	}
}

func (a *Action) validate(fail func(int, string, string, ...any), p string, lim Limits) {
	kinds := 0
	for _, set := range []bool{a.Webhook != nil, a.Forward != nil, a.Lambda != nil, a.SQS != nil, a.SNS != nil, a.EventBridge != nil, a.Store, a.Drop, a.Quarantine} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		fail(a.Line, p, "needs exactly one of webhook, forward, lambda, sqs, sns, eventbridge, store: true or drop: true (or quarantine: true)")
		return
	}
	a.validatePublish(fail, p)
	if a.Retry != nil {
		if a.Retry.Attempts < 1 {
			fail(a.Retry.Line, p+".retry.attempts", "must be at least 1")
		}
		if a.Retry.Initial <= 0 {
			fail(a.Retry.Line, p+".retry.initial", "must be a positive duration")
		}
		if a.Retry.Max < a.Retry.Initial {
			fail(a.Retry.Line, p+".retry.max", "must be at least retry.initial")
		} else if a.Retry.Attempts >= 1 && a.Retry.Initial > 0 {
			a.Retry.check(fail, a.Retry.Line, p+".retry", lim.ActionTimeout())
		}
	}
	if w := a.Webhook; w != nil {
		wp := p + ".webhook"
		if w.URL == "" {
			fail(w.Line, wp+".url", "required")
		} else if u, err := url.Parse(strings.ReplaceAll(w.URL, "${", "x")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail(w.Line, wp+".url", "%q must be an absolute http or https URL", w.URL)
		}
		n := 0
		for _, set := range []bool{w.Secret != "", w.SecretEnv != "", len(w.Secrets) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			fail(w.Line, wp+".secret", "set exactly one of secret, secret_env or secrets: every webhook is signed")
		}
		for i, s := range append([]string{w.Secret}, w.Secrets...) {
			if s == "" {
				continue
			}
			if _, err := webhook.ParseSecret(s); err != nil {
				f := wp + ".secret"
				if i > 0 {
					f = fmt.Sprintf("%s.secrets[%d]", wp, i-1)
				}
				fail(w.Line, f, "must be \"whsec_\" followed by base64 (generate one with: openssl rand -base64 32)")
			}
		}
		switch w.Format {
		case "", "json", "multipart", "raw":
		default:
			fail(w.Line, wp+".format", "%q: supported formats are json, multipart and raw", w.Format)
		}
		switch w.Attachments {
		case "", "links", "inline", "metadata":
		default:
			fail(w.Line, wp+".attachments", "%q: use links, inline or metadata", w.Attachments)
		}
		if w.LinkTTL < 0 || time.Duration(w.LinkTTL) > 7*24*time.Hour {
			fail(w.Line, wp+".link_ttl", "must be between 1s and 168h (the longest an S3 presigned link lives)")
		}
		if w.Timeout < 0 {
			fail(w.Line, wp+".timeout", "must be positive")
		}
		lim.checkTimeout(fail, w.Line, wp+".timeout", w.Timeout)
	}
	if f := a.Forward; f != nil {
		fp := p + ".forward"
		if lim.NoForward != "" {
			fail(f.Line, fp, "%s", lim.NoForward)
		}
		if f.ARCSeal && lim.NoARC != "" {
			fail(f.Line, fp+".arc_seal", "%s", lim.NoARC)
		}
		lim.checkTimeout(fail, f.Line, fp+".timeout", f.Timeout)
		if len(f.To) == 0 {
			fail(f.Line, fp+".to", "required: at least one address")
		}
		for i, to := range f.To {
			local, domain, ok := strings.Cut(to, "@")
			if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.ContainsAny(to, " \t\r\n<>") {
				fail(f.Line, fmt.Sprintf("%s.to[%d]", fp, i), "%q is not an address", to)
			}
		}
		tlsOff := f.StartTLS != nil && !*f.StartTLS
		if f.Smarthost != "" {
			host, port, err := net.SplitHostPort(f.Smarthost)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				fail(f.Line, fp+".smarthost", "%q must be HOST:PORT (e.g. email-smtp.eu-west-1.amazonaws.com:587)", f.Smarthost)
			} else if port == "465" {
				tlsOff = false // implicit TLS (RFC 8314)
			}
		}
		switch {
		case (f.Username != "" || f.PasswordEnv != "") && f.Smarthost == "":
			fail(f.Line, fp+".username", "credentials are only sent to a smarthost")
		case f.Username != "" && f.PasswordEnv == "":
			fail(f.Line, fp+".password_env", "required with username: the environment variable holding the password")
		case f.PasswordEnv != "" && f.Username == "":
			fail(f.Line, fp+".username", "required with password_env")
		case f.Username != "" && tlsOff:
			fail(f.Line, fp+".starttls", "credentials are only sent over TLS: remove starttls: false, or use port 465")
		}
		if f.Timeout < 0 {
			fail(f.Line, fp+".timeout", "must be positive")
		}
	}
}
