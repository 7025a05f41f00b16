package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/inspect"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/replay"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

func init() {
	commands["inspect"] = command{summary: "browse a store's messages, deliveries and routes in a browser (inspect --store URL)", run: runInspect}
}

func runInspect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	storeURL := fs.String("store", envOr("LETTERBOX_STORE", "file://.letterbox"), "store `URL`: file://DIR or s3://BUCKET[/PREFIX] (env LETTERBOX_STORE)")
	routesPath := fs.String("routes", envOr("LETTERBOX_ROUTES", ""), "routes `file` or s3://BUCKET/KEY or ssm:///NAME, for the routes page and replay (env LETTERBOX_ROUTES)")
	addr := fs.String("http", "127.0.0.1:8025", "HTTP listen `address`; a non-loopback address needs "+inspect.TokenEnv)
	allowReplay := fs.Bool("allow-replay", false, "let the replay button queue deliveries (needs --routes, and --queue for an S3 store); read-only otherwise")
	queue := fs.String("queue", envOr("LETTERBOX_DELIVERY_QUEUE_URL", ""), "delivery queue for replays: an SQS queue URL, or a local queue `directory` (default: the dev queue of a file store)")
	indexPath := fs.String("index", "", "the listing index `file` (a cache; default: beside a file store's queue, or in the user cache directory for S3)")
	poll := fs.Duration("poll", 0, "how often to look for new messages while the inspector is in use (default 1s for a file store, 5s for S3)")
	noAuth := fs.Bool("no-auth", false, "when replaying a message never parsed before, skip SPF/DKIM/DMARC/ARC checks")
	maxBody := maxBodyFlag(fs)
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	maxBodyBytes, err := maxBody()
	if err != nil {
		return &exitError{2, err}
	}
	token := os.Getenv(inspect.TokenEnv)
	if err := inspect.CheckBind(*addr, token); err != nil {
		return &exitError{2, err}
	}
	if *allowReplay && *routesPath == "" {
		return &exitError{2, errors.New("--allow-replay needs --routes")}
	}
	s3 := strings.HasPrefix(*storeURL, "s3://")
	if *allowReplay && s3 && *queue == "" {
		return &exitError{2, replay.ErrQueueRequired}
	}
	if *poll <= 0 {
		*poll = time.Second
		if s3 {
			*poll = 5 * time.Second
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// With routes, the store, the routes and the replay's ingest handler
	// come from the composition package, as for `letterbox replay`;
	// without, only the store is opened.
	var (
		p  *pipeline.Pipeline
		st store.Store
	)
	if *routesPath != "" {
		if p, err = pipeline.Open(ctx, pipeline.Config{StoreURL: *storeURL, Routes: *routesPath, RoutesInterval: 5 * time.Second, Ping: true, Logger: log}); err != nil {
			return err
		}
		defer p.Close()
		st = p.Store
	} else {
		var closer io.Closer
		if st, closer, err = storeurl.Open(ctx, *storeURL); err != nil {
			return err
		}
		defer closer.Close()
		if err := st.Ping(ctx); err != nil {
			return fmt.Errorf("store %s is not reachable: %w", *storeURL, err)
		}
	}
	if *indexPath == "" {
		if *indexPath, err = defaultIndexPath(*storeURL); err != nil {
			return err
		}
	}
	ix, err := inspect.OpenIndex(*indexPath)
	if err != nil {
		return err
	}
	defer ix.Close()
	cfg := inspect.Config{Source: inspect.Source{Store: st, MaxBodyBytes: maxBodyBytes}, Index: ix, Token: token, Poll: *poll, Log: log}
	if p != nil {
		cfg.Routes, cfg.RoutesName = p.Routes, *routesPath
	}
	if *allowReplay {
		q, qcloser, err := replay.OpenQueue(ctx, *queue, *storeURL)
		if errors.Is(err, replay.ErrQueueRequired) {
			return &exitError{2, err}
		} else if err != nil {
			return err
		}
		defer qcloser.Close()
		if cfg.Replayer, err = p.Ingest(pipeline.IngestConfig{Queue: q, NoAuth: *noAuth, MaxBodyBytes: maxBodyBytes}); err != nil {
			return err
		}
	}
	in, err := inspect.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: in, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(in.Close) // end the event streams
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); in.Run(runCtx) }()
	mode := "read-only"
	if *allowReplay {
		mode = "replay allowed"
	}
	fmt.Printf("letterbox inspect: http://%s/ over %s (%s; index %s)\n", ln.Addr(), *storeURL, mode, *indexPath)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		<-done
		return err
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err = srv.Shutdown(sctx)
	cancel()
	<-done
	return err
}

// defaultIndexPath keeps a file store's index beside its dev queue (where
// `letterbox dev` keeps its own, so both share it), and an S3 store's in
// the user's cache directory, one file per store URL.
func defaultIndexPath(storeURL string) (string, error) {
	if !strings.HasPrefix(storeURL, "s3://") {
		return filepath.Join(strings.TrimPrefix(storeURL, "file://"), ".queue-inspect.db"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the inspector's index (give --index): %w", err)
	}
	dir = filepath.Join(dir, "letterbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(storeURL))
	return filepath.Join(dir, "inspect-"+hex.EncodeToString(sum[:8])+".db"), nil
}
