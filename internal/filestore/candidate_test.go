package filestore_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkPlainFilesCandidate is the design this store was weighed
// against (docs/design/store.md): each Put writes its metadata sidecar and
// then its body, each as a temporary file, fsynced, renamed into place,
// and its directory fsynced. Run it beside BenchmarkPutConcurrent4KiB.
func BenchmarkPlainFilesCandidate(b *testing.B) {
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), 0o750); err != nil {
		b.Fatal(err)
	}
	write := func(final string, data []byte) error {
		if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Join(dir, ".tmp"), "put-*")
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(f.Name(), final); err != nil {
			return err
		}
		d, err := os.Open(filepath.Dir(final))
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	body := []byte(strings.Repeat("x", 4096))
	meta, _ := json.Marshal(map[string]string{"letterbox-envelope": "e30"})
	var n atomic.Int64
	b.SetParallelism(10) // 20 writers on 2 cores, like 20 SMTP sessions
	b.SetBytes(4096)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "raw/" + strconv.FormatInt(n.Add(1), 10) + ".eml"
			if err := write(filepath.Join(dir, ".meta", key+".json"), meta); err != nil {
				b.Error(err)
				return
			}
			if err := write(filepath.Join(dir, key), body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
