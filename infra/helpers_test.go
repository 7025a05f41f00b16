// Package infra holds the deployment's checks: template.yaml against the
// contracts the code relies on and the rules a security review applies,
// the build targets SAM calls, and the gateway's container definition.
// Whether the template is valid CloudFormation is cfn-lint's job (make
// lint-template). docs/deploy.md lists what is and is not checked.
package infra

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/letterboxmail/letterbox/infra/cfn"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

var (
	tplOnce sync.Once
	tpl     *cfn.Template
	tplErr  error
)

func root(t testing.TB) string {
	t.Helper()
	r, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// template parses template.yaml once for all tests.
func template(t testing.TB) *cfn.Template {
	t.Helper()
	tplOnce.Do(func() {
		var b []byte
		b, tplErr = os.ReadFile(filepath.Join(root(t), "template.yaml"))
		if tplErr == nil {
			tpl, tplErr = cfn.Parse(b)
		}
	})
	if tplErr != nil {
		t.Fatalf("template.yaml: %v", tplErr)
	}
	return tpl
}

// props returns a resource's Properties, failing when the resource is missing.
func props(t testing.TB, id string) *cfn.Node {
	t.Helper()
	r := template(t).Resource(id)
	if r == nil {
		t.Fatalf("template.yaml has no resource %s", id)
	}
	return r.Get("Properties")
}

// intrinsic returns n's function name and argument, or "" when n is literal.
func intrinsic(n *cfn.Node) (string, *cfn.Node) {
	name, arg, _ := n.Intrinsic()
	return name, arg
}

// refTarget returns the logical id a !Ref names, or "".
func refTarget(n *cfn.Node) string {
	if name, arg := intrinsic(n); name == "Ref" {
		return arg.Str()
	}
	return ""
}

// getAtt returns the resource and attribute of a !GetAtt, or "", "".
func getAtt(n *cfn.Node) (string, string) {
	if name, arg := intrinsic(n); name == "Fn::GetAtt" && arg.Kind == cfn.Seq && len(arg.Items) == 2 {
		return arg.Items[0].Str(), arg.Items[1].Str()
	}
	return "", ""
}

// intValue resolves a literal integer or a !Ref to a parameter's default.
func intValue(t testing.TB, n *cfn.Node) (int, bool) {
	t.Helper()
	if v, ok := n.Int(); ok {
		return v, true
	}
	if p := refTarget(n); p != "" {
		return template(t).Parameters.Get(p).Get("Default").Int()
	}
	return 0, false
}

// branches expands Fn::If into both of its values (dropping AWS::NoValue),
// so a check sees every value a deployment can produce.
func branches(n *cfn.Node) []*cfn.Node {
	if n == nil || n.IsNoValue() {
		return nil
	}
	if name, arg := intrinsic(n); name == "Fn::If" && arg.Kind == cfn.Seq && len(arg.Items) == 3 {
		return append(branches(arg.Items[1]), branches(arg.Items[2])...)
	}
	return []*cfn.Node{n}
}

// items returns the elements of a list, each expanded by branches; a single
// non-list value counts as a list of one.
func items(n *cfn.Node) []*cfn.Node {
	var out []*cfn.Node
	for _, b := range branches(n) {
		if b.Kind == cfn.Seq {
			for _, it := range b.Items {
				out = append(out, branches(it)...)
			}
		} else {
			out = append(out, b)
		}
	}
	return out
}

// subText returns the template text of a !Sub (either form), or "".
func subText(n *cfn.Node) string {
	name, arg := intrinsic(n)
	if name != "Fn::Sub" {
		return ""
	}
	if arg.Kind == cfn.Seq && len(arg.Items) > 0 {
		return arg.Items[0].Str()
	}
	return arg.Str()
}

// sameNode reports whether two nodes are the same value, ignoring lines.
func sameNode(a, b *cfn.Node) bool {
	strip := func(n *cfn.Node) any {
		var f func(*cfn.Node) any
		f = func(n *cfn.Node) any {
			switch n.Kind {
			case cfn.Seq:
				var s []any
				for _, it := range n.Items {
					s = append(s, f(it))
				}
				return s
			case cfn.Map:
				m := map[string]any{}
				for i, k := range n.Keys {
					m[k] = f(n.Vals[i])
				}
				return m
			}
			return n.Value
		}
		return f(n)
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// functionProp returns a property of a Serverless function, falling back to
// Globals.Function as SAM does.
func functionProp(t testing.TB, id, key string) *cfn.Node {
	t.Helper()
	if v := props(t, id).Get(key); v != nil {
		return v
	}
	return template(t).Globals.Path("Function", key)
}

// functionEnv returns a function's environment, Globals merged under its own.
func functionEnv(t testing.TB, id string) map[string]*cfn.Node {
	t.Helper()
	env := map[string]*cfn.Node{}
	for _, vars := range []*cfn.Node{
		template(t).Globals.Path("Function", "Environment", "Variables"),
		props(t, id).Path("Environment", "Variables"),
	} {
		if vars == nil {
			continue
		}
		for i, k := range vars.Keys {
			env[k] = vars.Vals[i]
		}
	}
	return env
}

func functions(t testing.TB) []string {
	return template(t).ResourcesOfType("AWS::Serverless::Function")
}

func hasPrefixAny(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
