package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
)

const testRoutes = `domains: [example.test]
routes:
  - name: hooks
    match: {recipient: "hooks@example.test"}
    actions:
      - webhook: {url: "https://receiver.example.test/hook", secret_env: HOOK_SECRET}
  - name: fwd
    match: {recipient: "fwd@example.test"}
    actions:
      - forward: {to: [someone@elsewhere.test]}
`

func writeRoutes(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(p, []byte(testRoutes), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The parts a file-store pipeline builds share its store and routes.
func TestOpenBuildsTheParts(t *testing.T) {
	ctx := context.Background()
	p, err := pipeline.Open(ctx, pipeline.Config{StoreURL: "file://" + t.TempDir(), Routes: writeRoutes(t), RoutesFileOnly: true,
		RoutesInterval: time.Hour, Ping: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if p.Routes.Get(ctx).Route("hooks") == nil || p.KeyPrefix != "" {
		t.Fatalf("routes %v, prefix %q", p.Routes.Get(ctx), p.KeyPrefix)
	}
	in, err := p.Ingest(pipeline.IngestConfig{NoAuth: true, MaxBodyBytes: 1 << 20, KeepParsed: true})
	if err != nil {
		t.Fatal(err)
	}
	if in.Store != p.Store || in.Routes != p.Routes || in.Auth != nil || in.MaxBodyBytes != 1<<20 || !in.KeepParsed {
		t.Errorf("ingest handler %+v", in)
	}
	if in, err = p.Ingest(pipeline.IngestConfig{Resolver: "127.0.0.1:53"}); err != nil || in.Auth == nil {
		t.Errorf("ingest with authentication: %v, auth %v", err, in.Auth)
	}
	if _, err := p.Ingest(pipeline.IngestConfig{Resolver: "nowhere"}); err == nil || !strings.HasPrefix(err.Error(), "mail authentication: ") {
		t.Errorf("bad resolver: %v", err)
	}
	d, err := p.Deliver(pipeline.DeliverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Forwarder != nil || d.Publisher != nil || d.Metrics != nil || d.Webhooks.Links != nil || d.Webhooks.Store != p.Store {
		t.Errorf("deliver handler with nothing configured: %+v", d)
	}
	if _, err := p.Gateway(smtpgw.Config{Addr: "127.0.0.1:0"}, p.Store, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Gateway(smtpgw.Config{}, p.Store, nil); err == nil || !strings.Contains(err.Error(), "no SMTP listen address (--smtp)") {
		t.Errorf("Gateway without an address: %v", err)
	}
}

// Open's errors name what failed; a path-only pipeline (letterbox dev)
// reads an s3:// routes reference as a path, never fetches it.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	routes := writeRoutes(t)
	for _, tt := range []struct {
		name string
		cfg  pipeline.Config
		want string
	}{
		{"routes path only", pipeline.Config{StoreURL: "file://" + t.TempDir(), Routes: "s3://bucket/routes.yaml", RoutesFileOnly: true}, "stat s3://bucket/routes.yaml: no such file"},
		{"missing routes", pipeline.Config{StoreURL: "file://" + t.TempDir(), Routes: routes + ".gone"}, "routes.yaml.gone"},
		{"bad store", pipeline.Config{StoreURL: "ftp://x", Routes: routes}, "store ftp://x: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pipeline.Open(ctx, tt.cfg)
			if err == nil {
				p.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// The functions' handlers from an environment: what each variable sets,
// and the configuration errors that stop a cold start.
func TestLoadFunction(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{"LETTERBOX_STORE": "file://" + t.TempDir(), "LETTERBOX_ROUTES": writeRoutes(t),
		"LETTERBOX_SRS_DOMAIN": "fwd.example.test", "LETTERBOX_SRS_SECRET": "0123456789abcdef0123456789abcdef",
		"LETTERBOX_MAX_BODY_BYTES": "2097152", "LETTERBOX_KEEP_PARSED": "true", "LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq",
		"AWS_REGION": "eu-west-1"}
	getenv := func(k string) string { return env[k] }
	fn := loadFunction(t, getenv)
	in, err := fn.IngestHandler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.MaxBodyBytes != 2<<20 || !in.KeepParsed || in.DeadLetter == nil || in.Auth == nil || in.Queue != fn.Queue {
		t.Errorf("ingest handler %+v", in)
	}
	d, err := fn.DeliverHandler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Forwarder == nil || d.Publisher == nil || d.Queue != fn.Queue {
		t.Errorf("deliver handler %+v", d)
	}

	for _, tt := range []struct{ key, value, want string }{
		{"LETTERBOX_STORE", "", "environment variable LETTERBOX_STORE is not set"},
		{"LETTERBOX_ROUTES", "", "environment variable LETTERBOX_ROUTES is not set"},
		{"LETTERBOX_ROUTES_INTERVAL", "often", "LETTERBOX_ROUTES_INTERVAL: "},
		{"LETTERBOX_JOURNAL", "some", `LETTERBOX_JOURNAL="some": want all or failures`},
		{"LETTERBOX_DELIVER_TIMEOUT", "10", `LETTERBOX_DELIVER_TIMEOUT="10"`},
	} {
		t.Run(tt.key, func(t *testing.T) {
			bad := func(k string) string {
				if k == tt.key {
					return tt.value
				}
				return env[k]
			}
			if _, err := pipeline.LoadFunction(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadFunction = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("forward actions without forwarding", func(t *testing.T) {
		fn := loadFunction(t, func(k string) string {
			if k == "LETTERBOX_SRS_DOMAIN" {
				return ""
			}
			return env[k]
		})
		want := env["LETTERBOX_ROUTES"] + ":10: routes[1].actions[0].forward: forwarding is not configured on this stack"
		if _, err := fn.IngestHandler(ctx); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("IngestHandler = %v, want %q", err, want)
		}
		if _, err := fn.DeliverHandler(ctx); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("DeliverHandler = %v, want %q", err, want)
		}
	})
	env["LETTERBOX_MAX_BODY_BYTES"] = "lots"
	if _, err := fn.IngestHandler(ctx); err == nil || !strings.HasPrefix(err.Error(), "LETTERBOX_MAX_BODY_BYTES: ") {
		t.Errorf("IngestHandler = %v", err)
	}
	env["LETTERBOX_LINK_BASE_URL"] = "https://links.example.test"
	if _, err := fn.DeliverHandler(ctx); err == nil || err.Error() != "attachment links: LETTERBOX_LINK_BASE_URL is set but LETTERBOX_LINK_KEY_ARN is not: set both, or neither" {
		t.Errorf("DeliverHandler = %v", err)
	}
}

// arc_seal on a forward action needs an ARC key where the forward runs:
// the deliver function refuses the routes file without one, naming the
// file, line and field; the ingest function, which cannot know about a
// key kept in the deliver function's secret, accepts it.
func TestARCSealNeedsAKey(t *testing.T) {
	ctx := context.Background()
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routes, []byte(strings.Replace(testRoutes, "someone@elsewhere.test]}", "someone@elsewhere.test], arc_seal: true}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LETTERBOX_STORE": "file://" + t.TempDir(), "LETTERBOX_ROUTES": routes,
		"LETTERBOX_SRS_DOMAIN": "fwd.example.test", "LETTERBOX_SRS_SECRET": "0123456789abcdef0123456789abcdef", "AWS_REGION": "eu-west-1"}
	fn := loadFunction(t, func(k string) string { return env[k] })
	if _, err := fn.IngestHandler(ctx); err != nil {
		t.Errorf("IngestHandler: %v", err)
	}
	want := routes + ":10: routes[1].actions[0].forward.arc_seal: no ARC key is configured: set LETTERBOX_ARC_KEY"
	if _, err := fn.DeliverHandler(ctx); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("DeliverHandler without a key = %v, want %q", err, want)
	}
	env["LETTERBOX_ARC_KEY"], env["LETTERBOX_ARC_SELECTOR"], env["LETTERBOX_ARC_DOMAIN"] = arcPEM(t), "arc", "fwd.example.test"
	fn = loadFunction(t, func(k string) string { return env[k] })
	if _, err := fn.DeliverHandler(ctx); err != nil {
		t.Errorf("DeliverHandler with a key: %v", err)
	}
}

func loadFunction(t *testing.T, getenv func(string) string) *pipeline.Function {
	t.Helper()
	fn, err := pipeline.LoadFunction(context.Background(), getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fn.Close() })
	return fn
}
