//go:build awsstack

package awsstack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// discardReceiver answers every webhook 204 after reading it whole.
func discardReceiver(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var bytes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		bytes.Add(n)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &bytes
}

func hookRoutes(url string) []byte {
	return []byte(fmt.Sprintf(`version: 1
domains: [example.test]
routes:
  - name: hook
    catch_all: true
    actions:
      - webhook:
          url: %q
          secret: %q
          allow_private_network: true
`, url+"/hook", hookSecret))
}

// driven starts the stack with the mappings stopped: the test drives them
// one batch at a time (Poller.Once) to see each message's invocations.
func driven(t *testing.T, params map[string]string, routes []byte) (*Stack, *Poller, *Poller) {
	bin, emu := artefacts(t)
	dns := newDNS(t)
	p := map[string]string{"Domains": "example.test", "DnsResolver": dns}
	for k, v := range params {
		p[k] = v
	}
	st := Start(t, Options{Template: templatePath(t), Params: p, Bin: bin, Emulator: emu, Routes: routes,
		Output: newTestLog(t, "stack"), NoPollers: true})
	var raw, jobs *Poller
	for _, p := range st.Pollers {
		switch p.Spec.Name {
		case "RawMail":
			raw = p
		case "DeliveryJobs":
			jobs = p
		}
	}
	if raw == nil || jobs == nil {
		t.Fatal("template.yaml has no RawMail or DeliveryJobs event")
	}
	// S3's test event, sent when the notification was configured.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if inv, err := raw.Once(ctx); err != nil || inv.Err != nil {
		t.Fatalf("the test event: %v %v", err, inv.Err)
	}
	return st, raw, jobs
}

type memRow struct {
	shape            shape
	size             int64
	ingest, deliver  Invocation
	ingestRan, deliv bool
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/MiB) }

// TestMemoryAndTime sends each size and shape of issue 11 through the
// gateway and drives ingest and deliver a message at a time, at the
// template's MemorySize and Timeout: a message whose function exceeds
// either fails the test, as it would fail on Lambda.
func TestMemoryAndTime(t *testing.T) {
	recv, _ := discardReceiver(t)
	// MaxMessageBytes at the template's maximum, 150 MiB.
	st, raw, jobs := driven(t, map[string]string{"MaxMessageBytes": "157286400"}, hookRoutes(recv.URL))
	shapes := []shape{
		{Name: "10KiB-text", Size: 10 * KiB, Kind: "text"},
		{Name: "1MiB-attachment", Size: 1 * MiB, Kind: "attachment"},
		{Name: "25MiB-attachment", Size: 25 * MiB, Kind: "attachment"},
		{Name: "150MiB-attachment", Size: 150*MiB - 16*KiB, Kind: "attachment"},
		{Name: "150MiB-text", Size: 150*MiB - 16*KiB, Kind: "text"},
		{Name: "150MiB-html", Size: 150*MiB - 16*KiB, Kind: "html"},
		{Name: "150MiB-2000-parts", Size: 150*MiB - 16*KiB, Kind: "parts", Parts: 2000},
	}
	if only := strings.TrimSpace(getenv("LETTERBOX_AWS_SHAPES")); only != "" {
		var keep []shape
		for _, s := range shapes {
			if strings.Contains(only, s.Name) {
				keep = append(keep, s)
			}
		}
		shapes = keep
	}
	var rows []memRow
	for i, s := range shapes {
		row := memRow{shape: s}
		row.size = sendSMTP(t, st.Gateway.SMTPAddr, "hook@example.test", s, fmt.Sprintf("m%d", i))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		var err error
		row.ingest, err = raw.Once(ctx)
		row.ingestRan = err == nil
		if err == nil && row.ingest.Err == nil {
			row.deliver, err = jobs.Once(ctx)
			row.deliv = err == nil
		}
		cancel()
		rows = append(rows, row)
		t.Logf("%s: ingest %v, deliver %v", s.Name, row.ingest.Err, row.deliver.Err)
	}

	ing, del := st.Specs["IngestFunction"], st.Specs["DeliverFunction"]
	var b strings.Builder
	fmt.Fprintf(&b, "\nmemory and time at the template's sizes (ingest %d MB / %v, deliver %d MB / %v):\n", ing.MemoryMB, ing.Timeout, del.MemoryMB, del.Timeout)
	fmt.Fprintf(&b, "%-20s %9s | %15s %11s %9s | %15s %11s %9s\n", "message", "MiB", "ingest peak MiB", "duration", "outcome", "deliver peak MiB", "duration", "outcome")
	for _, r := range rows {
		outcome := func(inv Invocation, ran bool) string {
			switch {
			case !ran:
				return "not run"
			case inv.Err != nil:
				return "FAILED"
			case inv.Failed > 0:
				return "retry"
			}
			return "ok"
		}
		fmt.Fprintf(&b, "%-20s %9.2f | %15s %11s %9s | %15s %11s %9s\n", r.shape.Name, float64(r.size)/MiB,
			mib(r.ingest.Result.PeakRSS), r.ingest.Result.Duration.Round(time.Millisecond), outcome(r.ingest, r.ingestRan),
			mib(r.deliver.Result.PeakRSS), r.deliver.Result.Duration.Round(time.Millisecond), outcome(r.deliver, r.deliv))
	}
	fmt.Print(b.String())
	writeArtifact("memory.txt", b.String())
	for _, r := range rows {
		if !r.ingestRan || r.ingest.Err != nil || r.ingest.Failed > 0 {
			t.Errorf("%s: ingest failed: %v (peak %s MiB of %d MB)", r.shape.Name, r.ingest.Err, mib(r.ingest.Result.PeakRSS), ing.MemoryMB)
			continue
		}
		if !r.deliv || r.deliver.Err != nil || r.deliver.Failed > 0 {
			t.Errorf("%s: deliver failed: %v (peak %s MiB of %d MB)", r.shape.Name, r.deliver.Err, mib(r.deliver.Result.PeakRSS), del.MemoryMB)
		}
	}
}
