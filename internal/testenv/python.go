package testenv

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

var (
	pythonMu    sync.Mutex
	pythonFound = map[string]string{} // modules → interpreter, "" when none
)

// Python returns a python3 that imports every one of modules: python3 on
// PATH, else /usr/bin/python3, where distribution packages such as
// python3-dkim install. Without one it skips (locally) or fails (CI) the
// test, naming install. The answer is kept for the test binary's life.
func Python(tb testing.TB, install string, modules ...string) string {
	tb.Helper()
	key := strings.Join(modules, ", ")
	pythonMu.Lock()
	py, ok := pythonFound[key]
	if !ok {
		for _, p := range []string{"python3", "/usr/bin/python3"} {
			if exec.Command(p, "-c", "import "+key).Run() == nil {
				py = p
				break
			}
		}
		pythonFound[key] = py
	}
	pythonMu.Unlock()
	if py == "" {
		Missing(tb, "no python3 that imports "+key+"; install it with: "+install)
	}
	return py
}

// RunJSON runs a program with in, as JSON, on its standard input and
// decodes its standard output, JSON, into out. A failure fails the test
// with the program's standard error.
func RunJSON(tb testing.TB, out, in any, name string, args ...string) {
	tb.Helper()
	req, err := json.Marshal(in)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	resp, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	if err := json.Unmarshal(resp, out); err != nil {
		tb.Fatalf("%s %s said %q: %v", name, strings.Join(args, " "), resp, err)
	}
}
