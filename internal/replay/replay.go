// Package replay routes and delivers stored messages again: what
// `letterbox replay` and the inspector's replay button do. A replayed job
// carries its own id (<job id>.replay-<tag>), so a receiver that
// de-duplicates on webhook-id (Standard Webhooks) does not drop it.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/localqueue"
	"github.com/letterboxmail/letterbox/internal/sqsqueue"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Tag returns the replay tag for jobs created at t.
func Tag(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// Load returns a stored message: its parsed JSON when the store keeps one
// (its authentication results are those of the time of receipt), else the
// raw message parsed again by h.
func Load(ctx context.Context, h *ingest.Handler, id string) (*message.Message, error) {
	var m message.Message
	err := store.GetJSON(ctx, h.Store, store.ParsedKey(id), &m)
	if err == nil {
		return &m, nil
	}
	if !store.IsNotFound(err) {
		return nil, err
	}
	key := store.RawKey(id)
	if _, err := h.Store.Stat(ctx, key); store.IsNotFound(err) {
		key = store.RawPrefix + id // written by another ingress (SES)
	}
	return h.Parse(ctx, key)
}

// Message routes message id again and, unless opt.DryRun, enqueues its jobs
// on h.Queue. opt.Replay should be set (Tag).
func Message(ctx context.Context, h *ingest.Handler, id string, opt ingest.RouteOptions) ([]delivery.Job, error) {
	m, err := Load(ctx, h, id)
	if err != nil {
		return nil, err
	}
	return h.Route(ctx, m, opt)
}

// ErrQueueRequired is returned by OpenQueue for an S3 store without a queue.
var ErrQueueRequired = errors.New("--queue is required with an S3 store: the delivery queue's SQS URL")

// OpenQueue opens the delivery queue ref names: an SQS queue URL, a local
// queue directory, or, when ref is empty and the store is a file store,
// the queue `letterbox dev` uses beside it.
func OpenQueue(ctx context.Context, ref, storeURL string) (delivery.Queue, io.Closer, error) {
	if strings.HasPrefix(ref, "https://sqs.") || strings.HasPrefix(ref, "https://queue.amazonaws.com") {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, nil, err
		}
		return &sqsqueue.Queue{API: sqs.NewFromConfig(cfg), URL: ref}, io.NopCloser(nil), nil
	}
	if ref == "" {
		if !strings.HasPrefix(storeURL, "file://") && strings.Contains(storeURL, "://") {
			return nil, nil, ErrQueueRequired
		}
		ref = filepath.Join(strings.TrimPrefix(storeURL, "file://"), ".queue")
	}
	q, err := localqueue.Open(ctx, ref, "letterbox-deliveries")
	if err != nil {
		return nil, nil, fmt.Errorf("delivery queue %s: %w", ref, err)
	}
	return localqueue.Deliveries{Queue: q}, q, nil
}
