// Package store defines where letterbox keeps messages and how keys are laid
// out, independently of the backend (filestore, s3store).
//
// Layout, relative to the store's root:
//
//	raw/<id>.eml                 the raw message as received (RFC 5322 bytes)
//	envelopes/<id>.json          the envelope, only when too large for metadata
//	parsed/<id>.json             the parsed message (package message, v1)
//	attachments/<id>/<n>/<name>  decoded attachment bytes
//	deliveries/<id>/<job>.json   delivery records: attempts and outcome
//	verdicts/<id>.json           the scanners' verdicts (spam, virus) and
//	                             the gateway's decision, for scanned messages
//	quarantine/<id>.eml          a copy of a message kept out of routing:
//	                             refused or quarantined by the gateway's
//	                             policy, or by a route's quarantine action
//	                             (with the raw object's metadata)
//
// Ids are ULIDs, so keys sort by time. A raw object is written in one atomic
// step together with its envelope (object metadata), so a reader that can
// see a message can always see its envelope.
package store

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// Key prefixes.
const (
	RawPrefix         = "raw/"
	EnvelopePrefix    = "envelopes/"
	ParsedPrefix      = "parsed/"
	AttachmentsPrefix = "attachments/"
	DeliveriesPrefix  = "deliveries/"
	VerdictsPrefix    = "verdicts/"
	QuarantinePrefix  = "quarantine/"
)

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("store: not found")

// Object describes a stored object.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
	// Meta is the object's user metadata: lower-case ASCII keys, ASCII values.
	Meta map[string]string
}

// Store is a durable key-value store for message data.
//
// Put must be all-or-nothing: when it returns nil the object and its
// metadata are durable and visible together; when it returns an error
// nothing of the object is visible. Errors say whether they are temporary
// (package fault).
type Store interface {
	Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (Object, error)
	// Get opens an object. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// Stat returns an object's description without its body.
	Stat(ctx context.Context, key string) (Object, error)
	// List calls fn for every object whose key starts with prefix and sorts
	// after startAfter, in lexical key order, until fn returns false.
	List(ctx context.Context, prefix, startAfter string, fn func(Object) bool) error
	Delete(ctx context.Context, key string) error
	// Ping checks that the store is reachable, for readiness probes.
	Ping(ctx context.Context) error
	// URL returns the store's location: file://DIR or s3://BUCKET/PREFIX.
	URL() string
}

// Presigner is implemented by stores that can hand out time-limited links.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// RawKey returns the key of a raw message.
func RawKey(id string) string { return RawPrefix + id + ".eml" }

// ParsedKey returns the key of a parsed message.
func ParsedKey(id string) string { return ParsedPrefix + id + ".json" }

// EnvelopeKey returns the key of an envelope stored apart from its message.
func EnvelopeKey(id string) string { return EnvelopePrefix + id + ".json" }

// VerdictsKey returns the key of a message's scan verdicts.
func VerdictsKey(id string) string { return VerdictsPrefix + id + ".json" }

// QuarantineKey returns the key of a quarantined message.
func QuarantineKey(id string) string { return QuarantinePrefix + id + ".eml" }

// DeliveryKey returns the key of a delivery job's record.
func DeliveryKey(id, job string) string { return DeliveriesPrefix + id + "/" + job + ".json" }

// IDFromRawKey returns the message id of a raw key, and false when key is
// not a raw message. It accepts both our own keys (raw/<id>.eml) and keys
// written by other ingress paths such as SES receipt rules (raw/<id>).
func IDFromRawKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, RawPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return strings.TrimSuffix(rest, ".eml"), true
}
