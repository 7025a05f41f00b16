package infra

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// makefileFunctions returns the functions SAM builds with `make build-<id>`.
func makefileFunctions(t *testing.T) []string {
	var ids []string
	for _, id := range functions(t) {
		if template(t).Resource(id).Path("Metadata", "BuildMethod").Str() == "makefile" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no function uses BuildMethod makefile")
	}
	return ids
}

func runMake(t *testing.T, args ...string) string {
	t.Helper()
	mk := testenv.Require(t, "make", "apt-get install make")
	cmd := exec.Command(mk, args...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), "MAKEFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hasGoFiles reports whether a package directory exists with Go sources.
func hasGoFiles(t *testing.T, pkg string) bool {
	m, _ := filepath.Glob(filepath.Join(root(t), pkg, "*.go"))
	return len(m) > 0
}

// checkELF checks that a binary is a static Linux executable for arch.
func checkELF(t *testing.T, path, arch string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[arch]
	if f.Machine != want {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked (has an ELF interpreter); want CGO_ENABLED=0", path)
		}
	}
}

// lambdaBuildLine matches the go build command a build-<LogicalId> target runs.
var lambdaBuildLine = regexp.MustCompile(`CGO_ENABLED=0 GOOS=linux GOARCH=arm64 \S*go build -tags lambda\.norpc -trimpath -ldflags "-s -w" -o "([^"]+)" (\S+)`)

// Every function built by SAM's makefile builder has its build-<LogicalId>
// target, which cross-compiles to $(ARTIFACTS_DIR)/bootstrap with the flags
// the contract names; when the function's package exists, it is built and
// the result checked.
func TestMakeBuildTargets(t *testing.T) {
	for _, id := range makefileFunctions(t) {
		t.Run(id, func(t *testing.T) {
			dir := t.TempDir()
			out := runMake(t, "-n", "build-"+id, "ARTIFACTS_DIR="+dir)
			m := lambdaBuildLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("make -n build-%s does not run the expected go build:\n%s", id, out)
			}
			if m[1] != filepath.Join(dir, "bootstrap") {
				t.Errorf("output %q, want $(ARTIFACTS_DIR)/bootstrap", m[1])
			}
			want := "./functions/" + strings.ToLower(strings.TrimSuffix(id, "Function"))
			if m[2] != want {
				t.Errorf("builds %s, want %s", m[2], want)
			}
			if testing.Short() {
				return
			}
			if !hasGoFiles(t, want) {
				t.Skipf("%s has no Go files yet; the dry run above passed, the build itself did not run", want)
			}
			runMake(t, "build-"+id, "ARTIFACTS_DIR="+dir)
			checkELF(t, filepath.Join(dir, "bootstrap"), "arm64")
		})
	}
}

// `make build` builds every artefact without SAM: each function, the
// gateway for both architectures, and the command-line tool.
func TestMakeBuildCoversEveryArtefact(t *testing.T) {
	out := runMake(t, "-n", "build")
	for _, id := range makefileFunctions(t) {
		if !strings.Contains(out, "bin/lambda/"+id+"/bootstrap") {
			t.Errorf("make build does not build %s", id)
		}
	}
	for _, arch := range []string{"arm64", "amd64"} {
		for _, bin := range []string{"smtpgw", "healthcheck"} {
			if !strings.Contains(out, "bin/smtpgw/linux-"+arch+"/"+bin) {
				t.Errorf("make build does not build %s for linux/%s", bin, arch)
			}
		}
	}
	if !strings.Contains(out, "./cmd/letterbox") {
		t.Error("make build does not build the letterbox tool")
	}
}

// The gateway image's binaries cross-compile, static, for both platforms
// the image is built for.
func TestGatewayCrossCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	for _, pkg := range []string{"./infra/gateway/healthcheck", "./smtpgw/cmd/smtpgw"} {
		for _, arch := range []string{"arm64", "amd64"} {
			t.Run(strings.TrimPrefix(pkg, "./")+"/"+arch, func(t *testing.T) {
				if !hasGoFiles(t, pkg) {
					t.Skipf("%s has no Go files yet", pkg)
				}
				bin := filepath.Join(t.TempDir(), "bin")
				cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
				cmd.Dir = root(t)
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go build %s for linux/%s: %v\n%s", pkg, arch, err, out)
				}
				checkELF(t, bin, arch)
			})
		}
	}
}

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile returns a Dockerfile's instructions with continuation
// lines joined and comments dropped.
func parseDockerfile(t *testing.T, path string) []instruction {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start, n := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteString(" ")
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

func execForm(t *testing.T, in instruction, s string) []string {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Errorf("line %d: %s must use the exec (JSON) form, got %q", in.line, in.cmd, s)
	}
	return v
}

// The gateway's container definition: a native cross-compiling build stage,
// a static binary in a minimal final stage, a non-root user that matches
// the task definition, a health check that exists in the image and
// matches the task definition's, and the documented ports.
func TestGatewayDockerfile(t *testing.T) {
	ins := parseDockerfile(t, filepath.Join(root(t), "infra", "gateway", "Dockerfile"))
	var stages []string
	var final []instruction
	builds := map[string]bool{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			f := strings.Fields(in.args)
			if len(stages) == 0 && (len(f) < 1 || f[0] != "--platform=$BUILDPLATFORM") {
				t.Errorf("line %d: the build stage must run on --platform=$BUILDPLATFORM (cross-compile, no emulation)", in.line)
			}
			name := ""
			if len(f) >= 2 && strings.EqualFold(f[len(f)-2], "AS") {
				name = f[len(f)-1]
			}
			stages = append(stages, name)
			final = nil
		case "ADD":
			if strings.Contains(in.args, "://") {
				t.Errorf("line %d: ADD of a URL; fetch nothing unpinned at build time", in.line)
			}
		case "COPY":
			if from, ok := strings.CutPrefix(strings.Fields(in.args)[0], "--from="); ok && !slices.Contains(stages, from) {
				t.Errorf("line %d: COPY --from=%s names no earlier stage", in.line, from)
			}
		case "RUN":
			for _, cmd := range strings.Split(in.args, "&&") {
				if !strings.Contains(cmd, "go build") {
					continue
				}
				for _, flag := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-trimpath"} {
					if !strings.Contains(cmd, flag) {
						t.Errorf("line %d: go build without %s", in.line, flag)
					}
				}
				f := strings.Fields(cmd)
				builds[f[len(f)-1]] = true
			}
		}
		final = append(final, in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	for _, pkg := range []string{"./smtpgw/cmd/smtpgw", "./infra/gateway/healthcheck"} {
		if !builds[pkg] {
			t.Errorf("no go build of %s", pkg)
		}
	}
	var user, entry, health []string
	var exposed string
	var copied []string
	for _, in := range final {
		switch in.cmd {
		case "FROM":
			img := strings.Fields(in.args)[0]
			if img != "scratch" && !strings.HasPrefix(img, "gcr.io/distroless/static") {
				t.Errorf("runtime stage FROM %s; want scratch or distroless/static", img)
			}
		case "USER":
			user = append(user, in.args)
		case "ENTRYPOINT":
			entry = execForm(t, in, in.args)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(in.args, "CMD ")
			if !ok {
				t.Errorf("line %d: HEALTHCHECK without CMD", in.line)
			}
			health = execForm(t, in, cmd)
		case "EXPOSE":
			exposed += " " + in.args
		case "COPY":
			f := strings.Fields(in.args)
			copied = append(copied, f[len(f)-1])
			for _, src := range f[:len(f)-1] {
				if !strings.HasPrefix(src, "--") {
					copied = append(copied, "/"+filepath.Base(src))
				}
			}
		}
	}
	if len(user) != 1 || user[0] == "0" || strings.HasPrefix(user[0], "0:") || user[0] == "root" {
		t.Errorf("runtime USER %v: want one non-root user", user)
	}
	td := props(t, "GatewayTaskDefinition").Get("ContainerDefinitions").Items[0]
	if len(user) == 1 && td.Get("User").Str() != user[0] {
		t.Errorf("task definition runs as %q, image as %q", td.Get("User").Str(), user[0])
	}
	if !slices.Equal(entry, []string{"/smtpgw"}) {
		t.Errorf("ENTRYPOINT %v, want [/smtpgw]", entry)
	}
	if len(health) == 0 || !slices.Contains(copied, health[0]) {
		t.Errorf("HEALTHCHECK runs %v, which the runtime stage does not copy in (%v)", health, copied)
	}
	if cmd := td.Path("HealthCheck", "Command").Strings(); len(cmd) < 2 || !slices.Equal(cmd[1:], health) {
		t.Errorf("task definition health check %v differs from the image's %v", cmd, health)
	}
	for _, p := range []string{"2525", "8025"} {
		if !slices.Contains(strings.Fields(exposed), p) {
			t.Errorf("EXPOSE lacks %s", p)
		}
	}
	if !slices.Contains(copied, "/etc/ssl/certs/ca-certificates.crt") {
		t.Error("runtime stage has no CA certificates; TLS to S3 would fail")
	}
}
