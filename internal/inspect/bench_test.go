package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// benchMessages is how many messages the listing benchmarks hold
// (LETTERBOX_BENCH_INSPECT_N overrides it).
func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("LETTERBOX_BENCH_INSPECT_N")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

var words = []string{"invoice", "order", "printer", "fire", "refund", "meeting", "report", "urgent", "hello", "question",
	"shipping", "delay", "password", "reset", "welcome", "receipt", "ticket", "update", "weekly", "digest"}

// benchItems makes n list items spread over 30 days before now, with ids
// that are ULIDs of their times, as the gateway gives them.
func benchItems(n int, now time.Time) []Item {
	r := rand.New(rand.NewPCG(1, 2))
	items := make([]Item, n)
	start := now.Add(-30 * 24 * time.Hour)
	step := 30 * 24 * time.Hour / time.Duration(n)
	statuses := []string{delivery.StatusDelivered, delivery.StatusDelivered, delivery.StatusDelivered, delivery.StatusFailed, StatusReceived}
	for i := range items {
		at := start.Add(time.Duration(i) * step)
		var entropy [10]byte
		for j := range entropy {
			entropy[j] = byte(r.UintN(256))
		}
		id := ulid.MustNew(ulid.Timestamp(at), bytes.NewReader(entropy[:])).String()
		items[i] = Item{
			ID: id, ReceivedAt: at.UTC().Truncate(time.Millisecond),
			Subject: fmt.Sprintf("%s %s #%d", words[r.IntN(len(words))], words[r.IntN(len(words))], i),
			From:    fmt.Sprintf("sender-%d@example%d.org", r.IntN(5000), r.IntN(50)),
			RcptTo:  []string{fmt.Sprintf("%s@example.test", []string{"support", "sales", "billing", "info", "jobs"}[r.IntN(5)])},
			Routes:  []string{[]string{"support", "sales", "billing", "catch-all"}[r.IntN(4)]},
			Status:  statuses[r.IntN(len(statuses))],
			Size:    int64(2000 + r.IntN(50000)),
		}
		if i%1000 == 0 { // a few that search for a rare word finds
			items[i].Subject = "cancellation request #" + strconv.Itoa(i)
		}
	}
	return items
}

// fillStore puts a small raw object per item: the keys a sync lists.
func fillStore(b *testing.B, put func(ctx context.Context, key string, body []byte) error, items []Item) {
	b.Helper()
	work := make(chan Item)
	var wg sync.WaitGroup
	var once sync.Once
	var failed error
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := put(context.Background(), store.RawKey(it.ID), []byte("Subject: "+it.Subject+"\r\n\r\nbody\r\n")); err != nil {
					once.Do(func() { failed = err })
				}
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
}

// benchIndex builds the index of items, with its cursor after the last.
func benchIndex(b *testing.B, items []Item) *Index {
	b.Helper()
	ix, err := OpenIndex(filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })
	ctx := context.Background()
	for i := 0; i < len(items); i += 10_000 {
		if err := ix.Put(ctx, items[i:min(i+10_000, len(items))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := ix.setCursor(ctx, store.RawKey(items[len(items)-1].ID)); err != nil {
		b.Fatal(err)
	}
	return ix
}

// BenchmarkInspect measures what the list page waits for, with
// benchMessages() messages in each store: the first page, searches, the
// next page deep in the list, and the idle sync (the poll that finds
// nothing new). It also measures the index build from real stored
// messages (envelope, parsed JSON, delivery record), per message.
// `make bench-inspect` runs it and writes the medians to docs/benchmarks.md.
func BenchmarkInspect(b *testing.B) {
	n := benchMessages()
	now := time.Now()
	items := benchItems(n, now)
	b.Run("file", func(b *testing.B) {
		st, err := filestore.New(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		fillStore(b, func(ctx context.Context, key string, body []byte) error {
			_, err := st.Put(ctx, key, bytes.NewReader(body), nil)
			return err
		}, items)
		benchStore(b, st, items, func() store.Store {
			s, err := filestore.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		})
	})
	b.Run("s3", func(b *testing.B) {
		v := testenv.StartVersity(b, testenv.VersityOptions{})
		v.SetEnv(b)
		st, err := s3store.New(context.Background(), v.StoreURL("mail"))
		if err != nil {
			b.Fatal(err)
		}
		fillStore(b, func(ctx context.Context, key string, body []byte) error {
			_, err := st.Put(ctx, key, bytes.NewReader(body), nil)
			return err
		}, items)
		k := 0
		benchStore(b, st, items, func() store.Store {
			k++
			s, err := s3store.New(context.Background(), v.StoreURL("build"+strconv.Itoa(k)))
			if err != nil {
				b.Fatal(err)
			}
			return s
		})
	})
}

func benchStore(b *testing.B, st store.Store, items []Item, fresh func() store.Store) {
	ix := benchIndex(b, items)
	in, err := New(Config{Source: Source{Store: st}, Index: ix})
	if err != nil {
		b.Fatal(err)
	}
	get := func(b *testing.B, target string, want int) {
		var d durations
		for b.Loop() {
			t0 := time.Now()
			r := httptest.NewRequest("GET", target, nil)
			r.RemoteAddr, r.Host = "127.0.0.1:1", "127.0.0.1:8025"
			w := httptest.NewRecorder()
			in.ServeHTTP(w, r)
			var p Page
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &p) != nil || (want >= 0 && len(p.Items) != want) {
				b.Fatalf("GET %s: %d, %d items, want %d", target, w.Code, len(p.Items), want)
			}
			d = append(d, time.Since(t0))
		}
		d.report(b)
	}
	n := len(items)
	b.Run("first-page", func(b *testing.B) { get(b, "/api/v1/messages?limit=50", 50) })
	b.Run("page-deep", func(b *testing.B) { get(b, "/api/v1/messages?limit=50&before="+items[n/2].ID, 50) })
	b.Run("search-word", func(b *testing.B) { get(b, "/api/v1/messages?q=cancellation&limit=50", min(50, (n+999)/1000)) })
	b.Run("search-fields", func(b *testing.B) { get(b, "/api/v1/messages?q=from:sender-42@+status:failed&limit=50", -1) })
	b.Run("search-none", func(b *testing.B) { get(b, "/api/v1/messages?q=no-such-word-anywhere&limit=50", 0) })
	b.Run("sync-idle", func(b *testing.B) {
		var d durations
		for b.Loop() {
			t0 := time.Now()
			if _, _, err := ix.Sync(context.Background(), Source{Store: st}, time.Now(), 100); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(t0))
		}
		d.report(b)
	})
	// The first index of a store that already holds messages: per message,
	// an envelope (metadata), a parsed JSON and a delivery record to read.
	const built = 200
	src := fresh()
	ctx := context.Background()
	for i := range built {
		id := ulid.Make().String()
		env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"support@example.test"}, ReceivedAt: time.Now().UTC(), Source: "gateway"}
		if _, err := store.PutRaw(ctx, src, id, env, bytes.NewReader([]byte("Subject: hello\r\n\r\nbody\r\n"))); err != nil {
			b.Fatal(err)
		}
		m := message.Message{ID: id, Subject: "hello " + strconv.Itoa(i), From: &message.Address{Address: "a@example.org"}, Envelope: env, Text: "body"}
		if err := store.PutJSON(ctx, src, store.ParsedKey(id), m); err != nil {
			b.Fatal(err)
		}
		rec := delivery.Record{Job: delivery.Job{ID: id + ".support.0", MessageID: id, Route: "support"}, Status: delivery.StatusDelivered}
		if err := (delivery.Journal{Store: src}).Put(ctx, &rec); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("build-per-message", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ix, err := OpenIndex(filepath.Join(b.TempDir(), "build.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			got := 0
			for more := true; more; {
				var ch []Item
				if ch, more, err = ix.Sync(ctx, Source{Store: src}, time.Now(), 0); err != nil {
					b.Fatal(err)
				}
				got += len(ch)
			}
			b.StopTimer()
			ix.Close()
			if got != built {
				b.Fatalf("indexed %d, want %d", got, built)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*built), "ns/msg")
	})
}

// durations reports the median of a benchmark's iterations ("median-ns"):
// on a shared machine, a median says more than a mean.
type durations []time.Duration

func (d durations) report(b *testing.B) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "median-ns")
}
