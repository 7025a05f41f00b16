package cfn

import (
	"compress/gzip"
	"os"
	"path/filepath"
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

func TestCheckReferences(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Used: {Type: String}
  Unused: {Type: String}
Mappings:
  M: {a: {b: c}}
Conditions:
  C: !Equals [!Ref Used, x]
  D: !And [!Condition C, !Equals [1, 1]]
  Dangling: !Not [!Condition Nope]
Resources:
  Cond:
    Type: AWS::X::Y
    Condition: C
  Plain:
    Type: AWS::X::Y
    DependsOn: [Missing]
    Properties:
      A: !Ref Cond
      B: !If [C, !GetAtt Cond.Arn, !Ref AWS::NoValue]
      C: !Sub "${Ghost}"
      D: !FindInMap [M, zz, b]
      E: !Sub ["${Local}", {Local: !Ref Used}]
      F: !Ref Generated
  Guarded:
    Type: AWS::X::Y
    Condition: D
    Properties:
      A: !GetAtt Cond.Arn
Outputs:
  O:
    Value: !Ref Cond
`)
	errs := tpl.CheckReferences(Options{Generated: []string{"Generated"}})
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"DependsOn Missing: no resource",
		"Ref Cond: Cond exists only when C",  // Plain.A, and Outputs/O
		"Outputs/O): Ref Cond",               // the output is not guarded
		"Sub Ghost: no parameter",            //
		"FindInMap M.zz: mapping has no key", //
		"Condition Nope: no condition",       //
		"parameter Unused is never used",     //
		"condition Dangling is never used",   //
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing error %q in:\n%s", want, all)
		}
	}
	for _, unwanted := range []string{"GetAtt Cond.Arn", "Local", "Generated", "parameter Used"} {
		if strings.Contains(all, unwanted) {
			t.Errorf("unexpected error about %q in:\n%s", unwanted, all)
		}
	}
}

// A miniature of the specification database, in its real shape.
const miniDB = `{"idCtr":3,"schema":{
 "resource":{"type":"entities","entities":[
  {"$id":"1","cloudFormationType":"AWS::SQS::Queue","name":"Queue",
   "attributes":{"Arn":{"type":{"type":"string"}}},
   "properties":{
     "VisibilityTimeout":{"type":{"type":"integer"}},
     "RedrivePolicy":{"type":{"type":"json"}},
     "Tags":{"type":{"type":"array","element":{"type":"tag"}}},
     "Nested":{"type":{"type":"ref","reference":{"$ref":"2"}}},
     "Flag":{"type":{"type":"boolean"}},
     "Either":{"type":{"type":"union","types":[{"type":"boolean"},{"type":"ref","reference":{"$ref":"2"}}]}}}}]},
 "typeDefinition":{"type":"entities","entities":[
  {"$id":"2","name":"Nested","properties":{
     "Name":{"type":{"type":"string"},"required":true},
     "Count":{"type":{"type":"integer"}}}}]}}}`

func writeMiniDB(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "db.json.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write([]byte(miniDB))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestSpecValidate(t *testing.T) {
	spec, err := LoadSpec(writeMiniDB(t))
	if err != nil {
		t.Fatal(err)
	}
	tpl := mustParse(t, `
Conditions:
  C: !Equals [a, b]
Resources:
  Good:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {anything: [goes]}
      Tags: [{Key: k, Value: v}]
      Nested: {Name: n, Count: !Ref AWS::AccountId}
      Flag: !If [C, true, !Ref AWS::NoValue]
      Either: {Name: x}
  Bad:
    Type: AWS::SQS::Queue
    Propertys: {}
    Properties:
      VisibilityTimeout: soon
      Tags: {Key: k}
      Nested: {Count: 1, Colour: red}
      Flag: !If [C, maybe, false]
      Typo: 1
  Unknown:
    Type: AWS::Nope::Thing
  Sam:
    Type: AWS::Serverless::Function
    Properties: {Anything: 1}
  User:
    Type: AWS::SQS::Queue
    Properties:
      Nested: {Name: !GetAtt Good.Url}
`)
	errs := spec.Validate(tpl)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`unknown resource key "Propertys"`,
		`VisibilityTimeout: want an integer, not "soon"`,
		`Tags: want a list`,
		`unknown property "Colour"`,
		`required property "Name" is missing`,
		`Flag[if1]: want true or false`,
		`unknown property "Typo"`,
		`unknown resource type "AWS::Nope::Thing"`,
		`has no attribute "Url"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing error %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "Resources/Good/") || strings.Contains(all, "Sam") {
		t.Errorf("valid resources reported:\n%s", all)
	}
}
