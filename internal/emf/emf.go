// Package emf writes CloudWatch Embedded Metric Format lines: metrics as
// structured log events that CloudWatch Logs turns into metrics with no
// API call from the function (Amazon CloudWatch User Guide, "Specification:
// Embedded metric format").
//
// One line is one JSON object:
//
//	{"_aws":{"Timestamp":1733490000000,"CloudWatchMetrics":[{"Namespace":"letterbox",
//	  "Dimensions":[["Function","Kind","Outcome"]],"Metrics":[{"Name":"DeliveryAttempts","Unit":"Count"}]}]},
//	 "Function":"deliver","Kind":"webhook","Outcome":"delivered","DeliveryAttempts":1,"trace_id":"…"}
//
// Dimension values and metric values are top-level members; other members
// (trace_id, message_id) are properties: searchable in Logs Insights, not
// metrics.
package emf

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Units used by letterbox (the specification's StandardUnit values).
const (
	Count        = "Count"
	Milliseconds = "Milliseconds"
	Bytes        = "Bytes"
)

// Metric is one value.
type Metric struct {
	Name  string
	Unit  string
	Value float64
}

// Dim is a dimension: name and value.
type Dim struct{ Name, Value string }

// Writer writes EMF lines to W, one Write per line. A nil *Writer writes
// nothing.
type Writer struct {
	Namespace string
	mu        sync.Mutex
	w         io.Writer
	now       func() time.Time
}

// New returns a Writer of namespace to w (os.Stdout in a Lambda function).
func New(w io.Writer, namespace string) *Writer {
	return &Writer{Namespace: namespace, w: w, now: time.Now}
}

type metricDef struct {
	Name string `json:"Name"`
	Unit string `json:"Unit,omitempty"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type meta struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

// Emit writes one line with metrics under one dimension set (all of
// dims), plus properties (nil for none). Members are written in a stable
// order.
func (w *Writer) Emit(dims []Dim, props map[string]string, metrics ...Metric) error {
	return w.EmitSets(dims, nil, props, metrics...)
}

// EmitSets is Emit with more dimension sets: the full set of dims, then
// each of rollups (names among dims), so that one line gives the metric
// both per kind and in total, e.g. [Function Kind Outcome] and
// [Function Outcome].
func (w *Writer) EmitSets(dims []Dim, rollups [][]string, props map[string]string, metrics ...Metric) error {
	if w == nil || len(metrics) == 0 {
		return nil
	}
	d := directive{Namespace: w.Namespace, Dimensions: [][]string{{}}}
	line := map[string]any{}
	for k, v := range props {
		line[k] = v
	}
	for _, dm := range dims {
		d.Dimensions[0] = append(d.Dimensions[0], dm.Name)
		line[dm.Name] = dm.Value
	}
	d.Dimensions = append(d.Dimensions, rollups...)
	for _, m := range metrics {
		d.Metrics = append(d.Metrics, metricDef{Name: m.Name, Unit: m.Unit})
		line[m.Name] = m.Value
	}
	line["_aws"] = meta{Timestamp: w.now().UnixMilli(), CloudWatchMetrics: []directive{d}}
	b, err := json.Marshal(line) // maps marshal with sorted keys
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.w.Write(b)
	return err
}
