package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Tests that the documentation's claims about the code hold (issue 12
// item 10).

const moduleRoot = "../.."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// HACKING.md: configuration is read by the entry points, never in other
// packages (internal/pipeline, the composition package, reads it through
// the getenv function the mains pass);
// test helpers and the stack stand-in (awsstack, lambdalocal) read the
// test's environment.
func TestOnlyEntryPointsReadTheEnvironment(t *testing.T) {
	allowed := []string{"cmd/", "functions/", "smtpgw/cmd/", "internal/testenv/", "internal/awsstack/", "internal/lambdalocal/", "internal/e2e/", "bench/", "examples/", "infra/"}
	fset := token.NewFileSet()
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(moduleRoot, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		for _, a := range allowed {
			if strings.HasPrefix(rel, a) {
				return nil
			}
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "os" {
				switch sel.Sel.Name {
				case "Getenv", "LookupEnv", "Environ":
					t.Errorf("%s: os.%s in a domain package; take a value or a getenv function from the entry point (HACKING.md)", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The README's project structure names every command and every top-level
// directory of code.
func TestReadmeStructureIsComplete(t *testing.T) {
	readme := readDoc(t, "README.md")
	_, block, _ := strings.Cut(readme, "## Project structure")
	block, _, _ = strings.Cut(block, "\n## ")
	cli := regexp.MustCompile(`(?m)^cmd/letterbox/\s+the CLI: (.*)$`).FindStringSubmatch(block)
	if cli == nil {
		t.Fatal("README's project structure has no cmd/letterbox/ line")
	}
	for name := range commands {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(cli[1]) {
			t.Errorf("README's cmd/letterbox/ line does not name the %s command", name)
		}
	}
	entries, err := os.ReadDir(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !strings.Contains(block, e.Name()+"/") {
			t.Errorf("README's project structure does not name %s/", e.Name())
		}
	}
}

// docs/message-json.md names only the sources the code sets: the gateway's
// sessions are the only writers of Envelope.Source.
func TestMessageJSONSourceValues(t *testing.T) {
	doc := readDoc(t, "docs/message-json.md")
	row := regexp.MustCompile("(?m)^\\| `source` \\|.*$").FindString(doc)
	if row == "" {
		t.Fatal("docs/message-json.md has no source row")
	}
	code := readDoc(t, "internal/smtpgw/session.go")
	for _, v := range regexp.MustCompile("`([a-z]+)`").FindAllStringSubmatch(row, -1) {
		if v[1] == "source" {
			continue
		}
		if !strings.Contains(code, `Source:     "`+v[1]+`"`) {
			t.Errorf("docs/message-json.md gives source %q, which no code sets", v[1])
		}
	}
}

// docs/gateway.md says which of the gateway's flags `letterbox dev` takes
// differently; its --routes takes a file only.
func TestDevRoutesFlagTakesAFileOnly(t *testing.T) {
	doc := readDoc(t, "docs/gateway.md")
	if strings.Contains(doc, "`letterbox dev` takes the same gateway flags.") || !strings.Contains(doc, "its `--routes` takes a file path only") {
		t.Error("docs/gateway.md must say that letterbox dev's --routes takes a file path only")
	}
	_, stderr, code := run(t, "dev", "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", "file://"+t.TempDir(), "--routes", "s3://bucket/routes.yaml")
	if code == 0 || !strings.Contains(stderr, "s3://bucket/routes.yaml: no such file or directory") {
		t.Fatalf("letterbox dev --routes s3://…: exit %d %q", code, stderr)
	}
}
