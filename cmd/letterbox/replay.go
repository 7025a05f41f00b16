package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/replay"
	"github.com/letterboxmail/letterbox/internal/store"
)

func init() {
	commands["replay"] = command{summary: "route and deliver stored messages again (replay --store URL --routes FILE ID...)", run: runReplay}
}

const replayUsage = "usage: letterbox replay --store URL --routes FILE [--route NAME] [--since T] [--until T] [--dry-run] [--queue DIR|SQS-URL] [ID...]"

func runReplay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	storeURL := fs.String("store", envOr("LETTERBOX_STORE", "file://.letterbox"), "store `URL` (env LETTERBOX_STORE)")
	routesPath := fs.String("routes", envOr("LETTERBOX_ROUTES", "routes.yaml"), "routes `file` or s3://BUCKET/KEY or ssm:///NAME (env LETTERBOX_ROUTES)")
	only := fs.String("route", "", "replay only this `route`")
	since := fs.String("since", "", "replay messages received at or after `T` (RFC 3339, or a duration ago such as 2h)")
	until := fs.String("until", "", "replay messages received before `T` (RFC 3339, or a duration ago)")
	dryRun := fs.Bool("dry-run", false, "print what would be delivered, deliver nothing")
	queue := fs.String("queue", envOr("LETTERBOX_DELIVERY_QUEUE_URL", ""), "delivery queue: an SQS queue URL, or a local queue `directory` (default: the dev queue of a file store)")
	noAuth := fs.Bool("no-auth", false, "when re-parsing, skip SPF/DKIM/DMARC/ARC checks")
	resolver := fs.String("resolver", envOr("LETTERBOX_RESOLVER", ""), "DNS `server` for authentication checks when re-parsing")
	maxBody := maxBodyFlag(fs)
	ids, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	maxBodyBytes, err := maxBody()
	if err != nil {
		return &exitError{2, err}
	}
	if len(ids) == 0 && *since == "" {
		return &exitError{2, errors.New(replayUsage + "\n(name message IDs or a --since time)")}
	}
	now := time.Now()
	from, err := parseWhen(*since, now, time.Time{})
	if err != nil {
		return &exitError{2, fmt.Errorf("--since: %w", err)}
	}
	to, err := parseWhen(*until, now, now.Add(time.Hour))
	if err != nil {
		return &exitError{2, fmt.Errorf("--until: %w", err)}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := pipeline.Open(ctx, pipeline.Config{StoreURL: *storeURL, Routes: *routesPath, RoutesInterval: time.Hour, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	st := p.Store
	if r := *only; r != "" && p.Routes.Get(ctx).Route(r) == nil {
		return &exitError{2, fmt.Errorf("--route %q is not in %s", r, *routesPath)}
	}
	var q delivery.Queue
	if !*dryRun {
		var closer io.Closer
		if q, closer, err = replay.OpenQueue(ctx, *queue, *storeURL); errors.Is(err, replay.ErrQueueRequired) {
			return &exitError{2, err}
		} else if err != nil {
			return err
		}
		defer closer.Close()
	}
	h, err := p.Ingest(pipeline.IngestConfig{Queue: q, NoAuth: *noAuth, Resolver: *resolver, MaxBodyBytes: maxBodyBytes})
	if err != nil {
		return err
	}

	if len(ids) == 0 {
		if ids, err = idsBetween(ctx, st, from, to); err != nil {
			return err
		}
		if len(ids) == 0 {
			return &exitError{1, fmt.Errorf("no stored messages received between %s and %s", from.Format(time.RFC3339), to.Format(time.RFC3339))}
		}
	}
	tag := replay.Tag(time.Now())
	var failed int
	for _, id := range ids {
		jobs, err := replay.Message(ctx, h, id, ingest.RouteOptions{Replay: tag, Only: *only, DryRun: *dryRun})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", id, err)
			failed++
			continue
		}
		verb := "queued"
		if *dryRun {
			verb = "would queue"
		}
		if len(jobs) == 0 {
			fmt.Printf("%s: no route matches\n", id)
		}
		for _, j := range jobs {
			fmt.Printf("%s: %s job %s (route %s, %s)\n", id, verb, j.ID, j.Route, j.Kind)
		}
	}
	if failed > 0 {
		return &exitError{1, fmt.Errorf("%d of %d messages could not be replayed", failed, len(ids))}
	}
	return nil
}

// parseWhen reads an RFC 3339 time or a duration ago ("2h").
func parseWhen(s string, now, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// idsBetween lists stored messages received in [from, to): by the time in
// their ULID, or by the object's time for ids that are not ULIDs.
func idsBetween(ctx context.Context, st store.Store, from, to time.Time) ([]string, error) {
	var ids []string
	err := st.List(ctx, store.RawPrefix, "", func(o store.Object) bool {
		id, ok := store.IDFromRawKey(o.Key)
		if !ok {
			return true
		}
		t := o.ModTime
		if u, err := ulid.ParseStrict(id); err == nil {
			t = ulid.Time(u.Time())
		}
		if !t.Before(from) && t.Before(to) {
			ids = append(ids, id)
		}
		return true
	})
	return ids, err
}
