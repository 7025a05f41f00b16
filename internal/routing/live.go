package routing

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
)

// Loader fetches a routes file if it changed since version (an ETag, a
// modification time…). It returns changed=false and no data when the
// version is current.
type Loader interface {
	Load(ctx context.Context, version string) (data []byte, newVersion string, changed bool, err error)
	// Name identifies the source in errors and logs: a path or URL.
	Name() string
}

// Live holds the current configuration and reloads it when its source
// changes. It starts no goroutine: Get checks the source at most once per
// interval, on the caller's goroutine, so it is safe inside a Lambda
// handler. A reload that fails validation keeps the last good
// configuration and is logged; callers never see a half-valid one.
type Live struct {
	loader   Loader
	interval time.Duration
	limits   Limits

	mu      sync.Mutex
	cfg     *Config
	version string
	checked time.Time
	lastErr error
}

// NewLive loads the configuration once, against the default Limits; an
// invalid file is an error here, at start-up, naming the file, line and
// field.
func NewLive(ctx context.Context, l Loader, interval time.Duration) (*Live, error) {
	return Limits{}.NewLive(ctx, l, interval)
}

// NewLive is NewLive against the limits, at start-up and at every reload.
func (lim Limits) NewLive(ctx context.Context, l Loader, interval time.Duration) (*Live, error) {
	lv := &Live{loader: l, interval: interval, limits: lim}
	data, version, _, err := l.Load(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("load routes %s: %w", l.Name(), err)
	}
	cfg, err := lim.Parse(l.Name(), data)
	if err != nil {
		return nil, err
	}
	lv.cfg, lv.version, lv.checked = cfg, version, time.Now()
	return lv, nil
}

// Limits returns the limits the configuration is checked against.
func (lv *Live) Limits() Limits { return lv.limits }

// Static wraps a fixed configuration.
func Static(cfg *Config) *Live { return &Live{cfg: cfg} }

// Get returns the current configuration, reloading it first when the
// interval has passed and the source changed.
func (lv *Live) Get(ctx context.Context) *Config {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.loader == nil || time.Since(lv.checked) < lv.interval {
		return lv.cfg
	}
	lv.checked = time.Now()
	if err := lv.reloadLocked(ctx); err != nil {
		slog.ErrorContext(ctx, "routes reload failed; keeping the previous configuration", "source", lv.loader.Name(), "err", err)
		lv.lastErr = err
	}
	return lv.cfg
}

// Reload checks the source now, whatever the interval.
func (lv *Live) Reload(ctx context.Context) error {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.loader == nil {
		return nil
	}
	lv.checked = time.Now()
	err := lv.reloadLocked(ctx)
	lv.lastErr = err
	return err
}

// Err returns the error of the last reload, or nil if it succeeded.
func (lv *Live) Err() error {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.lastErr
}

func (lv *Live) reloadLocked(ctx context.Context) error {
	data, version, changed, err := lv.loader.Load(ctx, lv.version)
	if err != nil || !changed {
		return err
	}
	cfg, err := lv.limits.Parse(lv.loader.Name(), data)
	if err != nil {
		return err
	}
	lv.cfg, lv.version, lv.lastErr = cfg, version, nil
	slog.InfoContext(ctx, "routes reloaded", "source", lv.loader.Name(), "routes", len(cfg.Routes), "domains", len(cfg.Domains))
	return nil
}

// FileLoader loads a routes file from the local file system.
type FileLoader string

// Name returns the path.
func (f FileLoader) Name() string { return string(f) }

// Load reads the file when its size or modification time changed.
func (f FileLoader) Load(ctx context.Context, version string) ([]byte, string, bool, error) {
	fi, err := os.Stat(string(f))
	if err != nil {
		return nil, "", false, err
	}
	v := fmt.Sprintf("%d-%d", fi.ModTime().UnixNano(), fi.Size())
	if v == version {
		return nil, version, false, nil
	}
	data, err := os.ReadFile(string(f))
	if err != nil {
		return nil, "", false, err
	}
	return data, v, true, nil
}

// StoreLoader loads a routes file from a store object (an S3 object in
// AWS), checking its size and modification time before fetching it.
type StoreLoader struct {
	Store interface {
		Stat(ctx context.Context, key string) (store.Object, error)
		Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error)
	}
	Key string
	// Source names the object in errors, e.g. s3://bucket/routes.yaml.
	Source string
}

// Name returns the object's URL.
func (l StoreLoader) Name() string { return l.Source }

// Load fetches the object when it changed.
func (l StoreLoader) Load(ctx context.Context, version string) ([]byte, string, bool, error) {
	obj, err := l.Store.Stat(ctx, l.Key)
	if err != nil {
		return nil, "", false, err
	}
	v := fmt.Sprintf("%d-%d", obj.ModTime.UnixNano(), obj.Size)
	if v == version {
		return nil, version, false, nil
	}
	rc, _, err := l.Store.Get(ctx, l.Key)
	if err != nil {
		return nil, "", false, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return nil, "", false, err
	}
	return data, v, true, nil
}
