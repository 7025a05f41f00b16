package store

import (
	"context"
	"fmt"
	"io"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/message"
)

// MetaVerdictsKey names, on a raw or quarantined object, the object
// holding the gateway's scan verdicts (verdicts/<id>.json). The gateway
// writes that object before the raw object commits, so a reader that sees
// the message sees its verdicts.
const MetaVerdictsKey = "letterbox-verdicts-key"

// Dispositions: what the gateway did with a scanned message.
const (
	DispositionAccept     = "accept"     // stored under raw/ and routed
	DispositionQuarantine = "quarantine" // accepted (250), copied to quarantine/, not routed
	DispositionReject     = "reject"     // refused (5xx) after its bytes were stored; copied to quarantine/
)

// Verdicts is what the scanners said about a message during the SMTP
// session and what the gateway decided.
type Verdicts struct {
	Spam  *message.Spam  `json:"spam,omitempty"`
	Virus *message.Virus `json:"virus,omitempty"`
	// Disposition is DispositionAccept, DispositionQuarantine or
	// DispositionReject.
	Disposition string `json:"disposition"`
	// Rule names the policy rule that decided a quarantine or a reject,
	// e.g. "policy.spam.reject_at".
	Rule string `json:"rule,omitempty"`
	// Code is the SMTP reply the client got, e.g. "550 5.7.1".
	Code string `json:"code,omitempty"`
}

// PutRawScanned is PutRaw for a scanned message: the raw object's metadata
// points to VerdictsKey(id), which the caller must write (PutJSON) before
// body returns io.EOF.
func PutRawScanned(ctx context.Context, s Store, id string, env message.Envelope, body io.Reader) (Object, error) {
	return putRaw(ctx, s, id, env, body, map[string]string{MetaVerdictsKey: VerdictsKey(id)})
}

// ReadVerdicts returns the verdicts of a raw or quarantined object, and nil
// when it has none (no scanner looked at it).
func ReadVerdicts(ctx context.Context, s Store, obj Object) (*Verdicts, error) {
	key := obj.Meta[MetaVerdictsKey]
	if key == "" {
		return nil, nil
	}
	var v Verdicts
	if err := GetJSON(ctx, s, key, &v); err != nil {
		if IsNotFound(err) {
			return nil, fault.Permanentf("verdicts of %s: %s is missing", obj.Key, key)
		}
		return nil, fmt.Errorf("verdicts of %s: %w", obj.Key, err)
	}
	return &v, nil
}

// CopyToQuarantine copies a raw message with its metadata (envelope and
// verdicts) to QuarantineKey(id). The raw object stays until the raw/
// lifecycle rule expires it (nothing in letterbox deletes); its verdicts,
// or the route that quarantined it, keep it out of routing. Copying again
// overwrites the copy with the same bytes.
func CopyToQuarantine(ctx context.Context, s Store, id string) error {
	rc, obj, err := s.Get(ctx, RawKey(id))
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	defer rc.Close()
	if _, err := s.Put(ctx, QuarantineKey(id), rc, obj.Meta); err != nil {
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	return nil
}
