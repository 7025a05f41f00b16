//go:build awsstack

package awsstack

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// visible waits until a queue holds n receivable messages: S3's
// notifications and ingest's sends arrive on their own time.
func visible(t *testing.T, st *Stack, p *Poller, n int) {
	t.Helper()
	waitFor(t, time.Minute, fmt.Sprintf("%d messages on %s", n, p.Spec.Name), func() bool {
		out, err := st.SQSClient.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(p.QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
		return v >= n
	})
}

type costRow struct {
	name                        string
	n                           int
	ingestBilled, deliverBilled time.Duration // per message
	logBytes                    float64       // per message: functions and gateway
	s3                          map[string]float64
	sqsRequests, sqsChunks      float64
	sqsByAction                 map[string]float64
}

// TestCost measures, per message on the common path (gateway, one route
// with one webhook action, no retries), what AWS bills: each function's
// billed duration, the log bytes, and the S3 and SQS requests the
// stand-ins counted; at 10 KiB and 1 MiB, one message per batch and ten.
// Then each function's cold start. docs/deploy.md's cost table and
// docs/benchmarks.md's cold-start section quote its output.
func TestCost(t *testing.T) {
	recv, _ := discardReceiver(t)
	st, raw, jobs := driven(t, nil, hookRoutes(recv.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	once := func(p *Poller) Invocation {
		inv, err := p.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Err != nil || inv.Failed > 0 {
			t.Fatalf("%s: %v (%d failed)", p.Spec.Name, inv.Err, inv.Failed)
		}
		return inv
	}
	seq := 0
	send := func(s shape) {
		seq++
		sendSMTP(t, st.Gateway.SMTPAddr, "hook@example.test", s, fmt.Sprintf("c%d", seq))
	}
	// Warm both functions up: the table is about warm invocations.
	send(shape{Name: "warmup", Size: 10 * KiB, Kind: "text"})
	once(raw)
	once(jobs)

	cases := []struct {
		name  string
		shape shape
		batch int
		runs  int
	}{
		{"10 KiB, B = 1", shape{Name: "10KiB", Size: 10 * KiB, Kind: "text"}, 1, 5},
		{"10 KiB, B = 10", shape{Name: "10KiB", Size: 10 * KiB, Kind: "text"}, 10, 1},
		{"1 MiB, B = 1", shape{Name: "1MiB", Size: 1 * MiB, Kind: "attachment"}, 1, 3},
		{"1 MiB, B = 10", shape{Name: "1MiB", Size: 1 * MiB, Kind: "attachment"}, 10, 1},
	}
	var rows []costRow
	for _, c := range cases {
		st.ResetCounters()
		gw := st.Gateway.LogBytes()
		row := costRow{name: c.name, s3: map[string]float64{}, sqsByAction: map[string]float64{}}
		var logs int
		for range c.runs {
			for range c.batch {
				send(c.shape)
			}
			visible(t, st, raw, c.batch)
			got := 0
			for got < c.batch {
				inv := once(raw)
				got += inv.Records
				row.ingestBilled += inv.Result.Billed()
				logs += inv.Result.LogBytes
			}
			visible(t, st, jobs, c.batch)
			got = 0
			for got < c.batch {
				inv := once(jobs)
				got += inv.Records
				row.deliverBilled += inv.Result.Billed()
				logs += inv.Result.LogBytes
			}
			row.n += c.batch
		}
		n := float64(row.n)
		row.ingestBilled /= time.Duration(row.n)
		row.deliverBilled /= time.Duration(row.n)
		row.logBytes = (float64(logs) + float64(st.Gateway.LogBytes()-gw)) / n
		for k, v := range st.S3.Counts() {
			row.s3[k] = float64(v) / n
		}
		for k, u := range st.SQS.Usage() {
			if k.Action == "GetQueueAttributes" {
				continue // the test's own, waiting for messages (visible)
			}
			row.sqsRequests += float64(u.Requests) / n
			row.sqsChunks += float64(u.Chunks) / n
			row.sqsByAction[k.Action] += float64(u.Requests) / n
		}
		rows = append(rows, row)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\ncost per message on the common path (warm functions; ingest %d MB, deliver %d MB):\n", st.Specs["IngestFunction"].MemoryMB, st.Specs["DeliverFunction"].MemoryMB)
	fmt.Fprintf(&b, "%-15s %4s | %13s %14s | %9s | %6s %6s | %8s %8s | %s\n", "case", "n", "ingest billed", "deliver billed", "log bytes", "S3 PUT", "S3 GET", "SQS reqs", "chunks", "SQS by action")
	for _, r := range rows {
		var acts []string
		for _, k := range sortedKeysF(r.sqsByAction) {
			acts = append(acts, fmt.Sprintf("%s %.2f", k, r.sqsByAction[k]))
		}
		fmt.Fprintf(&b, "%-15s %4d | %10.1f ms %11.1f ms | %9.0f | %6.2f %6.2f | %8.2f %8.2f | %s\n", r.name, r.n,
			ms(r.ingestBilled), ms(r.deliverBilled), r.logBytes, r.s3[S3Put], r.s3[S3Get], r.sqsRequests, r.sqsChunks, strings.Join(acts, ", "))
	}

	// Cold starts: a new execution environment for each function, three times.
	var inits = map[string][]time.Duration{}
	for range 3 {
		for _, f := range st.Functions {
			f.Kill()
		}
		send(shape{Name: "cold", Size: 10 * KiB, Kind: "text"})
		inits["ingest"] = append(inits["ingest"], once(raw).Result.Init)
		inits["deliver"] = append(inits["deliver"], once(jobs).Result.Init)
	}
	fmt.Fprintf(&b, "cold start (Init Duration, three new environments each): ingest %v, deliver %v\n", roundAll(inits["ingest"]), roundAll(inits["deliver"]))

	// Idle: what the mappings' long polls cost with nothing to do.
	st.ResetCounters()
	idle := 40 * time.Second
	st.StartPollers()
	time.Sleep(idle) // a fixed window of idle time is what is measured here
	st.StopPollers()
	var receives int64
	for k, u := range st.SQS.Usage() {
		if k.Action == "ReceiveMessage" {
			receives += u.Requests
		}
	}
	fmt.Fprintf(&b, "idle: %d ReceiveMessage requests in %v from %d mappings (one poller each)\n", receives, idle, len(st.Pollers))
	fmt.Print(b.String())
	writeArtifact("cost.txt", b.String())
	for _, name := range []string{"ingest", "deliver"} {
		for _, d := range inits[name] {
			if d <= 0 {
				t.Errorf("%s: no init duration reported for a cold start", name)
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}

func sortedKeysF(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
