// Package forward runs the forward action: it re-sends a stored message
// over SMTP, byte for byte, to the action's addresses, through a smart host
// or by MX lookup, and implements delivery.Forwarder.
//
//   - The raw message is streamed from the store exactly as received (the
//     gateway's Received field included); only an ARC set may be put on top.
//   - The envelope sender is rewritten with SRS (see SRS) so that SPF passes
//     at the destination; the null sender (a bounce) stays null.
//   - With an ARCKey and an action that opts in (arc_seal), the message is
//     ARC-sealed (RFC 8617) with the authentication results found on
//     receipt, instance i = N+1 after any existing chain, so DMARC can
//     survive the forward at receivers that trust the sealer. Sealing is
//     opt-in because draft-ietf-dmarc-arc-to-historic (moving RFC 8617 to
//     Historic) recommends against new ARC sealing deployments; ARC
//     verification (internal/mailauth) stays on.
//   - SMTP (RFC 5321) with go-smtp's client: STARTTLS (RFC 3207), AUTH PLAIN
//     (RFC 4954, RFC 4616) only over TLS, implicit TLS on port 465
//     (RFC 8314), SIZE (RFC 1870), DSN RET=HDRS and ENVID (RFC 3461),
//     SMTPUTF8 (RFC 6531) when an address needs it. MX delivery follows
//     RFC 5321 §5.1: MX records by preference, the domain's own A/AAAA when
//     it has none, a null MX (RFC 7505) refused.
//   - Every connection goes through internal/egress (SSRF guard).
//   - Errors are classified for the delivery handler: 4xx replies,
//     timeouts, DNS and connection failures are temporary; 5xx replies are
//     permanent. Result.Status is the SMTP code.
//
// letterbox never generates bounces: a forward that fails permanently is
// dead-lettered and recorded (`letterbox deliveries ID`), never reported to
// the (possibly forged) original sender.
package forward

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/dkimcanon"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Defaults.
const (
	// DefaultTimeout bounds one attempt (all destinations together).
	DefaultTimeout = 5 * time.Minute
	// DefaultMemoryLimit: messages up to this size are read from the store
	// once per attempt and kept in memory; larger ones are streamed, and
	// read again for each further destination host.
	DefaultMemoryLimit = 4 << 20
	// maxReceived is the loop threshold (RFC 5321 §6.3: at least 100).
	maxReceived = 100
)

// NotesPrefix is where per-job progress notes are kept in the store:
// forward/<message id>/<job id>.json lists the recipients a job already
// delivered to, so that a retry or a redrive does not send to them again.
const NotesPrefix = "forward/"

// Config configures a Forwarder. The composition package
// (internal/pipeline, for the deliver function and `letterbox dev`) reads
// it from the environment; nothing here reads the environment.
type Config struct {
	Store store.Store
	// SRSDomain and SRSSecret configure SRS (required). SRSOldSecrets
	// still verify, for a rotation.
	SRSDomain     string
	SRSSecret     string
	SRSOldSecrets []string
	// ARC is the key that seals the forwards of actions with arc_seal;
	// nil refuses those actions permanently (the deliver function and
	// `letterbox dev` refuse such a routes file when it loads).
	ARC *ARCKey
	// Resolver is the DNS server for MX and address lookups, "host:port",
	// or "" for the system's.
	Resolver string
	// Policy guards every connection (SSRF); allow_private_network on an
	// action allows private addresses for it.
	Policy egress.Policy
	// HELO is the EHLO name; default SRSDomain.
	HELO string
	// Timeout bounds one attempt unless the action sets timeout; default
	// DefaultTimeout.
	Timeout time.Duration
	// MXPort is the port of MX delivery; 0 means 25. Tests change it.
	MXPort int
	// TLS is the base client TLS configuration (RootCAs…); nil means the
	// system's roots.
	TLS *tls.Config
	// Getenv resolves password_env: the caller's environment. nil
	// resolves nothing (a password_env then fails permanently).
	Getenv func(string) string
	// MemoryLimit: see DefaultMemoryLimit.
	MemoryLimit int64
	Logger      *slog.Logger
	// Now is the clock (SRS timestamps, ARC t=); nil means time.Now.
	Now func() time.Time
}

// Forwarder implements delivery.Forwarder. It is safe for concurrent use.
type Forwarder struct {
	cfg Config
	srs *SRS
	res *resolver
	log *slog.Logger
}

var _ delivery.Forwarder = (*Forwarder)(nil)

// New returns a Forwarder.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Store == nil {
		return nil, errors.New("forward: no store")
	}
	secrets := append([]string{cfg.SRSSecret}, cfg.SRSOldSecrets...)
	srs, err := NewSRS(cfg.SRSDomain, secrets...)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	if cfg.Now != nil {
		srs.Now = cfg.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MXPort == 0 {
		cfg.MXPort = 25
	}
	if cfg.HELO == "" {
		cfg.HELO = srs.Domain
	}
	if cfg.MemoryLimit <= 0 {
		cfg.MemoryLimit = DefaultMemoryLimit
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	res, err := newResolver(cfg.Resolver)
	if err != nil {
		return nil, err
	}
	return &Forwarder{cfg: cfg, srs: srs, res: res, log: cfg.Logger}, nil
}

// SRS returns the forwarder's SRS, to recognise bounces (Reverse).
func (f *Forwarder) SRS() *SRS { return f.srs }

// Forward runs one attempt of a forward action.
func (f *Forwarder) Forward(ctx context.Context, j *delivery.Job, m *message.Message, a *routing.ForwardAction, expand func(string) string) delivery.Result {
	timeout := time.Duration(a.Timeout)
	if timeout <= 0 {
		timeout = f.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f.forward(ctx, j, m, a, expand)
}

func (f *Forwarder) forward(ctx context.Context, j *delivery.Job, m *message.Message, a *routing.ForwardAction, expand func(string) string) delivery.Result {
	// Recipients, after ${capture} expansion, without duplicates.
	var rcpts []string
	seen := map[string]bool{}
	for _, to := range a.To {
		addr := strings.TrimSpace(expand(to))
		local, domain, ok := splitAddr(addr)
		if !ok || strings.ContainsAny(addr, " \t\r\n<>") || strings.ContainsAny(domain, "@[]") || local == "" {
			return delivery.Result{Err: fault.Permanentf("forward: %q is not an address", addr)}
		}
		if !seen[strings.ToLower(addr)] {
			seen[strings.ToLower(addr)] = true
			rcpts = append(rcpts, addr)
		}
	}
	if len(rcpts) == 0 {
		return delivery.Result{Err: fault.Permanentf("forward: no recipients")}
	}
	if a.ARCSeal && f.cfg.ARC == nil {
		return delivery.Result{Err: fault.Permanentf("forward: arc_seal is set but no ARC key is configured (LETTERBOX_ARC_KEY)")}
	}
	// With several recipients, a previous attempt may have delivered to
	// some: its note is read while the message is.
	var (
		noteWG sync.WaitGroup
		done   note
		errN   error
	)
	multi := len(rcpts) > 1
	if multi {
		noteWG.Add(1)
		go func() {
			defer noteWG.Done()
			done, errN = f.readNote(ctx, j)
		}()
	}
	p, err := f.open(ctx, m, j.ID, a.ARCSeal)
	noteWG.Wait()
	if err != nil {
		return delivery.Result{Err: err}
	}
	defer p.close()
	if errN != nil {
		return delivery.Result{Err: fmt.Errorf("forward: read progress note: %w", errN)}
	}
	if len(done.Delivered) > 0 {
		rcpts = slices.DeleteFunc(rcpts, func(r string) bool { return done.has(r) })
		if len(rcpts) == 0 {
			return delivery.Result{Status: 250}
		}
	}

	from := strings.Trim(m.Envelope.MailFrom, "<>")
	if from == "" && m.Envelope.ClientIP == "" {
		// No envelope (SES ingress): the Return-Path SES put on top,
		// else the From address. A null sender would make the forward
		// look like a bounce.
		from = p.returnPath
	}
	sender, err := f.srs.Forward(from)
	if err != nil {
		return delivery.Result{Err: fault.Permanentf("forward: envelope sender: %w", err)}
	}
	envID := j.ID
	if len(envID) > 100 {
		envID = envID[:100] // RFC 3461 §4.4
	}
	opts := sendOptions{
		sender: sender,
		utf8:   (m.Envelope.SMTPUTF8 && p.header8bit) || !isASCII(sender),
		envID:  envID,
	}
	for _, r := range rcpts {
		opts.utf8 = opts.utf8 || !isASCII(r)
	}
	var outcomes []outcome
	for _, g := range f.groups(a, rcpts) {
		outcomes = append(outcomes, f.deliver(ctx, a, g, p, opts)...)
	}
	res := summarize(outcomes, done)
	// The note is kept up to date once it exists, so that even a
	// duplicate run of a finished job sends nothing again.
	if newly := delivered(outcomes); multi && len(newly) > 0 && (res.Err != nil || len(done.Delivered) > 0) {
		done.add(newly, f.cfg.Now())
		// Written even when the attempt ran out of time.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := f.writeNote(wctx, j, done); err != nil {
			f.log.WarnContext(ctx, "forward: cannot write progress note; a retry may send again to delivered recipients",
				"message_id", j.MessageID, "job_id", j.ID, "err", err)
		}
	}
	return res
}

// payload is the message to send: the ARC set to put on top, then the raw
// bytes, from memory or from the store.
type payload struct {
	st     store.Store
	key    string
	size   int64
	prefix []byte
	mem    []byte // the whole raw message, when small
	// header8bit: the header has non-ASCII bytes (SMTPUTF8 matters).
	header8bit bool
	// returnPath is the Return-Path field's address, else the From
	// field's, for messages stored without an envelope.
	returnPath string
	rest       io.ReadCloser // the first read's unread remainder, when large
	head       []byte        // what was read of it already
}

// open reads the message's header (and, for sealing, its body) and, when
// arcSeal, prepares the ARC set.
func (f *Forwarder) open(ctx context.Context, m *message.Message, jobID string, arcSeal bool) (*payload, error) {
	if m.RawKey == "" {
		return nil, fault.Permanentf("forward: message %s has no raw key", m.ID)
	}
	rc, obj, err := f.cfg.Store.Get(ctx, m.RawKey)
	if err != nil {
		if store.IsNotFound(err) {
			return nil, fault.Permanentf("forward: raw message %s is not in the store", m.RawKey)
		}
		return nil, fmt.Errorf("forward: read %s: %w", m.RawKey, err)
	}
	p := &payload{st: f.cfg.Store, key: m.RawKey, size: obj.Size}
	br := bufio.NewReaderSize(rc, 32<<10)
	var src io.Reader = br
	if obj.Size >= 0 && obj.Size <= f.cfg.MemoryLimit {
		b, err := io.ReadAll(io.LimitReader(rc, f.cfg.MemoryLimit+1))
		rc.Close()
		if err != nil {
			return nil, fault.Temporaryf("forward: read %s: %w", m.RawKey, err)
		}
		if int64(len(b)) != obj.Size {
			return nil, fault.Temporaryf("forward: read %s: %d bytes, the store said %d", m.RawKey, len(b), obj.Size)
		}
		p.mem, p.size = b, int64(len(b))
		br = bufio.NewReader(bytes.NewReader(b))
		src = br
	}
	head, fields, herr := dkimcanon.ReadHeader(br, dkimcanon.MaxHeader)
	if herr != nil && !errors.Is(herr, dkimcanon.ErrHeaderTooLarge) {
		p.closeRC(rc)
		return nil, fault.Temporaryf("forward: read %s: %w", m.RawKey, herr)
	}
	p.header8bit = !isASCII(string(head))
	p.returnPath = headerSender(fields)
	received := 0
	for _, fl := range fields {
		if strings.EqualFold(fl.Name, "Received") {
			received++
		}
	}
	if received > maxReceived {
		p.closeRC(rc)
		return nil, fault.Permanentf("forward: mail loop: the message has %d Received fields (limit %d)", received, maxReceived)
	}
	seal := arcSeal && f.cfg.ARC != nil && herr == nil
	var cv string
	if seal {
		cv, seal = f.chainStatus(m, fields)
	}
	if !seal {
		if p.mem == nil {
			p.head, p.rest = head, readCloser{br, rc}
		}
		return p, nil
	}
	// Sealing needs the body hash before the first byte goes out.
	body := dkimcanon.NewBodyHasher(sha256.New(), dkimcanon.Relaxed, dkimcanon.CRAsSent)
	if _, err := io.Copy(body, src); err != nil {
		p.closeRC(rc)
		return nil, fault.Temporaryf("forward: read %s: %w", m.RawKey, err)
	}
	if p.mem == nil {
		rc.Close()
	}
	authRes := ""
	if m.Auth != nil {
		authRes = m.Auth.AuthenticationResults
	}
	if strings.TrimSpace(authRes) == "" {
		authRes = f.cfg.HELO + "; none"
	}
	set, err := f.cfg.ARC.seal(sealInput{
		fields: fields, bodyHash: body.Sum(), chain: collectChain(fields), cv: cv,
		authResults: authRes, now: f.cfg.Now(),
	})
	if err != nil {
		f.log.WarnContext(ctx, "forward: not ARC-sealing", "message_id", m.ID, "job_id", jobID, "err", err)
	} else {
		p.prefix = set
	}
	return p, nil
}

func (p *payload) closeRC(rc io.ReadCloser) {
	if p.mem == nil {
		rc.Close()
	}
}

// chainStatus decides the new seal's cv= (RFC 8617 §5.1.1) from the
// verdict found on receipt, and whether to seal at all: not when the
// newest seal already says fail, nor when the chain's state is unknown.
func (f *Forwarder) chainStatus(m *message.Message, fields []dkimcanon.Field) (string, bool) {
	chain := collectChain(fields)
	n := len(chain.sets)
	if n == 0 && chain.err == nil {
		return "none", true
	}
	if chain.topCV == "fail" || n >= 50 {
		return "", false
	}
	if m.Auth == nil || m.Auth.ARC == nil {
		return "", false
	}
	switch m.Auth.ARC.Result {
	case "pass":
		if chain.err != nil || m.Auth.ARC.Instances != n {
			return "", false
		}
		return "pass", true
	case "fail":
		return "fail", true
	}
	return "", false // temperror and the like: unknown
}

// reader returns the bytes to send to one destination, and their size.
// The caller closes the reader.
func (p *payload) reader(ctx context.Context) (io.ReadCloser, int64, error) {
	total := int64(len(p.prefix)) + p.size
	switch {
	case p.mem != nil:
		return io.NopCloser(io.MultiReader(bytes.NewReader(p.prefix), bytes.NewReader(p.mem))), total, nil
	case p.rest != nil:
		rest := p.rest
		r := readCloser{io.MultiReader(bytes.NewReader(p.prefix), bytes.NewReader(p.head), rest), rest}
		p.head, p.rest = nil, nil
		return r, total, nil
	}
	rc, obj, err := p.st.Get(ctx, p.key)
	if err != nil {
		return nil, 0, fmt.Errorf("forward: read %s: %w", p.key, err)
	}
	if obj.Size != p.size {
		rc.Close()
		return nil, 0, fault.Temporaryf("forward: %s changed size between reads (%d, then %d bytes)", p.key, p.size, obj.Size)
	}
	return readCloser{io.MultiReader(bytes.NewReader(p.prefix), rc), rc}, total, nil
}

func (p *payload) close() {
	if p.rest != nil {
		p.rest.Close()
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// headerSender returns the first Return-Path address, or the From
// address, of a header.
func headerSender(fields []dkimcanon.Field) string {
	var from string
	for _, fl := range fields {
		v := fl.Value()
		switch {
		case strings.EqualFold(fl.Name, "Return-Path"):
			v = strings.TrimSpace(oneLine(v))
			if a, err := mail.ParseAddress(v); err == nil {
				return a.Address
			}
			return strings.Trim(v, "<> \t")
		case from == "" && strings.EqualFold(fl.Name, "From"):
			if a, err := mail.ParseAddress(strings.TrimSpace(oneLine(v))); err == nil {
				from = a.Address
			}
		}
	}
	return from
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
