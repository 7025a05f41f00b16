package lambdalocal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

const rieInstall = "make tools (or: go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d)"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// function runs testdata/fn, built once as a bootstrap, under the emulator.
func function(t *testing.T, memoryMB int, timeout time.Duration) *lambdalocal.Function {
	f, _ := functionLog(t, memoryMB, timeout)
	return f
}

func functionLog(t *testing.T, memoryMB int, timeout time.Duration) (*lambdalocal.Function, *testenv.Buffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the Lambda Runtime Interface Emulator")
	}
	rie := testenv.Require(t, "aws-lambda-rie", rieInstall)
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "lambdalocal"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", filepath.Join(buildDir, "bootstrap"), "./testdata/fn").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	bin := filepath.Join(buildDir, "bootstrap")
	log := &testenv.Buffer{}
	f := lambdalocal.New(lambdalocal.Config{Name: "fn", Bootstrap: bin, Emulator: rie, Env: []string{"FN_SETTING=from-template"},
		MemoryMB: memoryMB, Timeout: timeout, Output: log})
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			t.Logf("emulator output:\n%s", log.String())
		}
	})
	return f, log
}

func invoke(t *testing.T, f *lambdalocal.Function, ev string) (lambdalocal.Result, error) {
	t.Helper()
	return f.Invoke(context.Background(), []byte(ev))
}

func TestColdThenWarm(t *testing.T) {
	f := function(t, 128, 10*time.Second)
	res, err := invoke(t, f, `{"log":"hello from the function"}`)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("payload %q: %v", res.Payload, err)
	}
	if out["env"] != "from-template" || out["memory"] != "128" {
		t.Errorf("environment seen by the function: %v", out)
	}
	if res.Init <= 0 || res.Duration <= 0 || res.PeakRSS <= 0 {
		t.Errorf("cold start: init %v, duration %v, peak %d", res.Init, res.Duration, res.PeakRSS)
	}
	if want := len("hello from the function\n"); res.LogBytes != want {
		t.Errorf("log bytes = %d, want %d", res.LogBytes, want)
	}
	res, err = invoke(t, f, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Init != 0 || res.LogBytes != 0 {
		t.Errorf("warm invocation: init %v, log bytes %d; want 0, 0", res.Init, res.LogBytes)
	}
}

func TestFunctionError(t *testing.T) {
	f := function(t, 128, 10*time.Second)
	_, err := invoke(t, f, `{"error":"no route"}`)
	var fe *lambdalocal.FunctionError
	if !errors.As(err, &fe) || fe.Message != "no route" || fe.Type != "errorString" {
		t.Fatalf("err = %v, want a function error errorString: no route", err)
	}
	// The environment survives a function error: the next one is warm.
	res, err := invoke(t, f, `{}`)
	if err != nil || res.Init != 0 {
		t.Fatalf("after a function error: init %v, err %v", res.Init, err)
	}
}

func TestTimeoutReplacesTheEnvironment(t *testing.T) {
	f := function(t, 128, time.Second)
	_, err := invoke(t, f, `{"sleep_ms":3000}`)
	if !errors.Is(err, lambdalocal.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	res, err := invoke(t, f, `{}`)
	if err != nil || res.Init <= 0 {
		t.Fatalf("after a timeout: init %v, err %v; want a cold start", res.Init, err)
	}
}

func TestMemorySizeIsEnforced(t *testing.T) {
	f := function(t, 64, 120*time.Second)
	// The function would go on for a minute: the kill must end it, not
	// wait for it (a parse of a large message goes on growing).
	began := time.Now()
	res, err := invoke(t, f, `{"alloc_mb":100,"sleep_ms":60000}`)
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("the invocation over its memory size took %v to end, want it killed at once", took)
	}
	if !errors.Is(err, lambdalocal.ErrMemory) {
		t.Fatalf("err = %v (peak %d MiB), want ErrMemory", err, res.PeakRSS>>20)
	}
	if res.PeakRSS <= 64<<20 {
		t.Errorf("peak %d, want above 64 MiB", res.PeakRSS)
	}
	// Killed, not left growing: the emulator runs the bootstrap in a
	// process group of its own.
	if n := running(filepath.Join(buildDir, "bootstrap")); n != 0 {
		t.Errorf("%d bootstrap processes still running after the environment was killed", n)
	}
	res, err = invoke(t, f, `{"alloc_mb":8}`)
	if err != nil || res.Init <= 0 {
		t.Fatalf("after running out of memory: init %v, err %v; want a cold start", res.Init, err)
	}
	if res.PeakRSS < 8<<20 || res.PeakRSS > 64<<20 {
		t.Errorf("peak %d MiB, want between 8 and 64", res.PeakRSS>>20)
	}
}

func TestKillMidInvocation(t *testing.T) {
	f, log := functionLog(t, 128, 30*time.Second)
	if _, err := invoke(t, f, `{}`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.Invoke(context.Background(), []byte(`{"sleep_ms":20000,"log":"in the handler"}`))
		done <- err
	}()
	// Kill once the invocation is in the handler: its log line says so.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "fn: in the handler") {
		if time.Now().After(deadline) {
			t.Fatal("the handler never logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.Kill()
	if err := <-done; !errors.Is(err, lambdalocal.ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	res, err := invoke(t, f, `{}`)
	if err != nil || res.Init <= 0 {
		t.Fatalf("after a kill: init %v, err %v; want a cold start", res.Init, err)
	}
}

// running counts the processes whose executable path is bin.
func running(bin string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		arg0, _, _ := strings.Cut(string(cmdline), "\x00")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if arg0 == bin && !strings.Contains(string(stat), ") Z ") {
			n++
		}
	}
	return n
}
