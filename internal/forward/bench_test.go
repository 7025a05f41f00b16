package forward

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkForward forwards one message per iteration through a smart
// host on loopback (a go-smtp server), from a file store, with and
// without an ARC seal (RSA 2048).
//
//	go test ./internal/forward -run '^$' -bench Forward -benchtime 2s
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		for _, sealed := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%dKiB/arc=%v", size>>10, sealed), func(b *testing.B) {
				raw := rawMsg + strings.Repeat("0123456789 abcdefghij klmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTU\r\n", size/64)
				fx := newFixture(b, raw)
				srv := startSMTP(b, serverOpts{})
				f := testForwarder(b, fx.st, func(c *Config) {
					if sealed {
						c.ARC = rsaKey(b)
					}
				})
				a := smarthostAction(srv, "bob@b.test")
				a.ARCSeal = sealed
				b.SetBytes(int64(len(raw)))
				b.ResetTimer()
				for b.Loop() {
					if res := f.Forward(context.Background(), fx.job, fx.msg, a, noExpand); res.Err != nil {
						b.Fatal(res.Err)
					}
				}
			})
		}
	}
}
