package awsstack

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/letterboxmail/letterbox/infra/cfn"
)

// FunctionSpec is an AWS::Serverless::Function as the template configures it.
type FunctionSpec struct {
	ID       string
	Env      map[string]string
	MemoryMB int
	Timeout  time.Duration
	// LogFormat and LogLevel are LoggingConfig's LogFormat and
	// ApplicationLogLevel: Lambda passes them to the runtime as
	// AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL.
	LogFormat, LogLevel string
	Events              []SQSEventSpec
	// URLAuthType is FunctionUrlConfig's AuthType; "" without a URL.
	URLAuthType string
}

// SQSEventSpec is one SQS event source mapping.
type SQSEventSpec struct {
	Name           string
	QueueARN       string
	BatchSize      int
	Window         time.Duration
	ReportFailures bool
}

// QueueSpec is an AWS::SQS::Queue: its CreateQueue attributes.
type QueueSpec struct {
	ID    string
	Attrs map[string]string
}

// Function evaluates a function's properties with Globals.Function applied.
func (tp *Template) Function(id string) (*FunctionSpec, error) {
	res := tp.T.Resource(id)
	if res == nil || tp.T.ResourceType(id) != "AWS::Serverless::Function" {
		return nil, fmt.Errorf("%s: no AWS::Serverless::Function %s", tp.File, id)
	}
	props := res.Get("Properties")
	glob := tp.T.Globals.Path("Function")
	fs := &FunctionSpec{ID: id, Env: map[string]string{}, MemoryMB: 128, Timeout: 3 * time.Second}
	for _, src := range []*cfn.Node{glob, props} {
		vars := src.Path("Environment", "Variables")
		if vars == nil {
			continue
		}
		v, err := tp.Eval(vars)
		if err != nil {
			return nil, err
		}
		m, _ := v.(map[string]any)
		for k, val := range m {
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%s:%d: %s.Environment %s is not a string", tp.File, vars.Line, id, k)
			}
			fs.Env[k] = s
		}
	}
	for _, src := range []*cfn.Node{glob, props} {
		if n := src.Get("MemorySize"); n != nil {
			v, err := tp.Int(n)
			if err != nil {
				return nil, err
			}
			fs.MemoryMB = v
		}
		if n := src.Get("Timeout"); n != nil {
			v, err := tp.Int(n)
			if err != nil {
				return nil, err
			}
			fs.Timeout = time.Duration(v) * time.Second
		}
	}
	if lc := props.Get("LoggingConfig"); lc != nil {
		var err error
		if n := lc.Get("LogFormat"); n != nil {
			if fs.LogFormat, err = tp.String(n); err != nil {
				return nil, err
			}
		}
		if n := lc.Get("ApplicationLogLevel"); n != nil {
			if fs.LogLevel, err = tp.String(n); err != nil {
				return nil, err
			}
		}
	}
	if n := props.Path("FunctionUrlConfig", "AuthType"); n != nil {
		var err error
		if fs.URLAuthType, err = tp.String(n); err != nil {
			return nil, err
		}
	}
	evs := props.Get("Events")
	if evs != nil {
		for i, name := range evs.Keys {
			ev := evs.Vals[i]
			if ev.Get("Type").Str() != "SQS" {
				continue
			}
			p := ev.Get("Properties")
			spec := SQSEventSpec{Name: name, BatchSize: 10}
			var err error
			if spec.QueueARN, err = tp.String(p.Get("Queue")); err != nil {
				return nil, err
			}
			if n := p.Get("BatchSize"); n != nil {
				if spec.BatchSize, err = tp.Int(n); err != nil {
					return nil, err
				}
			}
			if n := p.Get("MaximumBatchingWindowInSeconds"); n != nil {
				w, err := tp.Int(n)
				if err != nil {
					return nil, err
				}
				spec.Window = time.Duration(w) * time.Second
			}
			for _, t := range p.Get("FunctionResponseTypes").Strings() {
				if t == "ReportBatchItemFailures" {
					spec.ReportFailures = true
				}
			}
			fs.Events = append(fs.Events, spec)
		}
	}
	return fs, nil
}

// Queue evaluates a queue's properties into CreateQueue attributes, as
// CloudFormation passes them (RedrivePolicy as JSON).
func (tp *Template) Queue(id string) (*QueueSpec, error) {
	props := tp.T.Resource(id).Get("Properties")
	v, err := tp.Eval(props)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	qs := &QueueSpec{ID: id, Attrs: map[string]string{}}
	for k, val := range m {
		switch k {
		case "QueueName", "Tags", "FifoQueue":
			continue
		case "RedrivePolicy":
			rp, _ := val.(map[string]any)
			n, _ := strconv.Atoi(fmt.Sprint(rp["maxReceiveCount"]))
			b, _ := json.Marshal(map[string]any{"deadLetterTargetArn": rp["deadLetterTargetArn"], "maxReceiveCount": n})
			qs.Attrs[k] = string(b)
		default:
			qs.Attrs[k] = fmt.Sprint(val)
		}
	}
	return qs, nil
}

// Queues returns the queues in creation order: a dead-letter queue before
// the queues that name it.
func (tp *Template) Queues() []string {
	ids := tp.T.ResourcesOfType("AWS::SQS::Queue")
	redrives := func(id string) bool {
		return tp.T.Resource(id).Path("Properties", "RedrivePolicy") != nil
	}
	sort.SliceStable(ids, func(i, j int) bool { return !redrives(ids[i]) && redrives(ids[j]) })
	return ids
}

// Notification is one of a bucket's QueueConfigurations.
type Notification struct {
	Event          string // e.g. s3:ObjectCreated:*
	QueueARN       string
	Prefix, Suffix string
}

// BucketNotifications evaluates a bucket's NotificationConfiguration.
func (tp *Template) BucketNotifications(id string) ([]Notification, error) {
	qc := tp.T.Resource(id).Path("Properties", "NotificationConfiguration", "QueueConfigurations")
	if qc == nil {
		return nil, nil
	}
	v, err := tp.Eval(qc)
	if err != nil {
		return nil, err
	}
	list, _ := v.([]any)
	var out []Notification
	for _, it := range list {
		m, _ := it.(map[string]any)
		n := Notification{}
		n.Event, _ = m["Event"].(string)
		n.QueueARN, _ = m["Queue"].(string)
		f, _ := m["Filter"].(map[string]any)
		key, _ := f["S3Key"].(map[string]any)
		rules, _ := key["Rules"].([]any)
		for _, r := range rules {
			rm, _ := r.(map[string]any)
			switch rm["Name"] {
			case "prefix":
				n.Prefix, _ = rm["Value"].(string)
			case "suffix":
				n.Suffix, _ = rm["Value"].(string)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// ContainerEnv evaluates the Environment of a task definition's container.
func (tp *Template) ContainerEnv(taskDef, container string) (map[string]string, error) {
	defs := tp.T.Resource(taskDef).Path("Properties", "ContainerDefinitions")
	if defs == nil {
		return nil, fmt.Errorf("%s: no ContainerDefinitions in %s", tp.File, taskDef)
	}
	for _, d := range defs.Items {
		if d.Get("Name").Str() != container {
			continue
		}
		v, err := tp.Eval(d.Get("Environment"))
		if err != nil {
			return nil, err
		}
		list, _ := v.([]any)
		env := map[string]string{}
		for _, it := range list {
			m, _ := it.(map[string]any)
			name, _ := m["Name"].(string)
			env[name] = fmt.Sprint(m["Value"])
		}
		return env, nil
	}
	return nil, fmt.Errorf("%s: no container %s in %s", tp.File, container, taskDef)
}
