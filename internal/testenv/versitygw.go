package testenv

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersityInstall says how to get versitygw when it is missing.
const VersityInstall = "make tools (or: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"

// VersityOptions configures StartVersity. The zero value is ready to use.
type VersityOptions struct {
	// Bucket is created before the server starts; default "letterbox".
	Bucket string
	// Region is the region the server signs for; default "us-east-1".
	Region string
	// EventWebhookURL, when set, makes versitygw POST an S3 event
	// notification (JSON, the shape of aws-lambda-go events.S3Event) for
	// every object event to this URL. The webhook must already be serving:
	// versitygw POSTs a test event ({"Event":"s3:TestEvent",...}, no
	// Records) at startup and refuses to start when the URL does not answer.
	EventWebhookURL string
}

// Versity is a running versitygw S3 server with a posix backend in a
// temporary directory.
type Versity struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the posix root: each bucket is a folder under it.
	Dir string

	tb   testing.TB
	bin  string
	addr string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *Buffer
	done chan struct{}
}

const versityHealthPath = "/_letterbox_health"

// StartVersity starts versitygw on a free loopback port, creates the
// bucket, waits until the server answers and stops it when the test ends.
// Without versitygw the test skips (locally) or fails (CI).
func StartVersity(tb testing.TB, opts VersityOptions) *Versity {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts versitygw; skipped in -short mode")
	}
	bin := Require(tb, "versitygw", VersityInstall)
	if opts.Bucket == "" {
		opts.Bucket = "letterbox"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	dir := tb.TempDir()
	if err := os.Mkdir(filepath.Join(dir, opts.Bucket), 0o755); err != nil {
		tb.Fatalf("versitygw: create bucket: %v", err)
	}
	v := &Versity{
		Bucket:    opts.Bucket,
		AccessKey: "letterbox-test-access",
		SecretKey: "letterbox-test-secret",
		Region:    opts.Region,
		Dir:       dir,
		tb:        tb,
		bin:       bin,
	}
	tb.Cleanup(func() {
		v.Stop()
		if tb.Failed() {
			tb.Logf("versitygw output:\n%s", v.out.String())
		}
	})
	// A free port can be taken by someone else between our probe and
	// versitygw's bind; try a few.
	var err error
	for range 5 {
		v.addr, err = freeLoopbackAddr()
		if err != nil {
			break
		}
		v.Endpoint = "http://" + v.addr
		v.args = []string{
			"--port", v.addr,
			"--access", v.AccessKey,
			"--secret", v.SecretKey,
			"--region", v.Region,
			"--health", versityHealthPath,
			"--quiet",
		}
		if opts.EventWebhookURL != "" {
			v.args = append(v.args, "--event-webhook-url", opts.EventWebhookURL)
		}
		v.args = append(v.args, "posix", dir)
		if err = v.start(); err == nil {
			return v
		}
	}
	tb.Fatalf("versitygw: %v\noutput:\n%s", err, v.out.String())
	return nil
}

// CreateBucket creates another bucket (a folder under Dir); the running
// server sees it at once.
func (v *Versity) CreateBucket(name string) {
	v.tb.Helper()
	if err := os.Mkdir(filepath.Join(v.Dir, name), 0o755); err != nil {
		v.tb.Fatalf("versitygw: create bucket: %v", err)
	}
}

// StoreURL returns the s3:// URL of prefix in the bucket.
func (v *Versity) StoreURL(prefix string) string {
	if prefix == "" {
		return "s3://" + v.Bucket
	}
	return "s3://" + v.Bucket + "/" + prefix
}

// Env returns the AWS_* variables (KEY=VALUE) that point the AWS SDK at
// this server, for exec.Cmd.Env.
func (v *Versity) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + v.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + v.SecretKey,
		"AWS_REGION=" + v.Region,
		"AWS_ENDPOINT_URL_S3=" + v.Endpoint,
	}
}

// SetEnv sets Env() in the test's environment (t.Setenv), clearing
// variables that would take precedence over it or send the SDK to a
// profile, so the test sees only this server.
func (v *Versity) SetEnv(tb testing.TB) {
	tb.Helper()
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
		tb.Setenv(k, "")
		os.Unsetenv(k)
	}
	// No shared config or credentials files: they could name another
	// endpoint or credentials.
	tb.Setenv("AWS_CONFIG_FILE", filepath.Join(v.Dir, ".no-aws-config"))
	tb.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(v.Dir, ".no-aws-credentials"))
	for _, kv := range v.Env() {
		k, val, _ := bytes.Cut([]byte(kv), []byte("="))
		tb.Setenv(string(k), string(val))
	}
}

// Stop stops the server, keeping its port and data; Start brings it back.
// Use it to simulate an outage. Stopping a stopped server does nothing.
func (v *Versity) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
	v.cmd = nil
}

// Start restarts a stopped server on the same port with the same data and
// waits until it answers.
func (v *Versity) Start() {
	v.tb.Helper()
	if err := v.start(); err != nil {
		v.tb.Fatalf("versitygw: restart: %v\noutput:\n%s", err, v.out.String())
	}
}

func (v *Versity) start() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		return nil
	}
	if v.out == nil {
		v.out = &Buffer{}
	}
	cmd := exec.Command(v.bin, v.args...)
	cmd.Stdout = v.out
	cmd.Stderr = v.out
	// Keep the root account's keys out of the child's view of ours.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := WaitHTTP(context.Background(), v.Endpoint+versityHealthPath, done, 15*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return err
	}
	v.cmd, v.done = cmd, done
	return nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
