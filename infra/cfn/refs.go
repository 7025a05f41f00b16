package cfn

import (
	"fmt"
	"sort"
	"strings"
)

// PseudoParameters are the names CloudFormation defines in every stack.
var PseudoParameters = map[string]bool{
	"AWS::AccountId":        true,
	"AWS::NotificationARNs": true,
	"AWS::NoValue":          true,
	"AWS::Partition":        true,
	"AWS::Region":           true,
	"AWS::StackId":          true,
	"AWS::StackName":        true,
	"AWS::URLSuffix":        true,
}

// Reference is one use of a name somewhere in the template.
type Reference struct {
	// Kind is Ref, GetAtt, Sub, Condition, FindInMap or DependsOn.
	Kind   string
	Target string
	// Attr is the attribute of a GetAtt (or ${A.B} in a Sub), or the
	// top-level key of a FindInMap when it is a literal.
	Attr string
	Line int
	// From names where the reference is: "Resources/X", "Outputs/Y",
	// "Conditions/Z", "Globals", "Rules/R".
	From string
	// scope holds the conditions known true where the reference sits (the
	// true branch of an Fn::If); "!C" means C is known false.
	scope []string
}

func (r Reference) String() string {
	s := r.Target
	if r.Attr != "" {
		s += "." + r.Attr
	}
	return fmt.Sprintf("line %d (%s): %s %s", r.Line, r.From, r.Kind, s)
}

// References returns every reference in the template, in source order.
func (t *Template) References() []Reference {
	var out []Reference
	w := func(n *Node, from string) { walkRefs(n, from, nil, &out) }
	for _, sec := range []string{"Conditions", "Rules"} {
		s := t.Root.Get(sec)
		if s == nil {
			continue
		}
		for i, name := range s.Keys {
			w(s.Vals[i], sec+"/"+name)
		}
	}
	if t.Globals != nil {
		w(t.Globals, "Globals")
	}
	for i, id := range t.Resources.Keys {
		r := t.Resources.Vals[i]
		from := "Resources/" + id
		if c := r.Get("Condition"); c != nil {
			out = append(out, Reference{Kind: "Condition", Target: c.Str(), Line: c.Line, From: from})
		}
		if d := r.Get("DependsOn"); d != nil {
			for _, name := range d.Strings() {
				out = append(out, Reference{Kind: "DependsOn", Target: name, Line: d.Line, From: from})
			}
		}
		for _, k := range []string{"Properties", "Metadata", "CreationPolicy", "UpdatePolicy"} {
			if v := r.Get(k); v != nil {
				w(v, from)
			}
		}
	}
	if t.Outputs != nil {
		for i, id := range t.Outputs.Keys {
			o := t.Outputs.Vals[i]
			from := "Outputs/" + id
			if c := o.Get("Condition"); c != nil {
				out = append(out, Reference{Kind: "Condition", Target: c.Str(), Line: c.Line, From: from})
			}
			for _, k := range []string{"Value", "Export", "Description"} {
				if v := o.Get(k); v != nil {
					w(v, from)
				}
			}
		}
	}
	return out
}

func walkRefs(n *Node, from string, scope []string, out *[]Reference) {
	if n == nil {
		return
	}
	add := func(kind, target, attr string, line int) {
		*out = append(*out, Reference{Kind: kind, Target: target, Attr: attr, Line: line, From: from, scope: scope})
	}
	if name, arg, ok := n.Intrinsic(); ok {
		switch name {
		case "Ref":
			if arg.Kind == Scalar {
				add("Ref", arg.Value, "", n.Line)
				return
			}
		case "Condition":
			if arg.Kind == Scalar {
				add("Condition", arg.Value, "", n.Line)
				return
			}
		case "Fn::GetAtt":
			switch {
			case arg.Kind == Seq && len(arg.Items) == 2:
				add("GetAtt", arg.Items[0].Str(), arg.Items[1].Str(), n.Line)
				walkRefs(arg.Items[1], from, scope, out)
				return
			case arg.Kind == Scalar:
				res, attr, _ := strings.Cut(arg.Value, ".")
				add("GetAtt", res, attr, n.Line)
				return
			}
		case "Fn::Sub":
			var text *Node
			locals := map[string]bool{}
			switch {
			case arg.Kind == Scalar:
				text = arg
			case arg.Kind == Seq && len(arg.Items) == 2:
				text = arg.Items[0]
				vars := arg.Items[1]
				for i, k := range vars.Keys {
					locals[k] = true
					walkRefs(vars.Vals[i], from, scope, out)
				}
			}
			for _, v := range SubVariables(text.Str()) {
				if locals[v] {
					continue
				}
				if res, attr, dotted := strings.Cut(v, "."); dotted {
					add("GetAtt", res, attr, n.Line)
				} else {
					add("Sub", v, "", n.Line)
				}
			}
			return
		case "Fn::If":
			if arg.Kind == Seq && len(arg.Items) == 3 {
				c := arg.Items[0].Str()
				add("Condition", c, "", n.Line)
				walkRefs(arg.Items[1], from, with(scope, c), out)
				walkRefs(arg.Items[2], from, with(scope, "!"+c), out)
				return
			}
		case "Fn::FindInMap":
			if arg.Kind == Seq && len(arg.Items) >= 3 {
				top := ""
				if arg.Items[1].Kind == Scalar {
					top = arg.Items[1].Value
				}
				add("FindInMap", arg.Items[0].Str(), top, n.Line)
				for _, it := range arg.Items[1:] {
					walkRefs(it, from, scope, out)
				}
				return
			}
		}
		walkRefs(arg, from, scope, out)
		return
	}
	switch n.Kind {
	case Seq:
		for _, it := range n.Items {
			walkRefs(it, from, scope, out)
		}
	case Map:
		for _, v := range n.Vals {
			walkRefs(v, from, scope, out)
		}
	}
}

func with(scope []string, c string) []string {
	s := make([]string, len(scope), len(scope)+1)
	copy(s, scope)
	return append(s, c)
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

// Options tune CheckReferences.
type Options struct {
	// Generated are logical ids that a transform (SAM) creates and that may
	// be referenced although the template does not define them.
	Generated []string
}

// CheckReferences reports every reference to a name that is not defined,
// every resource referenced from a place that may exist when the resource
// does not (outside an Fn::If or resource/output Condition implying the
// resource's own), and parameters, conditions and mappings never used.
func (t *Template) CheckReferences(opt Options) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	generated := map[string]bool{}
	for _, g := range opt.Generated {
		generated[g] = true
	}
	used := map[string]bool{}
	for _, r := range t.References() {
		switch r.Kind {
		case "Ref", "Sub":
			used["param:"+r.Target] = true
			if t.Parameters.Get(r.Target) != nil || PseudoParameters[r.Target] || generated[r.Target] {
				continue
			}
			if t.Resource(r.Target) == nil {
				fail("%v: no parameter, resource or pseudo parameter of that name", r)
				continue
			}
			errs = append(errs, t.checkGuard(r)...)
		case "GetAtt", "DependsOn":
			if generated[r.Target] {
				continue
			}
			if t.Resource(r.Target) == nil {
				fail("%v: no resource of that name", r)
				continue
			}
			errs = append(errs, t.checkGuard(r)...)
		case "Condition":
			used["cond:"+r.Target] = true
			if t.Conditions.Get(r.Target) == nil {
				fail("%v: no condition of that name", r)
			}
		case "FindInMap":
			used["map:"+r.Target] = true
			m := t.Mappings.Get(r.Target)
			if m == nil {
				fail("%v: no mapping of that name", r)
			} else if r.Attr != "" && m.Get(r.Attr) == nil {
				fail("%v: mapping has no key %q", r, r.Attr)
			}
		}
	}
	for _, sec := range []struct {
		node         *Node
		kind, prefix string
	}{
		{t.Parameters, "parameter", "param:"},
		{t.Conditions, "condition", "cond:"},
		{t.Mappings, "mapping", "map:"},
	} {
		if sec.node == nil {
			continue
		}
		for i, name := range sec.node.Keys {
			if !used[sec.prefix+name] {
				fail("line %d: %s %s is never used", sec.node.Vals[i].Line, sec.kind, name)
			}
		}
	}
	return errs
}

// checkGuard reports a reference to a conditional resource from a place
// that can exist without it.
func (t *Template) checkGuard(r Reference) []error {
	want := t.Resource(r.Target).Get("Condition").Str()
	if want == "" {
		return nil
	}
	var have []string
	sec, id, _ := strings.Cut(r.From, "/")
	switch sec {
	case "Resources":
		have = append(have, t.Resource(id).Get("Condition").Str())
	case "Outputs":
		have = append(have, t.Outputs.Get(id).Get("Condition").Str())
	}
	have = append(have, r.scope...)
	for _, c := range have {
		if c != "" && t.Implies(c, want) {
			return nil
		}
	}
	return []error{fmt.Errorf("%v: %s exists only when %s, but this place does not depend on it (guard it with Condition or !If)", r, r.Target, want)}
}

// Implies reports whether condition c being true makes condition d true,
// as far as can be seen without evaluating: c is d, or c is an Fn::And one
// of whose terms implies d.
func (t *Template) Implies(c, d string) bool {
	if strings.HasPrefix(c, "!") {
		return false
	}
	if c == d {
		return true
	}
	def := t.Conditions.Get(c)
	name, arg, ok := def.Intrinsic()
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

// Names returns a mapping's keys, sorted.
func Names(n *Node) []string {
	if n == nil {
		return nil
	}
	k := append([]string(nil), n.Keys...)
	sort.Strings(k)
	return k
}
