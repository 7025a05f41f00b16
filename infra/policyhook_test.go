package infra

import (
	"regexp"
	"testing"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// The policy hook can be a Lambda function given as a stack parameter: the
// gateway gets it as LETTERBOX_POLICY_HOOK and may invoke exactly that
// function, only when the parameter is set.
func TestGatewayPolicyHookFunction(t *testing.T) {
	tp := template(t)
	p := tp.Parameters.Get("GatewayPolicyHookFunction")
	if p == nil || p.Get("Default").Str() != "" {
		t.Fatal(`GatewayPolicyHookFunction must exist with Default ""`)
	}
	re, err := regexp.Compile(p.Get("AllowedPattern").Str())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{
		"arn:aws:lambda:eu-west-1:123456789012:function:policy",
		"arn:aws:lambda:eu-west-1:123456789012:function:policy:live",
		"arn:aws-cn:lambda:cn-north-1:123456789012:function:p",
		"arn:aws:lambda:eu-west-1:123456789012:layer:x",
		"arn:aws:lambda:eu-west-1:1234:function:p",
		"https://policy.example.test/",
		"policy",
	} {
		// The stack accepts exactly what the gateway accepts.
		if re.MatchString(v) != routing.IsLambdaARN(v) {
			t.Errorf("AllowedPattern on %q: %v, gateway says %v", v, re.MatchString(v), routing.IsLambdaARN(v))
		}
	}
	if !re.MatchString("") {
		t.Error("AllowedPattern must allow the empty default")
	}
	cond := tp.Root.Path("Conditions", "HasPolicyHookFunction")
	if cond == nil || !tp.Implies("HasPolicyHookFunction", "UseGateway") {
		t.Fatal("HasPolicyHookFunction must exist and imply UseGateway")
	}

	// The container's environment.
	found := false
	for _, e := range props(t, "GatewayTaskDefinition").Get("ContainerDefinitions").Items[0].Get("Environment").Items {
		name, arg := intrinsic(e)
		if name != "Fn::If" || arg.Items[0].Str() != "HasPolicyHookFunction" {
			continue
		}
		v := arg.Items[1]
		if v.Get("Name").Str() != "LETTERBOX_POLICY_HOOK" || refTarget(v.Get("Value")) != "GatewayPolicyHookFunction" || !arg.Items[2].IsNoValue() {
			t.Errorf("LETTERBOX_POLICY_HOOK entry at line %d", e.Line)
		}
		found = true
	}
	if !found {
		t.Error("the gateway's environment has no LETTERBOX_POLICY_HOOK under HasPolicyHookFunction")
	}

	// The task role: lambda:InvokeFunction on exactly that ARN, only
	// under the condition.
	invokes := 0
	for _, s := range statements(t) {
		for _, a := range items(s.node.Get("Action")) {
			if a.Str() != "lambda:InvokeFunction" || s.where != "GatewayTaskRole/gateway" {
				continue
			}
			invokes++
			rs := items(s.node.Get("Resource"))
			if len(rs) != 1 || refTarget(rs[0]) != "GatewayPolicyHookFunction" {
				t.Errorf("GatewayTaskRole may invoke %v; only GatewayPolicyHookFunction", rs)
			}
		}
	}
	if invokes != 1 {
		t.Errorf("GatewayTaskRole has %d lambda:InvokeFunction statements, want 1", invokes)
	}
	stmts := tp.Root.Path("Resources", "GatewayTaskRole", "Properties", "Policies")
	ok := false
	for _, pol := range stmts.Items {
		for _, st := range pol.Get("PolicyDocument").Get("Statement").Items {
			if name, arg := intrinsic(st); name == "Fn::If" && arg.Items[0].Str() == "HasPolicyHookFunction" && arg.Items[1].Get("Sid").Str() == "InvokePolicyHook" {
				ok = true
			}
		}
	}
	if !ok {
		t.Error("the InvokePolicyHook statement must be conditional on HasPolicyHookFunction")
	}
}
