// Package cfn reads AWS CloudFormation and SAM templates written in YAML
// into nodes that keep their line numbers, for the project's own checks of
// template.yaml (infra/) and for running the stack locally
// (internal/awsstack). Whether resource types, properties, values,
// references and conditions are valid CloudFormation is cfn-lint's job
// (make lint-template), not this package's.
//
// Templates are read with gopkg.in/yaml.v3. CloudFormation's short-form
// intrinsic tags (!Ref, !GetAtt, !Sub, …) become the long form they stand
// for ({"Ref": …}, {"Fn::GetAtt": […]}, …), so checks see one shape.
package cfn

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Kind is the shape of a Node.
type Kind int

// Node shapes.
const (
	Scalar Kind = iota
	Seq
	Map
)

// Node is one value of a template with the line it came from.
type Node struct {
	Kind Kind
	// Value is a scalar's text; Tag its YAML type (!!str, !!int, !!bool,
	// !!float, !!null).
	Value string
	Tag   string
	// Items are a sequence's elements.
	Items []*Node
	// Keys and Vals are a mapping's entries, in source order.
	Keys []string
	Vals []*Node
	Line int
}

// Get returns the value under key in a mapping, or nil.
func (n *Node) Get(key string) *Node {
	if n == nil || n.Kind != Map {
		return nil
	}
	for i, k := range n.Keys {
		if k == key {
			return n.Vals[i]
		}
	}
	return nil
}

// Path follows mapping keys from n; nil when one is missing.
func (n *Node) Path(keys ...string) *Node {
	for _, k := range keys {
		n = n.Get(k)
	}
	return n
}

// Str returns a scalar's text, or "" for other shapes and nil.
func (n *Node) Str() string {
	if n == nil || n.Kind != Scalar {
		return ""
	}
	return n.Value
}

// Int returns a scalar's integer value.
func (n *Node) Int() (int, bool) {
	if n == nil || n.Kind != Scalar {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(n.Value))
	return v, err == nil
}

// Strings returns the scalar items of a sequence (a lone scalar counts as a
// sequence of one, as in IAM policies).
func (n *Node) Strings() []string {
	if n == nil {
		return nil
	}
	if n.Kind == Scalar {
		return []string{n.Value}
	}
	var out []string
	for _, it := range n.Items {
		if it.Kind == Scalar {
			out = append(out, it.Value)
		}
	}
	return out
}

// Intrinsic reports whether n is an intrinsic function call, a mapping with
// one key that is Ref, Condition or Fn::*, and returns its name and argument.
func (n *Node) Intrinsic() (name string, arg *Node, ok bool) {
	if n == nil || n.Kind != Map || len(n.Keys) != 1 {
		return "", nil, false
	}
	k := n.Keys[0]
	if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
		return k, n.Vals[0], true
	}
	return "", nil, false
}

// IsNoValue reports whether n is {"Ref": "AWS::NoValue"}.
func (n *Node) IsNoValue() bool {
	name, arg, ok := n.Intrinsic()
	return ok && name == "Ref" && arg.Str() == "AWS::NoValue"
}

// Template is a parsed template.
type Template struct {
	Root       *Node
	Parameters *Node
	Mappings   *Node
	Conditions *Node
	Resources  *Node
	Outputs    *Node
	Globals    *Node
}

// Resource returns a resource's definition, or nil.
func (t *Template) Resource(id string) *Node { return t.Resources.Get(id) }

// ResourceType returns a resource's Type, or "".
func (t *Template) ResourceType(id string) string { return t.Resource(id).Get("Type").Str() }

// ResourcesOfType returns the logical ids of resources of a type, sorted.
func (t *Template) ResourcesOfType(typ string) []string {
	var ids []string
	for i, id := range t.Resources.Keys {
		if t.Resources.Vals[i].Get("Type").Str() == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// shortTags maps CloudFormation's YAML short forms to their long names.
var shortTags = map[string]string{
	"!Ref":          "Ref",
	"!Condition":    "Condition",
	"!GetAtt":       "Fn::GetAtt",
	"!Sub":          "Fn::Sub",
	"!If":           "Fn::If",
	"!Equals":       "Fn::Equals",
	"!Join":         "Fn::Join",
	"!Select":       "Fn::Select",
	"!Split":        "Fn::Split",
	"!FindInMap":    "Fn::FindInMap",
	"!Not":          "Fn::Not",
	"!And":          "Fn::And",
	"!Or":           "Fn::Or",
	"!ImportValue":  "Fn::ImportValue",
	"!Base64":       "Fn::Base64",
	"!GetAZs":       "Fn::GetAZs",
	"!Cidr":         "Fn::Cidr",
	"!Length":       "Fn::Length",
	"!ToJsonString": "Fn::ToJsonString",
	"!Transform":    "Fn::Transform",
}

// Parse reads a YAML template.
func Parse(data []byte) (*Template, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("template: want one YAML document")
	}
	root, err := convert(doc.Content[0])
	if err != nil {
		return nil, err
	}
	if root.Kind != Map {
		return nil, fmt.Errorf("template: line %d: top level is not a mapping", root.Line)
	}
	t := &Template{
		Root:       root,
		Parameters: root.Get("Parameters"),
		Mappings:   root.Get("Mappings"),
		Conditions: root.Get("Conditions"),
		Resources:  root.Get("Resources"),
		Outputs:    root.Get("Outputs"),
		Globals:    root.Get("Globals"),
	}
	if t.Resources == nil || t.Resources.Kind != Map {
		return nil, fmt.Errorf("template: no Resources mapping")
	}
	return t, nil
}

func convert(y *yaml.Node) (*Node, error) {
	if y.Kind == yaml.AliasNode {
		return nil, fmt.Errorf("line %d: YAML aliases are not allowed in CloudFormation templates", y.Line)
	}
	var n *Node
	switch y.Kind {
	case yaml.ScalarNode:
		n = &Node{Kind: Scalar, Value: y.Value, Tag: y.ShortTag(), Line: y.Line}
	case yaml.SequenceNode:
		n = &Node{Kind: Seq, Line: y.Line}
		for _, c := range y.Content {
			cn, err := convert(c)
			if err != nil {
				return nil, err
			}
			n.Items = append(n.Items, cn)
		}
	case yaml.MappingNode:
		n = &Node{Kind: Map, Line: y.Line}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k := y.Content[i]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping key is not a scalar", k.Line)
			}
			if k.Value == "<<" {
				return nil, fmt.Errorf("line %d: YAML merge keys are not allowed in CloudFormation templates", k.Line)
			}
			if n.Get(k.Value) != nil {
				return nil, fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			v, err := convert(y.Content[i+1])
			if err != nil {
				return nil, err
			}
			n.Keys = append(n.Keys, k.Value)
			n.Vals = append(n.Vals, v)
		}
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node", y.Line)
	}
	tag := y.Tag
	if tag == "" || strings.HasPrefix(tag, "!!") || strings.HasPrefix(tag, "tag:yaml.org,2002:") {
		return n, nil
	}
	long, ok := shortTags[tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", y.Line, tag)
	}
	if n.Kind == Scalar {
		n.Tag = "!!str"
	}
	// !GetAtt A.B is shorthand for [A, B]; the attribute may itself hold dots.
	if long == "Fn::GetAtt" && n.Kind == Scalar {
		res, attr, found := strings.Cut(n.Value, ".")
		if !found {
			return nil, fmt.Errorf("line %d: !GetAtt %q has no attribute", y.Line, n.Value)
		}
		n = &Node{Kind: Seq, Line: y.Line, Items: []*Node{
			{Kind: Scalar, Value: res, Tag: "!!str", Line: y.Line},
			{Kind: Scalar, Value: attr, Tag: "!!str", Line: y.Line},
		}}
	}
	return &Node{Kind: Map, Line: y.Line, Keys: []string{long}, Vals: []*Node{n}}, nil
}

// SubVariables returns the ${…} variable names of an Fn::Sub string,
// skipping ${!Literal} escapes.
func SubVariables(s string) []string {
	var vars []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return vars
		}
		s = s[i+2:]
		j := strings.IndexByte(s, '}')
		if j < 0 {
			return vars
		}
		v := strings.TrimSpace(s[:j])
		s = s[j+1:]
		if strings.HasPrefix(v, "!") {
			continue
		}
		vars = append(vars, v)
	}
}

// Implies reports whether condition c being true makes condition d true,
// as far as can be seen without evaluating: c is d, or c is an Fn::And one
// of whose terms implies d.
func (t *Template) Implies(c, d string) bool {
	if c == d {
		return true
	}
	name, arg, ok := t.Conditions.Get(c).Intrinsic()
	if !ok || name != "Fn::And" {
		return false
	}
	for _, it := range arg.Items {
		if n, a, ok := it.Intrinsic(); ok && n == "Condition" && t.Implies(a.Str(), d) {
			return true
		}
	}
	return false
}
