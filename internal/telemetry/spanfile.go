package telemetry

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// SpanFileName is the dev file exporter's file, in a file store's
// directory (beside store.db); `letterbox trace` reads it.
const SpanFileName = "traces.jsonl"

// maxSpanFile is the size at which the span file is rotated to NAME.1
// (the previous NAME.1 is replaced): dev keeps the spans of the last
// 64–128 MiB, tens of thousands of messages.
const maxSpanFile = 64 << 20

// Span is one span as the dev file exporter writes it: one JSON object a
// line.
type Span struct {
	TraceID  string         `json:"trace_id"`
	SpanID   string         `json:"span_id"`
	ParentID string         `json:"parent_span_id,omitempty"`
	Name     string         `json:"name"`
	Kind     string         `json:"kind,omitempty"`
	Service  string         `json:"service,omitempty"`
	Start    time.Time      `json:"start"`
	End      time.Time      `json:"end"`
	Status   string         `json:"status,omitempty"` // "error" or ""
	Message  string         `json:"status_message,omitempty"`
	Attrs    map[string]any `json:"attributes,omitempty"`
	Links    []Link         `json:"links,omitempty"`
}

// Link is a span link: the span (of another trace, or of this one) a
// span follows from.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// SpanFile is a span exporter that appends JSON lines to a file.
type SpanFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenSpanFile opens (creating) the span file at path for appending.
func OpenSpanFile(path string) (*SpanFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("telemetry: span file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("telemetry: span file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("telemetry: span file: %w", err)
	}
	return &SpanFile{path: path, f: f, size: st.Size()}, nil
}

// ExportSpans appends spans, one line each, in one write.
func (e *SpanFile) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	var buf []byte
	for _, s := range spans {
		b, err := json.Marshal(fromSDK(s))
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return errors.New("telemetry: span file closed")
	}
	if e.size+int64(len(buf)) > maxSpanFile {
		if err := e.rotate(); err != nil {
			return err
		}
	}
	n, err := e.f.Write(buf)
	e.size += int64(n)
	return err
}

func (e *SpanFile) rotate() error {
	e.f.Close()
	e.f = nil
	if err := os.Rename(e.path, e.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("telemetry: rotate span file: %w", err)
	}
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("telemetry: span file: %w", err)
	}
	e.f, e.size = f, 0
	return nil
}

// Shutdown closes the file.
func (e *SpanFile) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := e.f.Close()
	e.f = nil
	return err
}

func fromSDK(s sdktrace.ReadOnlySpan) Span {
	out := Span{
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Kind:    s.SpanKind().String(),
		Start:   s.StartTime().UTC(),
		End:     s.EndTime().UTC(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentID = p.SpanID().String()
	}
	if s.Status().Code == codes.Error {
		out.Status, out.Message = "error", s.Status().Description
	}
	if r := s.Resource(); r != nil {
		if v, ok := r.Set().Value("service.name"); ok {
			out.Service = v.AsString()
		}
	}
	if as := s.Attributes(); len(as) > 0 {
		out.Attrs = make(map[string]any, len(as))
		for _, a := range as {
			out.Attrs[string(a.Key)] = attrValue(a.Value)
		}
	}
	for _, l := range s.Links() {
		out.Links = append(out.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	return out
}

func attrValue(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return v.AsFloat64()
	case attribute.STRING:
		return v.AsString()
	}
	return v.String()
}

// ReadSpans reads a span file (and its rotated predecessor NAME.1, first),
// calling fn for each span. A missing file is no error; a line that is not
// a span (a torn last line after a crash) is skipped.
func ReadSpans(path string, fn func(Span)) error {
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = readSpans(f, fn)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func readSpans(r io.Reader, fn func(Span)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var s Span
		if json.Unmarshal(sc.Bytes(), &s) != nil || s.SpanID == "" {
			continue
		}
		fn(s)
	}
	return sc.Err()
}
