package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

func init() {
	commands["trace"] = command{summary: "print the trace of a message as a tree with durations (trace --store URL ID)", run: runTrace}
}

func runTrace(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	storeURL := fs.String("store", envOr("LETTERBOX_STORE", "file://.letterbox"), "store `URL` (env LETTERBOX_STORE)")
	spans := fs.String("spans", "", "span `file` written by letterbox dev (default: traces.jsonl in a file store)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	if len(pos) != 1 {
		return &exitError{2, errors.New("usage: letterbox trace [--store URL] [--spans FILE] ID")}
	}
	id := pos[0]
	if *spans == "" {
		*spans = pipeline.DevSpanFile(*storeURL)
	}
	st, closer, err := storeurl.Open(ctx, *storeURL)
	if err != nil {
		return err
	}
	defer closer.Close()
	raw, err := st.Stat(ctx, store.RawKey(id))
	if err != nil && !store.IsNotFound(err) {
		return err
	}
	found := err == nil
	recs, err := delivery.Journal{Store: st}.List(ctx, id)
	if err != nil {
		return err
	}
	tr, err := loadTrace(*spans, id, raw.Meta[store.MetaTraceparent])
	if err != nil {
		return err
	}
	if !found && len(recs) == 0 && len(tr) == 0 {
		return &exitError{1, fmt.Errorf("no message %s in %s", id, *storeURL)}
	}
	var rawp *store.Object
	if found {
		rawp = &raw
	}
	printTrace(os.Stdout, id, rawp, tr, recs, *spans)
	return nil
}

// loadTrace returns the spans of the traces of message id: those whose
// span carries its letterbox.message_id, or whose trace the raw object's
// traceparent names.
func loadTrace(path, id, traceparent string) ([]telemetry.Span, error) {
	traces := map[string]bool{}
	if sc := telemetry.Remote(traceparent); sc.IsValid() {
		traces[sc.TraceID().String()] = true
	}
	var all []telemetry.Span
	err := telemetry.ReadSpans(path, func(s telemetry.Span) {
		if s.Attrs[telemetry.AttrMessageID] == id {
			traces[s.TraceID] = true
		}
		all = append(all, s)
	})
	if err != nil {
		return nil, err
	}
	var out []telemetry.Span
	for _, s := range all {
		// A batch's span belongs to several messages: it is shown as
		// its attempts' link, not in the tree.
		if traces[s.TraceID] {
			out = append(out, s)
		}
	}
	return out, nil
}

// printTrace renders a message's trace: its spans as a tree (start offset
// from the trace's first span, duration, name, the attributes that
// matter), then its delivery records.
func printTrace(w io.Writer, id string, raw *store.Object, spans []telemetry.Span, recs []delivery.Record, spansPath string) {
	fmt.Fprintf(w, "message %s\n", id)
	if raw != nil {
		fmt.Fprintf(w, "  stored %s, %d bytes\n", raw.ModTime.UTC().Format(time.RFC3339Nano), raw.Size)
	}
	if len(spans) == 0 {
		fmt.Fprintf(w, "\nno spans for this message in %s (tracing was off, or the spans were rotated away)\n", spansPath)
	} else {
		printSpanTree(w, spans)
	}
	if len(recs) > 0 {
		fmt.Fprintln(w, "\ndeliveries")
		printRecords(w, recs)
	}
}

func printSpanTree(w io.Writer, spans []telemetry.Span) {
	byID := map[string]bool{}
	t0 := spans[0].Start
	traces := map[string]bool{}
	for _, s := range spans {
		byID[s.SpanID] = true
		traces[s.TraceID] = true
		if s.Start.Before(t0) {
			t0 = s.Start
		}
	}
	children := map[string][]telemetry.Span{}
	var roots []telemetry.Span
	for _, s := range spans {
		if s.ParentID != "" && byID[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	order := func(ss []telemetry.Span) {
		slices.SortStableFunc(ss, func(a, b telemetry.Span) int {
			if c := a.Start.Compare(b.Start); c != 0 {
				return c
			}
			return strings.Compare(a.SpanID, b.SpanID)
		})
	}
	order(roots)
	ids := make([]string, 0, len(traces))
	for t := range traces {
		ids = append(ids, t)
	}
	slices.Sort(ids)
	fmt.Fprintf(w, "  trace %s\n\n", strings.Join(ids, ", "))
	fmt.Fprintf(w, "  %10s  %10s  span\n", "start", "duration")
	var walk func(s telemetry.Span, prefix, branch string)
	walk = func(s telemetry.Span, prefix, branch string) {
		fmt.Fprintf(w, "  %10s  %10s  %s%s%s\n", "+"+formatDur(s.Start.Sub(t0)), formatDur(s.End.Sub(s.Start)), prefix+branch, s.Name, spanDetail(s))
		kids := children[s.SpanID]
		order(kids)
		next := prefix
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, k := range kids {
			b := "├─ "
			if i == len(kids)-1 {
				b = "└─ "
			}
			walk(k, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
}

// shownAttrs are the attributes the tree prints, in this order, with
// their labels.
var shownAttrs = []struct{ key, label string }{
	{telemetry.AttrJobID, "job"}, {telemetry.AttrAttempt, "attempt"}, {telemetry.AttrOutcome, "outcome"},
	{telemetry.AttrSMTPCode, "smtp"}, {"letterbox.smtp.result", "result"}, {telemetry.AttrJobs, "jobs"},
	{"server.address", "host"}, {telemetry.AttrStatus, "http"}, {"letterbox.peer.status", "status"},
	{"dns.question.type", "dns"}, {"dns.question.name", "name"},
}

func spanDetail(s telemetry.Span) string {
	var parts []string
	for _, a := range shownAttrs {
		if a.key == telemetry.AttrJobID && s.Name != "delivery.job" {
			continue // its parent names the job
		}
		if v, ok := s.Attrs[a.key]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", a.label, v))
		}
	}
	if s.Status == "error" {
		parts = append(parts, "ERROR: "+s.Message)
	}
	if len(s.Links) > 0 {
		parts = append(parts, fmt.Sprintf("links=%d", len(s.Links)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, " ")
}

// formatDur prints a duration with about three significant digits, from
// microseconds to hours (a retry may come hours after its message).
func formatDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
