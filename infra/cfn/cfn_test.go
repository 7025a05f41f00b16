package cfn

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tpl, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tpl
}

func TestParseShortTags(t *testing.T) {
	tpl := mustParse(t, `
Resources:
  R:
    Type: AWS::X::Y
    Properties:
      Ref: !Ref P
      Att: !GetAtt Other.Some.Dotted
      Sub: !Sub "${AWS::Region}-${Other.Arn}-${!Literal}"
      If: !If [C, !Base64 x, !Join ["", [a, !Select [0, !Split [",", !ImportValue v]]]]]
      Eq: !Equals [!FindInMap [M, k, v], !Not [!And [!Or [!Condition C, !Condition C]]]]
      Az: !Cidr [!Select [0, !GetAZs ""], 6, 5]
`)
	p := tpl.Resource("R").Get("Properties")
	cases := map[string]string{
		"Ref": "Ref", "Att": "Fn::GetAtt", "Sub": "Fn::Sub", "If": "Fn::If", "Eq": "Fn::Equals", "Az": "Fn::Cidr",
	}
	for key, want := range cases {
		name, _, ok := p.Get(key).Intrinsic()
		if !ok || name != want {
			t.Errorf("%s: got %q, want %q", key, name, want)
		}
	}
	_, att, _ := p.Get("Att").Intrinsic()
	if att.Kind != Seq || att.Items[0].Value != "Other" || att.Items[1].Value != "Some.Dotted" {
		t.Errorf("!GetAtt split wrongly: %+v", att)
	}
	if got := SubVariables("${AWS::Region}-${Other.Arn}-${!Literal}"); strings.Join(got, ",") != "AWS::Region,Other.Arn" {
		t.Errorf("SubVariables = %v", got)
	}
	// Every short tag CloudFormation documents is understood.
	for _, tag := range []string{"!Ref", "!GetAtt", "!Sub", "!If", "!Equals", "!Join", "!Select", "!Split", "!FindInMap", "!Not", "!And", "!Or", "!Condition", "!ImportValue", "!Base64", "!GetAZs", "!Cidr"} {
		if _, ok := shortTags[tag]; !ok {
			t.Errorf("short tag %s not handled", tag)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, src := range map[string]string{
		"unknown tag":   "Resources:\n  R: !Bogus x\n",
		"duplicate key": "Resources:\n  R: {Type: A}\n  R: {Type: B}\n",
		"alias":         "Resources:\n  R: &a {Type: A}\n  S: *a\n",
		"no resources":  "Parameters: {}\n",
		"getatt no dot": "Resources:\n  R: {Type: A, Properties: {X: !GetAtt Foo}}\n",
	} {
		if _, err := Parse([]byte(src)); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

func TestImplies(t *testing.T) {
	tpl := mustParse(t, `
Conditions:
  A: !Equals [!Ref P, x]
  B: !Equals [!Ref Q, y]
  AB: !And [!Condition A, !Condition B]
  ABB: !And [!Condition AB, !Equals [1, 1]]
  NotA: !Not [!Condition A]
Resources:
  R: {Type: AWS::X::Y}
`)
	for _, c := range []struct {
		c, d string
		want bool
	}{
		{"A", "A", true}, {"AB", "A", true}, {"AB", "B", true}, {"ABB", "A", true},
		{"A", "AB", false}, {"NotA", "A", false}, {"B", "A", false}, {"Missing", "A", false},
	} {
		if got := tpl.Implies(c.c, c.d); got != c.want {
			t.Errorf("Implies(%s, %s) = %v, want %v", c.c, c.d, got, c.want)
		}
	}
}
