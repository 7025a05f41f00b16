package s3store

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/letterboxmail/letterbox/internal/storetest"
)

// BenchmarkPut measures Put throughput against versitygw on loopback: one
// PutObject per message with an inline-envelope-sized metadata set.
//
//	go test -run '^$' -bench BenchmarkPut ./internal/s3store/
func BenchmarkPut(b *testing.B) {
	v := startS3(b)
	meta := map[string]string{"letterbox-envelope": string(bytes.Repeat([]byte("e"), 300))}
	for _, size := range []int{4 << 10, 100 << 10} {
		body := make([]byte, size)
		if _, err := storetest.NewBody(1, int64(size)).Read(body); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%dKiB", size>>10)
		b.Run(name+"/serial", func(b *testing.B) {
			s := open(b, v.StoreURL("bench-"+name+"-serial"))
			b.SetBytes(int64(size))
			n := 0
			for b.Loop() {
				n++
				if _, err := s.Put(b.Context(), fmt.Sprintf("raw/%08d.eml", n), bytes.NewReader(body), meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "puts/s")
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			s := open(b, v.StoreURL("bench-"+name+"-parallel"))
			b.SetBytes(int64(size))
			var n atomic.Int64
			b.SetParallelism(8) // 8 per CPU: Put waits on the network
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Put(b.Context(), fmt.Sprintf("raw/%08d.eml", n.Add(1)), bytes.NewReader(body), meta); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
