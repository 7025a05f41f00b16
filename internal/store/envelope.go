package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
)

// Metadata keys on raw objects.
const (
	// MetaEnvelope holds the envelope as base64url(JSON) when it fits.
	MetaEnvelope = "letterbox-envelope"
	// MetaEnvelopeKey names the envelope object when it does not.
	MetaEnvelopeKey = "letterbox-envelope-key"
	// MetaTraceparent is the W3C traceparent of the write (55 bytes),
	// when the writer traces: ingest continues the message's trace from it.
	MetaTraceparent = telemetry.HeaderTraceparent
)

// maxInlineEnvelope keeps the metadata under S3's 2 KiB limit for all
// user-defined metadata, with room for the key names: with the envelope
// (18 + 1800 bytes) and the traceparent (11 + 55), 1884 of 2048 bytes.
const maxInlineEnvelope = 1800

// MaxRawMeta is S3's limit on an object's user-defined metadata, keys and
// values together (2 KiB); PutRaw's metadata stays under it.
const MaxRawMeta = 2048

var tracer = otel.Tracer("github.com/letterboxmail/letterbox/internal/store")

// PutRaw stores a raw message under RawKey(id) with its envelope, in one
// atomic step when the envelope fits in metadata (the common case: one
// write per message). A larger envelope (many recipients) is written first
// as its own object, and the raw object, written last, points to it; either
// way the raw object is the commit point.
func PutRaw(ctx context.Context, s Store, id string, env message.Envelope, body io.Reader) (Object, error) {
	return putRaw(ctx, s, id, env, body, nil)
}

func putRaw(ctx context.Context, s Store, id string, env message.Envelope, body io.Reader, meta map[string]string) (obj Object, err error) {
	if telemetry.On() {
		var span trace.Span
		ctx, span = tracer.Start(ctx, "store.put_raw", trace.WithAttributes(telemetry.MessageID(id), attribute.String(telemetry.AttrKey, RawKey(id))))
		defer func() { telemetry.Fail(span, err); span.End() }()
	}
	js, err := json.Marshal(env)
	if err != nil {
		return Object{}, fault.Permanent(err)
	}
	if meta == nil {
		meta = map[string]string{}
	}
	if enc := base64.RawURLEncoding.EncodeToString(js); len(enc) <= maxInlineEnvelope {
		meta[MetaEnvelope] = enc
	} else {
		ek := EnvelopeKey(id)
		if _, err := s.Put(ctx, ek, bytes.NewReader(js), nil); err != nil {
			return Object{}, fmt.Errorf("store envelope: %w", err)
		}
		meta[MetaEnvelopeKey] = ek
	}
	telemetry.InjectMap(ctx, meta)
	return s.Put(ctx, RawKey(id), body, meta)
}

// Envelope returns the envelope of a raw object, and nil when it has none
// (objects written by other ingress paths, such as SES receipt rules).
func Envelope(ctx context.Context, s Store, raw Object) (*message.Envelope, error) {
	var js []byte
	switch {
	case raw.Meta[MetaEnvelope] != "":
		b, err := base64.RawURLEncoding.DecodeString(raw.Meta[MetaEnvelope])
		if err != nil {
			return nil, fault.Permanentf("envelope of %s: %w", raw.Key, err)
		}
		js = b
	case raw.Meta[MetaEnvelopeKey] != "":
		b, err := ReadAll(ctx, s, raw.Meta[MetaEnvelopeKey])
		if err != nil {
			return nil, fmt.Errorf("envelope of %s: %w", raw.Key, err)
		}
		js = b
	default:
		return nil, nil
	}
	var env message.Envelope
	if err := json.Unmarshal(js, &env); err != nil {
		return nil, fault.Permanentf("envelope of %s: %w", raw.Key, err)
	}
	return &env, nil
}

// ReadAll reads a whole (small) object.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, error) {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fault.Temporary(fmt.Errorf("read %s: %w", key, err))
	}
	return b, nil
}

// PutJSON stores v as a JSON object.
func PutJSON(ctx context.Context, s Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fault.Permanent(err)
	}
	_, err = s.Put(ctx, key, bytes.NewReader(b), map[string]string{"content-type": "application/json"})
	return err
}

// GetJSON reads a JSON object into v.
func GetJSON(ctx context.Context, s Store, key string, v any) error {
	b, err := ReadAll(ctx, s, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fault.Permanentf("decode %s: %w", key, err)
	}
	return nil
}

// IsNotFound reports whether err means the key does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
