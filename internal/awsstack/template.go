package awsstack

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/letterboxmail/letterbox/infra/cfn"
)

// Pseudo parameters of the stand-in stack.
const (
	AccountID = "123456789012"
	Region    = "us-east-1"
	StackName = "letterbox"
	StackID   = "arn:aws:cloudformation:us-east-1:123456789012:stack/letterbox/1a2b3c4d-5e6f-7a8b-9c0d-112233445566"
)

// noValue is what AWS::NoValue evaluates to: the key or item is dropped.
type noValue struct{}

// Template is template.yaml evaluated as CloudFormation would for one set
// of parameters: parameters at their defaults unless overridden, conditions
// decided, and resources' Ref and Fn::GetAtt answered by the stand-ins
// (Refs and Attrs, filled in as the stand-ins start). infra/cfn reads the
// YAML; this evaluates it.
type Template struct {
	T      *cfn.Template
	File   string
	Params map[string]string
	// Refs answers Ref to a resource; Attrs answers Fn::GetAtt, keyed
	// "LogicalId.Attribute".
	Refs  map[string]string
	Attrs map[string]string
}

// LoadTemplate reads file with parameters at their defaults, overridden by
// params. A parameter with neither is refused, naming its line.
func LoadTemplate(file string, params map[string]string) (*Template, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	t, err := cfn.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	tp := &Template{T: t, File: file, Params: map[string]string{}, Refs: map[string]string{}, Attrs: map[string]string{}}
	for i, name := range t.Parameters.Keys {
		p := t.Parameters.Vals[i]
		if v, ok := params[name]; ok {
			tp.Params[name] = v
			continue
		}
		d := p.Get("Default")
		if d == nil {
			return nil, fmt.Errorf("%s:%d: parameter %s has no default; give it a value", file, p.Line, name)
		}
		tp.Params[name] = d.Str()
	}
	for name := range params {
		if t.Parameters.Get(name) == nil {
			return nil, fmt.Errorf("%s: no parameter %s", file, name)
		}
	}
	return tp, nil
}

// Eval evaluates a node: strings, []any, map[string]any, or noValue.
func (tp *Template) Eval(n *cfn.Node) (any, error) {
	if n == nil {
		return noValue{}, nil
	}
	if name, arg, ok := n.Intrinsic(); ok {
		v, err := tp.intrinsic(name, arg)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", tp.File, n.Line, name, err)
		}
		return v, nil
	}
	switch n.Kind {
	case cfn.Scalar:
		return n.Value, nil
	case cfn.Seq:
		var out []any
		for _, it := range n.Items {
			v, err := tp.Eval(it)
			if err != nil {
				return nil, err
			}
			if _, skip := v.(noValue); !skip {
				out = append(out, v)
			}
		}
		return out, nil
	default:
		out := map[string]any{}
		for i, k := range n.Keys {
			v, err := tp.Eval(n.Vals[i])
			if err != nil {
				return nil, err
			}
			if _, skip := v.(noValue); !skip {
				out[k] = v
			}
		}
		return out, nil
	}
}

// String evaluates n to a string.
func (tp *Template) String(n *cfn.Node) (string, error) {
	v, err := tp.Eval(n)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s:%d: want a string, have %T", tp.File, n.Line, v)
	}
	return s, nil
}

// Int evaluates n to an integer.
func (tp *Template) Int(n *cfn.Node) (int, error) {
	s, err := tp.String(n)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s:%d: want an integer: %w", tp.File, n.Line, err)
	}
	return v, nil
}

// Condition decides a named condition.
func (tp *Template) Condition(name string) (bool, error) {
	c := tp.T.Conditions.Get(name)
	if c == nil {
		return false, fmt.Errorf("%s: no condition %s", tp.File, name)
	}
	return tp.cond(c)
}

func (tp *Template) cond(n *cfn.Node) (bool, error) {
	name, arg, ok := n.Intrinsic()
	if !ok {
		return false, fmt.Errorf("%s:%d: not a condition", tp.File, n.Line)
	}
	switch name {
	case "Condition":
		return tp.Condition(arg.Str())
	case "Fn::Not":
		if len(arg.Items) != 1 {
			return false, fmt.Errorf("%s:%d: Fn::Not wants one item", tp.File, n.Line)
		}
		v, err := tp.cond(arg.Items[0])
		return !v, err
	case "Fn::And", "Fn::Or":
		and := name == "Fn::And"
		for _, it := range arg.Items {
			v, err := tp.cond(it)
			if err != nil {
				return false, err
			}
			if v != and {
				return v, nil
			}
		}
		return and, nil
	case "Fn::Equals":
		if len(arg.Items) != 2 {
			return false, fmt.Errorf("%s:%d: Fn::Equals wants two items", tp.File, n.Line)
		}
		a, err := tp.Eval(arg.Items[0])
		if err != nil {
			return false, err
		}
		b, err := tp.Eval(arg.Items[1])
		if err != nil {
			return false, err
		}
		return fmt.Sprint(a) == fmt.Sprint(b), nil
	}
	return false, fmt.Errorf("%s:%d: %s is not a condition function", tp.File, n.Line, name)
}

func (tp *Template) ref(name string) (any, error) {
	switch name {
	case "AWS::NoValue":
		return noValue{}, nil
	case "AWS::AccountId":
		return AccountID, nil
	case "AWS::Region":
		return Region, nil
	case "AWS::StackName":
		return StackName, nil
	case "AWS::StackId":
		return StackID, nil
	case "AWS::Partition":
		return "aws", nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	}
	if p := tp.T.Parameters.Get(name); p != nil {
		v := tp.Params[name]
		if strings.HasPrefix(p.Get("Type").Str(), "CommaDelimitedList") || strings.HasPrefix(p.Get("Type").Str(), "List<") {
			var out []any
			for _, s := range strings.Split(v, ",") {
				out = append(out, s)
			}
			return out, nil
		}
		return v, nil
	}
	if v, ok := tp.Refs[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("!Ref %s: the stand-in stack has no value for it", name)
}

func (tp *Template) intrinsic(name string, arg *cfn.Node) (any, error) {
	switch name {
	case "Ref":
		return tp.ref(arg.Str())
	case "Fn::GetAtt":
		key := strings.Join(arg.Strings(), ".")
		if v, ok := tp.Attrs[key]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("%s: the stand-in stack has no value for it", key)
	case "Fn::If":
		if len(arg.Items) != 3 {
			return nil, fmt.Errorf("want [condition, then, else]")
		}
		c, err := tp.Condition(arg.Items[0].Str())
		if err != nil {
			return nil, err
		}
		if c {
			return tp.Eval(arg.Items[1])
		}
		return tp.Eval(arg.Items[2])
	case "Fn::Sub":
		tmpl, vars := arg, map[string]any{}
		if arg.Kind == cfn.Seq {
			if len(arg.Items) != 2 {
				return nil, fmt.Errorf("want [string, variables]")
			}
			tmpl = arg.Items[0]
			m := arg.Items[1]
			for i, k := range m.Keys {
				v, err := tp.Eval(m.Vals[i])
				if err != nil {
					return nil, err
				}
				vars[k] = v
			}
		}
		return tp.sub(tmpl.Str(), vars)
	case "Fn::Select":
		if len(arg.Items) != 2 {
			return nil, fmt.Errorf("want [index, list]")
		}
		i, err := tp.Int(arg.Items[0])
		if err != nil {
			return nil, err
		}
		l, err := tp.Eval(arg.Items[1])
		if err != nil {
			return nil, err
		}
		list, ok := l.([]any)
		if !ok || i < 0 || i >= len(list) {
			return nil, fmt.Errorf("index %d out of %v", i, l)
		}
		return list[i], nil
	case "Fn::Split":
		if len(arg.Items) != 2 {
			return nil, fmt.Errorf("want [delimiter, string]")
		}
		s, err := tp.String(arg.Items[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(s, arg.Items[0].Str()) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Join":
		if len(arg.Items) != 2 {
			return nil, fmt.Errorf("want [delimiter, list]")
		}
		l, err := tp.Eval(arg.Items[1])
		if err != nil {
			return nil, err
		}
		list, _ := l.([]any)
		parts := make([]string, len(list))
		for i, v := range list {
			parts[i] = fmt.Sprint(v)
		}
		return strings.Join(parts, arg.Items[0].Str()), nil
	case "Fn::FindInMap":
		if len(arg.Items) != 3 {
			return nil, fmt.Errorf("want [map, key, key]")
		}
		var keys [3]string
		for i, it := range arg.Items {
			s, err := tp.String(it)
			if err != nil {
				return nil, err
			}
			keys[i] = s
		}
		v := tp.T.Mappings.Path(keys[:]...)
		if v == nil {
			return nil, fmt.Errorf("no mapping %v", keys)
		}
		return tp.Eval(v)
	}
	return nil, fmt.Errorf("not supported by the stand-in stack")
}

// sub expands ${Name}, ${Res.Attr} and ${!Literal}.
func (tp *Template) sub(s string, vars map[string]any) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s)
		}
		name := s[i+2 : i+j]
		s = s[i+j+1:]
		if strings.HasPrefix(name, "!") {
			b.WriteString("${" + name[1:] + "}")
			continue
		}
		var v any
		var err error
		if vv, ok := vars[name]; ok {
			v = vv
		} else if res, attr, dotted := strings.Cut(name, "."); dotted && !strings.HasPrefix(name, "AWS::") {
			var ok bool
			if v, ok = tp.Attrs[res+"."+attr]; !ok {
				return "", fmt.Errorf("${%s}: the stand-in stack has no value for it", name)
			}
		} else if v, err = tp.ref(name); err != nil {
			return "", err
		}
		str, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("${%s} is not a string", name)
		}
		b.WriteString(str)
	}
}
