package cfn

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Spec is the AWS resource specification as shipped by the npm package
// @aws-cdk/aws-service-spec: a gzipped JSON database (db.json.gz) whose
// schema.resource entities are CloudFormation resource types with their
// properties and attributes, and whose schema.typeDefinition entities are
// the property types they refer to by $id.
type Spec struct {
	resources map[string]*specResource
	types     map[string]*specTypeDef
}

type specResource struct {
	ID                 string                     `json:"$id"`
	CloudFormationType string                     `json:"cloudFormationType"`
	Properties         map[string]specProp        `json:"properties"`
	Attributes         map[string]json.RawMessage `json:"attributes"`
}

type specTypeDef struct {
	ID         string              `json:"$id"`
	Name       string              `json:"name"`
	Properties map[string]specProp `json:"properties"`
}

type specProp struct {
	Type          specType   `json:"type"`
	PreviousTypes []specType `json:"previousTypes"`
	Required      bool       `json:"required"`
}

type specType struct {
	Type      string     `json:"type"`
	Element   *specType  `json:"element"`
	Types     []specType `json:"types"`
	Reference *struct {
		Ref string `json:"$ref"`
	} `json:"reference"`
}

// LoadSpec reads db.json.gz.
func LoadSpec(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var db struct {
		Schema struct {
			Resource struct {
				Entities []*specResource `json:"entities"`
			} `json:"resource"`
			TypeDefinition struct {
				Entities []*specTypeDef `json:"entities"`
			} `json:"typeDefinition"`
		} `json:"schema"`
	}
	if err := json.NewDecoder(zr).Decode(&db); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Spec{resources: map[string]*specResource{}, types: map[string]*specTypeDef{}}
	for _, r := range db.Schema.Resource.Entities {
		s.resources[r.CloudFormationType] = r
	}
	for _, d := range db.Schema.TypeDefinition.Entities {
		s.types[d.ID] = d
	}
	if len(s.resources) == 0 {
		return nil, fmt.Errorf("%s: no resource types in the database", path)
	}
	return s, nil
}

// NumResourceTypes returns how many resource types the specification knows.
func (s *Spec) NumResourceTypes() int { return len(s.resources) }

// HasType reports whether typ is a known CloudFormation resource type.
func (s *Spec) HasType(typ string) bool { return s.resources[typ] != nil }

// HasAttribute reports whether a resource type has a Fn::GetAtt attribute.
func (s *Spec) HasAttribute(typ, attr string) bool {
	r := s.resources[typ]
	if r == nil {
		return false
	}
	_, ok := r.Attributes[attr]
	return ok
}

// resourceKeys are the keys a resource entry may have (CloudFormation
// template anatomy, "Resources" section).
var resourceKeys = map[string]bool{
	"Type": true, "Properties": true, "DependsOn": true, "Condition": true,
	"DeletionPolicy": true, "UpdateReplacePolicy": true, "Metadata": true,
	"CreationPolicy": true, "UpdatePolicy": true,
	// SAM's resource attribute, removed by the transform.
	"IgnoreGlobals": true,
}

// Validate checks every resource whose type is not AWS::Serverless::*
// (SAM's, which the transform replaces) or Custom::*: that the type exists,
// that every property name exists at every nesting level, that required
// properties are present, that values have the right shape (object, list,
// scalar) and that literal numbers and booleans parse, and that every
// Fn::GetAtt names an attribute of its resource's type. Values computed by
// intrinsic functions are not evaluated; both branches of Fn::If are
// checked.
func (s *Spec) Validate(t *Template) []error {
	var errs []error
	for i, id := range t.Resources.Keys {
		r := t.Resources.Vals[i]
		for _, k := range r.Keys {
			if !resourceKeys[k] {
				errs = append(errs, fmt.Errorf("line %d: Resources/%s: unknown resource key %q", r.Line, id, k))
			}
		}
		typ := r.Get("Type").Str()
		if strings.HasPrefix(typ, "AWS::Serverless::") || strings.HasPrefix(typ, "Custom::") {
			continue
		}
		spec := s.resources[typ]
		if spec == nil {
			errs = append(errs, fmt.Errorf("line %d: Resources/%s: unknown resource type %q", r.Line, id, typ))
			continue
		}
		props := r.Get("Properties")
		errs = append(errs, s.checkProps("Resources/"+id+"/Properties", props, spec.Properties, r.Line)...)
	}
	for _, ref := range t.References() {
		if ref.Kind != "GetAtt" {
			continue
		}
		typ := t.ResourceType(ref.Target)
		if typ == "" || strings.HasPrefix(typ, "AWS::Serverless::") || strings.HasPrefix(typ, "Custom::") {
			continue
		}
		if !s.HasAttribute(typ, ref.Attr) {
			errs = append(errs, fmt.Errorf("%v: %s has no attribute %q (has %s)", ref, typ, ref.Attr, strings.Join(s.attributes(typ), ", ")))
		}
	}
	return errs
}

func (s *Spec) attributes(typ string) []string {
	var a []string
	for k := range s.resources[typ].Attributes {
		a = append(a, k)
	}
	sort.Strings(a)
	return a
}

func (s *Spec) checkProps(path string, n *Node, props map[string]specProp, line int) []error {
	var errs []error
	if n != nil {
		if name, arg, ok := n.Intrinsic(); ok {
			if name == "Fn::If" && arg.Kind == Seq && len(arg.Items) == 3 {
				for b, it := range arg.Items[1:] {
					if !it.IsNoValue() {
						errs = append(errs, s.checkProps(fmt.Sprintf("%s[if%d]", path, b+1), it, props, line)...)
					}
				}
			}
			return errs
		}
		if n.Kind != Map {
			return []error{fmt.Errorf("line %d: %s: want an object", n.Line, path)}
		}
		line = n.Line
		for i, k := range n.Keys {
			p, ok := props[k]
			if !ok {
				errs = append(errs, fmt.Errorf("line %d: %s: unknown property %q (known: %s)", n.Vals[i].Line, path, k, strings.Join(sortedKeys(props), ", ")))
				continue
			}
			v := n.Vals[i]
			if v.IsNoValue() {
				continue
			}
			perrs := s.checkValue(path+"/"+k, v, p.Type)
			for _, prev := range p.PreviousTypes {
				if len(perrs) == 0 {
					break
				}
				if len(s.checkValue(path+"/"+k, v, prev)) == 0 {
					perrs = nil
				}
			}
			errs = append(errs, perrs...)
		}
	}
	for _, k := range sortedKeys(props) {
		if props[k].Required && n.Get(k) == nil {
			errs = append(errs, fmt.Errorf("line %d: %s: required property %q is missing", line, path, k))
		}
	}
	return errs
}

func (s *Spec) checkValue(path string, n *Node, t specType) []error {
	if name, arg, ok := n.Intrinsic(); ok {
		if name == "Fn::If" && arg.Kind == Seq && len(arg.Items) == 3 {
			var errs []error
			for b, it := range arg.Items[1:] {
				if !it.IsNoValue() {
					errs = append(errs, s.checkValue(fmt.Sprintf("%s[if%d]", path, b+1), it, t)...)
				}
			}
			return errs
		}
		return nil
	}
	bad := func(want string) []error {
		return []error{fmt.Errorf("line %d: %s: want %s", n.Line, path, want)}
	}
	switch t.Type {
	case "ref":
		if t.Reference == nil || s.types[t.Reference.Ref] == nil {
			return nil
		}
		return s.checkProps(path, n, s.types[t.Reference.Ref].Properties, n.Line)
	case "array":
		if n.Kind != Seq {
			return bad("a list")
		}
		var errs []error
		for i, it := range n.Items {
			if t.Element != nil && !it.IsNoValue() {
				errs = append(errs, s.checkValue(fmt.Sprintf("%s[%d]", path, i), it, *t.Element)...)
			}
		}
		return errs
	case "map":
		if n.Kind != Map {
			return bad("an object")
		}
		var errs []error
		for i, k := range n.Keys {
			if t.Element != nil {
				errs = append(errs, s.checkValue(path+"/"+k, n.Vals[i], *t.Element)...)
			}
		}
		return errs
	case "tag":
		return s.checkProps(path, n, map[string]specProp{
			"Key":   {Type: specType{Type: "string"}, Required: true},
			"Value": {Type: specType{Type: "string"}, Required: true},
		}, n.Line)
	case "json":
		return nil
	case "union":
		var first []error
		for i, alt := range t.Types {
			errs := s.checkValue(path, n, alt)
			if len(errs) == 0 {
				return nil
			}
			if i == 0 {
				first = errs
			}
		}
		return first
	case "string", "date-time":
		if n.Kind != Scalar {
			return bad("a string")
		}
	case "integer":
		if n.Kind != Scalar {
			return bad("an integer")
		}
		if _, err := strconv.ParseInt(strings.TrimSpace(n.Value), 10, 64); err != nil {
			return bad(fmt.Sprintf("an integer, not %q", n.Value))
		}
	case "number":
		if n.Kind != Scalar {
			return bad("a number")
		}
		if _, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err != nil {
			return bad(fmt.Sprintf("a number, not %q", n.Value))
		}
	case "boolean":
		if n.Kind != Scalar {
			return bad("a boolean")
		}
		if v := strings.ToLower(n.Value); v != "true" && v != "false" {
			return bad(fmt.Sprintf("true or false, not %q", n.Value))
		}
	}
	return nil
}

func sortedKeys(m map[string]specProp) []string {
	k := make([]string, 0, len(m))
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	return k
}
