// Package mailauth checks who sent a message and reports the verdicts as
// message.Auth and as an Authentication-Results header value (RFC 8601):
//
//   - SPF (RFC 7208) from the envelope's client IP, for the MAIL FROM and
//     the HELO identities, evaluated here (spf.go); CheckSPF checks one
//     identity on its own, for the SMTP gateway's check at MAIL FROM, so
//     that the project has one SPF evaluator;
//   - DKIM (RFC 6376, RFC 8301, RFC 8463) for every signature, with
//     github.com/emersion/go-msgauth/dkim;
//   - DMARC (RFC 9989, DMARCbis, which obsoletes RFC 7489): the policy record
//     and the organizational domain found by the DNS Tree Walk (§4.10), and
//     identifier alignment (relaxed or strict) computed here from the SPF
//     and DKIM results. The From domain is not read here: the caller
//     passes its own reading of the From field (From), so that DMARC and
//     what the caller shows of the message cannot disagree;
//   - ARC (RFC 8617) chain validation, implemented here: go-msgauth keeps its
//     canonicalization and key-record code unexported, so this package
//     canonicalizes with internal/dkimcanon (RFC 6376 §3.4) and reads key
//     records itself (§3.6.1).
//
// All DNS queries go to one resolver, the system's or a configured
// host:port, each bounded by a timeout. A DNS failure gives temperror for
// the check concerned, never an error or a crash. Check reads the message
// once, as a stream: memory stays bounded by the header size.
package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/letterboxmail/letterbox/internal/dkimcanon"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/message"
)

// Result values (RFC 8601 §2.7).
const (
	None      = "none"
	Pass      = "pass"
	Fail      = "fail"
	SoftFail  = "softfail"
	Neutral   = "neutral"
	TempError = "temperror"
	PermError = "permerror"
)

// Defaults.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxSignatures = 10
)

// Config configures a Checker.
type Config struct {
	// Resolver is the DNS server, "host:port", or "" for the system's.
	Resolver string
	// Timeout bounds each DNS query. Zero means DefaultTimeout.
	Timeout time.Duration
	// AuthServID names this host in Authentication-Results (RFC 8601 §2.5).
	// Empty means the host name.
	AuthServID string
	// MaxSignatures bounds the DKIM signatures verified per message; zero
	// means DefaultMaxSignatures.
	MaxSignatures int
	// Logger receives debugging details; nil means slog.Default().
	Logger *slog.Logger
}

// Checker runs the checks. It is safe for concurrent use.
type Checker struct {
	cfg Config
	res *resolver
	log *slog.Logger
}

// New returns a Checker. The only error is an invalid Resolver address.
func New(cfg Config) (*Checker, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = DefaultMaxSignatures
	}
	if cfg.AuthServID == "" {
		cfg.AuthServID, _ = os.Hostname()
		if cfg.AuthServID == "" {
			cfg.AuthServID = "letterbox"
		}
	}
	res, err := newResolver(cfg.Resolver, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Checker{cfg: cfg, res: res, log: log}, nil
}

// Check authenticates one raw message with its envelope, which may be nil
// (then SPF is none and DMARC relies on DKIM alone). It reads r to EOF. The
// only error is a failure to read r; DNS failures are temperror results.
//
// from gives the message's From identity for DMARC. Check does not read
// the From field itself: it calls from once, after reading r to EOF, so a
// caller that parses the same stream (package parser) has read the header
// by then and hands over its own reading. A nil from leaves DMARC
// unchecked (Auth.DMARC nil).
func (c *Checker) Check(ctx context.Context, env *message.Envelope, r io.Reader, from func() From) (*message.Auth, error) {
	auth := &message.Auth{DKIM: []message.DKIMResult{}}
	ctx, span := tracer.Start(ctx, "mailauth.check")
	defer span.End()

	// SPF needs only the envelope: run it while the message streams in.
	var (
		spfWG           sync.WaitGroup
		spfRes, spfHelo message.SPFResult
	)
	spfWG.Add(1)
	go func() {
		defer spfWG.Done()
		spfRes, spfHelo = c.spf(ctx, env)
	}()
	defer spfWG.Wait()

	br := bufio.NewReaderSize(r, 32<<10)
	// A header larger than dkimcanon.MaxHeader is verified as far as it
	// was read.
	rawHeader, fields, err := dkimcanon.ReadHeaderCRLF(br, dkimcanon.MaxHeader)
	if err != nil && !errors.Is(err, dkimcanon.ErrHeaderTooLarge) {
		io.Copy(io.Discard, br)
		return nil, fault.Temporary(fmt.Errorf("mailauth: read message: %w", err))
	}

	arc := c.prepareARC(fields)
	var body io.Reader = br
	if arc.bodyHash != nil {
		body = io.TeeReader(br, arc.bodyHash)
	}
	counting := &readErr{r: body}
	dkims := c.dkim(ctx, rawHeader, fields, counting)
	io.Copy(io.Discard, counting)
	if counting.err != nil {
		return nil, fault.Temporary(fmt.Errorf("mailauth: read message: %w", counting.err))
	}
	if arc.bodyHash != nil {
		arc.bodyHash.Close()
	}
	auth.DKIM = dkims
	auth.ARC = c.verifyARC(ctx, fields, arc)

	spfWG.Wait()
	auth.SPF = &spfRes
	if env != nil && env.ClientIP != "" && env.HELO != "" {
		auth.SPFHelo = &spfHelo
	}
	var f From
	if from != nil {
		f = from()
		auth.DMARC = c.dmarc(ctx, f, env, spfRes, dkims)
	}
	auth.AuthenticationResults = c.authResults(env, auth, f.Domain)
	return auth, nil
}

// readErr remembers a read error other than EOF.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// dkim verifies every DKIM-Signature with go-msgauth. Results are in
// header order.
func (c *Checker) dkim(ctx context.Context, rawHeader []byte, fields []dkimcanon.Field, body io.Reader) []message.DKIMResult {
	var sigs []map[string]string
	for _, f := range fields {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			tags, _ := parseTags(f.Value())
			sigs = append(sigs, tags)
		}
	}
	out := []message.DKIMResult{}
	if len(sigs) == 0 {
		return out
	}
	opts := &dkim.VerifyOptions{
		LookupTXT:        c.res.lookupTXTFunc(ctx),
		MaxVerifications: c.cfg.MaxSignatures,
	}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(rawHeader), body), opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		c.log.Debug("mailauth: dkim", "err", err)
		for _, s := range sigs {
			out = append(out, message.DKIMResult{Result: TempError, Domain: s["d"], Selector: s["s"], Reason: err.Error()})
		}
		return out
	}
	for i, v := range verifs {
		r := message.DKIMResult{Domain: v.Domain}
		if i < len(sigs) {
			r.Selector = sigs[i]["s"]
			if r.Domain == "" {
				r.Domain = sigs[i]["d"]
			}
		}
		switch {
		case v.Err == nil:
			r.Result = Pass
		case dkim.IsTempFail(v.Err):
			r.Result, r.Reason = TempError, cleanReason(v.Err.Error())
		case dkim.IsPermFail(v.Err):
			r.Result, r.Reason = PermError, v.Err.Error()
		default:
			r.Result, r.Reason = Fail, v.Err.Error()
		}
		out = append(out, r)
	}
	for i := len(verifs); i < len(sigs); i++ {
		out = append(out, message.DKIMResult{Result: None, Domain: sigs[i]["d"], Selector: sigs[i]["s"],
			Reason: fmt.Sprintf("not verified: more than %d signatures", c.cfg.MaxSignatures)})
	}
	return out
}

// parseTags parses a tag-list (RFC 6376 §3.2). Values have their white
// space removed.
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	var err error
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			if k != "" {
				err = fmt.Errorf("malformed tag %q", k)
			}
			continue
		}
		if _, dup := tags[k]; dup {
			err = fmt.Errorf("duplicate tag %q", k)
			continue
		}
		tags[k] = stripSpace(v)
	}
	return tags, err
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// spf evaluates RFC 7208 check_host for MAIL FROM (or HELO when MAIL FROM
// is null, §2.4) and for HELO (§2.3).
func (c *Checker) spf(ctx context.Context, env *message.Envelope) (mailFrom, helo message.SPFResult) {
	if env == nil || env.ClientIP == "" {
		r := message.SPFResult{Result: None, Reason: "no envelope"}
		return r, r
	}
	return c.checkSPF(ctx, env)
}
