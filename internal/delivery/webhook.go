package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/attribute"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// Result is what one attempt at an action produced.
type Result struct {
	// Err is nil on success; otherwise fault.IsTemporary says retry.
	Err error
	// Status is the peer's status code, if one was received.
	Status int
	// RetryAfter is the peer's requested wait, if any.
	RetryAfter time.Duration
	// Response is the start of the peer's answer (ResponseExcerpt), kept
	// in the attempt's record.
	Response string
}

// ResponseExcerptBytes is how much of a receiver's response body an
// attempt's record keeps: enough for an error message, not a document.
const ResponseExcerptBytes = 512

// ResponseExcerpt reads up to ResponseExcerptBytes of a response body and
// returns them as one printable string: invalid UTF-8 and control
// characters other than newline and tab become U+FFFD.
func ResponseExcerpt(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, ResponseExcerptBytes))
	return strings.Map(func(c rune) rune {
		if c == '\n' || c == '\t' || !unicode.IsControl(c) {
			return c
		}
		return unicode.ReplacementChar
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
}

// DefaultWebhookTimeout bounds one webhook attempt whose action sets no
// timeout. An action's timeout is the whole attempt's deadline (connection,
// request and response headers), up to routing.Limits.ActionTimeout.
const DefaultWebhookTimeout = 30 * time.Second

// Webhooks posts signed webhook requests.
type Webhooks struct {
	// Store holds raw messages and attachments, for the raw and multipart
	// formats and for attachment links or inline content.
	Store store.Store
	// Links makes time-limited attachment links (S3 presigned URLs; the
	// dev server's signed links); nil sends attachment metadata only.
	Links store.Presigner

	guarded, open *http.Client
	// Getenv resolves secret_env: the caller's environment (the entry
	// point passes it to NewWebhooks); nil resolves nothing.
	Getenv func(string) string
	// UserAgent is sent with every request.
	UserAgent string
}

// NewWebhooks returns a webhook sender whose connections obey policy,
// except for actions that set allow_private_network.
func NewWebhooks(policy egress.Policy, getenv func(string) string) *Webhooks {
	client := func(p egress.Policy) *http.Client {
		return &http.Client{
			Transport: &http.Transport{
				DialContext:         p.DialContext,
				ForceAttemptHTTP2:   true,
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 10 * time.Second,
				// No ResponseHeaderTimeout: the attempt's context
				// carries its deadline, the action's timeout.
			},
			// Redirects are not followed: a 3xx is a failure to fix, and
			// following it would bypass the receiver's signature check
			// and the egress policy's intent.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &Webhooks{guarded: client(policy), open: client(egress.Policy{AllowPrivate: true}), Getenv: getenv, UserAgent: "letterbox-webhook/1"}
}

// Secrets resolves a webhook action's signing secrets.
func (w *Webhooks) Secrets(a *routing.WebhookAction) ([]webhook.Secret, error) {
	var raw []string
	switch {
	case a.Secret != "":
		raw = []string{a.Secret}
	case len(a.Secrets) > 0:
		raw = a.Secrets
	case a.SecretEnv != "":
		v := w.Getenv(a.SecretEnv)
		if v == "" {
			return nil, fault.Permanentf("webhook secret: environment variable %s is empty", a.SecretEnv)
		}
		raw = strings.Split(v, ",")
	}
	out := make([]webhook.Secret, 0, len(raw))
	for _, s := range raw {
		k, err := webhook.ParseSecret(s)
		if err != nil {
			return nil, fault.Permanent(err)
		}
		out = append(out, k)
	}
	return out, nil
}

// Body returns the webhook v1 body of a job: stable across attempts.
func Body(j *Job, m *message.Message) ([]byte, error) {
	return json.Marshal(webhook.Event{Type: webhook.TypeMessageReceived, Timestamp: j.CreatedAt.UTC(), Data: m})
}

// Post delivers one webhook attempt.
func (w *Webhooks) Post(ctx context.Context, j *Job, m *message.Message, a *routing.WebhookAction, captures func(string) string) Result {
	secrets, err := w.Secrets(a)
	if err != nil {
		return Result{Err: err}
	}
	p, err := w.payload(ctx, j, m, a)
	if err != nil {
		return Result{Err: err}
	}
	now := time.Now()
	sig, size, err := p.sign(ctx, webhook.NewSigner(secrets, j.ID, now))
	if err != nil {
		return Result{Err: fmt.Errorf("webhook body: %w", err)}
	}
	timeout := time.Duration(a.Timeout)
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := p.reader(ctx)
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, captures(a.URL), body)
	if err != nil {
		return Result{Err: fault.Permanentf("webhook url: %w", err)}
	}
	req.ContentLength = size
	for k, v := range a.Headers {
		req.Header.Set(k, captures(v))
	}
	req.Header.Set("Content-Type", p.contentType)
	req.Header.Set("User-Agent", w.UserAgent)
	req.Header.Set(webhook.HeaderID, j.ID)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	// The receiver's tracing continues the message's trace.
	telemetry.InjectHTTP(req)
	span := webhookSpan(ctx, req.URL.String())
	client := w.guarded
	if a.AllowLocal {
		client = w.open
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrForbidden) {
			return Result{Err: fault.Permanent(err)}
		}
		if ctx.Err() != nil {
			return Result{Err: fault.Temporaryf("webhook: no response within %s", timeout)}
		}
		return Result{Err: fault.Temporary(fmt.Errorf("webhook: %w", err))}
	}
	defer resp.Body.Close()
	excerpt := ResponseExcerpt(resp.Body)
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	res := Result{Status: resp.StatusCode, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), time.Now()), Response: excerpt}
	span.SetAttributes(attribute.Int(telemetry.AttrStatus, resp.StatusCode))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode == http.StatusNotAcceptable || resp.StatusCode == http.StatusGone:
		res.Err = fault.Permanentf("webhook: receiver answered %d %s: not retried", resp.StatusCode, http.StatusText(resp.StatusCode))
	default:
		res.Err = fault.Temporaryf("webhook: receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return res
}
