// Package webhook is for receivers of letterbox webhooks: it verifies a
// request's signature and decodes its payload into typed structs.
//
// Requests follow the Standard Webhooks specification
// (https://www.standardwebhooks.com): the headers webhook-id,
// webhook-timestamp and webhook-signature, where the signature is
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)) and
// key is the base64-decoded part of a "whsec_" secret. During a secret
// rotation a request carries several space-separated signatures; any one
// valid signature is enough.
//
// The body is an Event whose data is a message.Message (JSON v1). Receivers
// must ignore fields they do not know: versions add fields, never rename.
// webhook-id is stable for one message, route and action across every retry,
// so receivers can de-duplicate on it.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/message"
)

// Header names (Standard Webhooks).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// TypeMessageReceived is the event type of a received message.
const TypeMessageReceived = "message.received"

// Event is the JSON body of a webhook request, version 1.
type Event struct {
	Type      string           `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      *message.Message `json:"data"`
	// Truncated is set when the event had to fit a size limit (the lambda,
	// sqs, sns and eventbridge actions): data then lacks headers, text,
	// html, stripped_text and parts, and keeps the rest (id, envelope,
	// addresses, subject, attachment metadata, auth, raw_key, size). Fetch
	// the full message from the store by data.id or data.raw_key. Webhook
	// requests are never truncated.
	Truncated bool `json:"truncated,omitempty"`
}

// Tolerance is how far a request's timestamp may be from the receiver's
// clock before Verify refuses it, to limit replay.
const Tolerance = 5 * time.Minute

// Errors returned by Verify.
var (
	ErrMissingHeaders   = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp = errors.New("webhook: timestamp is malformed or outside the tolerance")
	ErrNoMatch          = errors.New("webhook: no signature matches")
	ErrInvalidSecret    = errors.New(`webhook: secret must be "whsec_" followed by base64`)
)

// Secret is a signing key.
type Secret []byte

// ParseSecret decodes a "whsec_<base64>" secret. A secret without the prefix
// is accepted as base64, as other Standard Webhooks libraries do.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "whsec_")
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) == 0 {
		return nil, ErrInvalidSecret
	}
	return Secret(key), nil
}

// String returns the secret in "whsec_" form.
func (k Secret) String() string { return "whsec_" + base64.StdEncoding.EncodeToString(k) }

// Sign returns the signature of one request: "v1,<base64>".
func (k Secret) Sign(id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, k)
	fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignatureHeader signs with every secret, for the webhook-signature header
// during a rotation.
func SignatureHeader(secrets []Secret, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(secrets))
	for i, k := range secrets {
		sigs[i] = k.Sign(id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// Signer computes the webhook-signature header of a body written to it, for
// bodies too large to hold in memory: write the body, then call Header.
type Signer struct {
	macs []hash.Hash
	n    int64
}

// NewSigner starts signatures for one request with every secret.
func NewSigner(secrets []Secret, id string, ts time.Time) *Signer {
	s := &Signer{}
	for _, k := range secrets {
		mac := hmac.New(sha256.New, k)
		fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
		s.macs = append(s.macs, mac)
	}
	return s
}

// Write adds body bytes.
func (s *Signer) Write(p []byte) (int, error) {
	for _, m := range s.macs {
		m.Write(p)
	}
	s.n += int64(len(p))
	return len(p), nil
}

// Len returns the number of body bytes written.
func (s *Signer) Len() int64 { return s.n }

// Header returns the webhook-signature value: one "v1," signature per
// secret, space-separated.
func (s *Signer) Header() string {
	sigs := make([]string, len(s.macs))
	for i, m := range s.macs {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	return strings.Join(sigs, " ")
}

// Verifier checks signatures against one or more secrets.
type Verifier struct {
	Secrets []Secret
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// NewVerifier parses secrets in "whsec_" form.
func NewVerifier(secrets ...string) (*Verifier, error) {
	v := &Verifier{}
	for _, s := range secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, err
		}
		v.Secrets = append(v.Secrets, k)
	}
	return v, nil
}

// Verify checks the headers against the body.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	ts := time.Unix(sec, 0)
	if d := now().Sub(ts); d > Tolerance || d < -Tolerance {
		return ErrInvalidTimestamp
	}
	for _, k := range v.Secrets {
		want := k.Sign(id, ts, body)
		for _, got := range strings.Fields(sigs) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

// MaxBodyBytes bounds how much of a request ReadEvent reads.
const MaxBodyBytes = 64 << 20

// ReadEvent reads, verifies and decodes a webhook request. It returns the
// request's webhook-id with the event, for de-duplication.
func (v *Verifier) ReadEvent(r *http.Request) (string, *Event, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes))
	if err != nil {
		return "", nil, fmt.Errorf("webhook: read body: %w", err)
	}
	if err := v.Verify(r.Header, body); err != nil {
		return "", nil, err
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return "", nil, fmt.Errorf("webhook: decode body: %w", err)
	}
	return r.Header.Get(HeaderID), &ev, nil
}
