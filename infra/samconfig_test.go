package infra

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// samconfig.toml deploys with the capabilities the template needs and
// builds with the makefile targets; a full TOML parser is not needed to
// check the handful of keys that matter.
func TestSamconfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]map[string]string{}
	section := ""
	kv := regexp.MustCompile(`^([a-z0-9_]+)\s*=\s*(.+)$`)
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			m := kv.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("samconfig.toml: cannot read %q", line)
				continue
			}
			if values[section] == nil {
				values[section] = map[string]string{}
			}
			values[section][m[1]] = m[2]
		}
	}
	if values[""]["version"] != "0.1" {
		t.Errorf("version = %q, want 0.1", values[""]["version"])
	}
	if values["default.global.parameters"]["stack_name"] == "" {
		t.Error("no default stack_name")
	}
	caps := values["default.deploy.parameters"]["capabilities"]
	if !strings.Contains(caps, "CAPABILITY_IAM") {
		t.Errorf("capabilities %s: the template creates IAM roles", caps)
	}
	for _, id := range template(t).ResourcesOfType("AWS::IAM::Role") {
		if props(t, id).Get("RoleName") != nil && !strings.Contains(caps, "CAPABILITY_NAMED_IAM") {
			t.Errorf("%s has a RoleName: deploy needs CAPABILITY_NAMED_IAM", id)
		}
	}
	if values["default.deploy.parameters"]["resolve_s3"] != "true" {
		t.Error("resolve_s3 should be true so a first deploy needs no artifact bucket")
	}
}
