package emf

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestEmit(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, "letterbox")
	w.now = func() time.Time { return time.UnixMilli(1733490000000) }
	err := w.Emit([]Dim{{"Function", "deliver"}, {"Kind", "webhook"}}, map[string]string{"trace_id": "abc"},
		Metric{"DeliveryAttempts", Count, 1}, Metric{"DeliveryLatency", Milliseconds, 12.5})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"DeliveryAttempts":1,"DeliveryLatency":12.5,"Function":"deliver","Kind":"webhook",` +
		`"_aws":{"Timestamp":1733490000000,"CloudWatchMetrics":[{"Namespace":"letterbox","Dimensions":[["Function","Kind"]],` +
		`"Metrics":[{"Name":"DeliveryAttempts","Unit":"Count"},{"Name":"DeliveryLatency","Unit":"Milliseconds"}]}]},"trace_id":"abc"}` + "\n"
	if buf.String() != want {
		t.Fatalf("got  %s\nwant %s", buf.String(), want)
	}
	// Every dimension and metric a directive names is a member of the line
	// (the specification's validity rule).
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	d := line["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
	for _, n := range d["Dimensions"].([]any)[0].([]any) {
		if _, ok := line[n.(string)]; !ok {
			t.Errorf("dimension %s has no member", n)
		}
	}
	for _, m := range d["Metrics"].([]any) {
		if _, ok := line[m.(map[string]any)["Name"].(string)].(float64); !ok {
			t.Errorf("metric %v has no numeric member", m)
		}
	}
	var nilW *Writer
	if err := nilW.Emit(nil, nil, Metric{"X", Count, 1}); err != nil {
		t.Fatal(err)
	}
}

func TestEmitSets(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, "letterbox/stack")
	w.now = func() time.Time { return time.UnixMilli(1) }
	w.EmitSets([]Dim{{"Function", "deliver"}, {"Kind", "sqs"}, {"Outcome", "retry"}}, [][]string{{"Function", "Outcome"}}, nil,
		Metric{"DeliveryAttempts", Count, 1})
	if !bytes.Contains(buf.Bytes(), []byte(`"Dimensions":[["Function","Kind","Outcome"],["Function","Outcome"]]`)) {
		t.Fatalf("line %s", buf.String())
	}
}
