package testenv

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// HeapGrowth measures how far the heap in use grows while a test streams
// something large: it collects garbage, notes runtime.MemStats.HeapInuse,
// then samples it every 10 ms until the returned stop is called. stop
// returns the highest sample minus the starting point, in bytes (negative
// when no sample rose above the start).
func HeapGrowth() (stop func() int64) {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return int64(peak.Load()) - int64(base.HeapInuse)
	}
}
