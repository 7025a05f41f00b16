package testenv

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is a real OTLP/HTTP trace endpoint (POST /v1/traces,
// binary protobuf, the OTLP specification's default encoding) that keeps
// every span it is sent. Point OTEL_EXPORTER_OTLP_ENDPOINT at URL.
type OTLPReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []Span
}

// Span is a received span with its resource's service.name, ids in hex.
type Span struct {
	Service                   string
	TraceID, SpanID, ParentID string
	Links                     []string // linked span ids
	*tracepb.Span
}

// StartOTLP starts a receiver, closed when the test ends.
func StartOTLP(tb testing.TB) *OTLPReceiver {
	r := &OTLPReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		var ex coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &ex)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range ex.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					sp := Span{Service: service, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						ParentID: hex.EncodeToString(s.ParentSpanId), Span: s}
					for _, l := range s.Links {
						sp.Links = append(sp.Links, hex.EncodeToString(l.SpanId))
					}
					r.spans = append(r.spans, sp)
				}
			}
		}
		r.mu.Unlock()
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Spans returns the spans received so far.
func (r *OTLPReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

func (s Span) attr(key string) *commonpb.AnyValue {
	for _, a := range s.GetAttributes() {
		if a.Key == key {
			return a.Value
		}
	}
	return nil
}

// Str, Int and Bool return an attribute's value (zero when absent).
func (s Span) Str(key string) string { return s.attr(key).GetStringValue() }
func (s Span) Int(key string) int64  { return s.attr(key).GetIntValue() }
func (s Span) Bool(key string) bool  { return s.attr(key).GetBoolValue() }
