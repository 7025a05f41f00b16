package routing

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError is a problem in a routes file, located by file, line and
// field path (e.g. routes[2].actions[0].webhook.url).
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// ConfigErrors is every problem found in one file.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// decoder decodes YAML nodes into structs strictly: unknown keys, wrong
// kinds and bad scalars become ConfigErrors naming the line and field path.
type decoder struct {
	file string
	errs ConfigErrors
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Duration is a Go duration string in YAML ("30s", "1h").
type Duration time.Duration

// ByteSize is a size in YAML: a number of bytes or "10KB", "25MiB", "1GB".
type ByteSize int64

var (
	durationType = reflect.TypeOf(Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
	nodeType     = reflect.TypeOf(yaml.Node{})
)

// Position is embedded in config structs to receive their line number.
type Position struct {
	// Line is where the element starts in its file.
	Line int `yaml:"-"`
}

var positionType = reflect.TypeOf(Position{})

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	case reflect.Struct:
		if v.Type() == nodeType {
			v.Set(reflect.ValueOf(*n))
			return
		}
		d.decodeStruct(n, v, path)
		return
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			// A single value where a list is expected is a list of one.
			if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String && n.Tag != "!!null" {
				v.Set(reflect.MakeSlice(v.Type(), 1, 1))
				d.decode(n, v.Index(0), path)
				return
			}
			d.errorf(n, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
		return
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "must be a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, path+"."+k.Value)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be a single value, not a %s", kindName(n.Kind))
		return
	}
	switch v.Type() {
	case durationType:
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.errorf(n, path, "%q is not a duration (use Go syntax such as 30s, 5m, 1h)", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	case byteSizeType:
		size, err := parseByteSize(n.Value)
		if err != nil {
			d.errorf(n, path, "%v", err)
			return
		}
		v.SetInt(size)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Tag == "!!null" {
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			d.errorf(n, path, "%q must be true or false", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Float64:
		// YAML 1.2 core schema: an integer or a float, finite.
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || (n.Tag != "!!int" && n.Tag != "!!float") || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, path, "%q must be a number (e.g. 6 or 7.5)", n.Value)
			return
		}
		v.SetFloat(f)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			d.errorf(n, path, "%q must be a whole number", n.Value)
			return
		}
		v.SetInt(i)
	default:
		d.errorf(n, path, "unsupported value")
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return
		}
		d.errorf(n, path, "must be a mapping of keys to values")
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type == positionType {
			v.Field(i).Set(reflect.ValueOf(Position{Line: n.Line}))
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
		known = append(known, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := k.Value
		if path != "" {
			fp = path + "." + k.Value
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, fp, "unknown field (known fields: %s)", strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, fp, "field appears twice")
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), fp)
	}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	default:
		return "value"
	}
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit: 10KB, 25MiB, 1GB)", s)
	}
	return n * mult, nil
}
