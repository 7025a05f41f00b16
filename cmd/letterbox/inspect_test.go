package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startInspect runs `letterbox inspect` with args and env on a free
// loopback port and returns its base URL; it is stopped when the test ends.
func startInspect(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"inspect", "--http", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-lines:
		u := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(l)
		if u == "" {
			t.Fatalf("letterbox inspect printed %q", l)
		}
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("letterbox inspect did not start")
		return ""
	}
}

func status(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestInspectCommand: loopback only without a token, read-only without
// --allow-replay, and the token required on every request when set.
func TestInspectCommand(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	os.Unsetenv("LETTERBOX_INSPECT_TOKEN")
	_, stderr, code := run(t, "inspect", "--store", store, "--http", "0.0.0.0:0")
	if code != 2 || !strings.Contains(stderr, "LETTERBOX_INSPECT_TOKEN") {
		t.Fatalf("non-loopback without a token: exit %d %q", code, stderr)
	}
	_, stderr, code = run(t, "inspect", "--store", store, "--allow-replay")
	if code != 2 || !strings.Contains(stderr, "--allow-replay needs --routes") {
		t.Fatalf("--allow-replay without routes: exit %d %q", code, stderr)
	}
	_, stderr, code = run(t, "inspect", "--store", "s3://bucket/mail", "--routes", writeRoutes(t, dir, "http://127.0.0.1:1"), "--allow-replay", "--index", filepath.Join(dir, "i.db"))
	if code != 2 || !strings.Contains(stderr, "--queue is required") {
		t.Fatalf("--allow-replay on S3 without --queue: exit %d %q", code, stderr)
	}

	base := startInspect(t, nil, "--store", store)
	if got := status(t, "GET", base+"/api/v1/messages", ""); got != 200 {
		t.Errorf("list: %d", got)
	}
	if got := status(t, "POST", base+"/api/v1/messages/01KBX0000000000000000000AA/replay", ""); got != 403 {
		t.Errorf("replay, read-only: %d, want 403", got)
	}

	const token = "a-long-random-token"
	base = startInspect(t, []string{"LETTERBOX_INSPECT_TOKEN=" + token}, "--store", store)
	for _, c := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {token, 200}} {
		for _, p := range []string{"/", "/api/v1/messages", "/static/app.js"} {
			if got := status(t, "GET", base+p, c.token); got != c.want {
				t.Errorf("GET %s with token %q: %d, want %d", p, c.token, got, c.want)
			}
		}
	}
}
