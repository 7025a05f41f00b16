package testenv

import "testing"

func TestRunJSON(t *testing.T) {
	cat := Require(t, "cat", "install coreutils")
	var out struct{ A []int }
	RunJSON(t, &out, map[string]any{"A": []int{1, 2}}, cat)
	if len(out.A) != 2 || out.A[1] != 2 {
		t.Fatalf("got %+v", out)
	}
}

func TestPython(t *testing.T) {
	py := Python(t, "apt-get install python3", "json", "base64")
	var out map[string]string
	RunJSON(t, &out, map[string]string{"k": "v"}, py, "-c", "import json, sys; d = json.load(sys.stdin); print(json.dumps({'got': d['k']}))")
	if out["got"] != "v" {
		t.Fatalf("got %q", out)
	}
}
