package filestore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
)

// A crash leaves segments behind; opening the store replays them, the last
// write of a key wins, deletes stay deleted and a torn tail is dropped.
func TestReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, logDir), 0o750)
	os.MkdirAll(filepath.Join(dir, "parsed"), 0o750)
	os.WriteFile(filepath.Join(dir, "parsed", "gone.json"), []byte("old"), 0o640)
	now := time.Now()
	var seg1, seg2 []byte
	seg1, _ = (&record{op: opPut, key: "raw/a.eml", meta: map[string]string{"letterbox-envelope": "e30"}, data: []byte("first"), mod: now}).encode(seg1)
	seg1, _ = (&record{op: opPut, key: "raw/b.eml", data: []byte("b"), mod: now}).encode(seg1)
	seg2, _ = (&record{op: opPut, key: "raw/a.eml", meta: map[string]string{"letterbox-envelope": "e30"}, data: []byte("second"), mod: now}).encode(seg2)
	seg2, _ = (&record{op: opDelete, key: "parsed/gone.json", mod: now}).encode(seg2)
	torn, _ := (&record{op: opPut, key: "raw/torn.eml", data: []byte("never acknowledged"), mod: now}).encode(nil)
	seg2 = append(seg2, torn[:len(torn)-3]...)
	os.WriteFile(segmentPath(dir, 1), seg1, 0o640)
	os.WriteFile(segmentPath(dir, 2), seg2, 0o640)

	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	get := func(key string) (string, store.Object, error) {
		rc, obj, err := s.Get(ctx, key)
		if err != nil {
			return "", obj, err
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b), obj, nil
	}
	if body, obj, err := get("raw/a.eml"); err != nil || body != "second" || obj.Meta["letterbox-envelope"] != "e30" {
		t.Fatalf("raw/a.eml = %q %v %v, want the last write with its metadata", body, obj.Meta, err)
	}
	if body, _, err := get("raw/b.eml"); err != nil || body != "b" {
		t.Fatalf("raw/b.eml = %q %v", body, err)
	}
	if _, _, err := get("parsed/gone.json"); !store.IsNotFound(err) {
		t.Fatalf("deleted object came back: %v", err)
	}
	if _, _, err := get("raw/torn.eml"); !store.IsNotFound(err) {
		t.Fatalf("torn record visible: %v", err)
	}
	if seqs, _ := segments(dir); len(seqs) != 0 {
		t.Fatalf("segments left after replay: %v", seqs)
	}
	// From the tree, not memory: the file holds the data and the metadata.
	if b, _ := os.ReadFile(filepath.Join(dir, "raw", "a.eml")); string(b) != "second" {
		t.Fatalf("file = %q", b)
	}
}

func TestCorruptRecordEndsTheSegment(t *testing.T) {
	good, _ := (&record{op: opPut, key: "k1", data: []byte("one"), mod: time.Now()}).encode(nil)
	bad, _ := (&record{op: opPut, key: "k2", data: []byte("two"), mod: time.Now()}).encode(nil)
	bad[len(bad)-1] ^= 0xff // a flipped bit in the data
	after, _ := (&record{op: opPut, key: "k3", data: []byte("three"), mod: time.Now()}).encode(nil)
	path := filepath.Join(t.TempDir(), "x.seg")
	os.WriteFile(path, bytes.Join([][]byte{good, bad, after}, nil), 0o640)
	recs, err := readSegment(path)
	if err != nil || len(recs) != 1 || recs[0].key != "k1" {
		t.Fatalf("records = %v, %v; want only k1", recs, err)
	}
}

// Writes made by a process that is killed (SIGKILL) at a random moment:
// every write that returned is there after a restart, complete.
func TestKilledWriterLosesNothingAcknowledged(t *testing.T) {
	if os.Getenv("FILESTORE_WRITER_DIR") != "" {
		writer(os.Getenv("FILESTORE_WRITER_DIR"))
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := newWriter(t, dir)
		acked := map[string]string{}
		buf := make([]byte, 0, 1<<16)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		deadline := time.After(time.Duration(200+round*150) * time.Millisecond)
		lines := make(chan string)
		go func() {
			b := make([]byte, 4096)
			for {
				n, err := out.Read(b)
				buf = append(buf, b[:n]...)
				for {
					i := bytes.IndexByte(buf, '\n')
					if i < 0 {
						break
					}
					lines <- string(buf[:i])
					buf = buf[i+1:]
				}
				if err != nil {
					close(lines)
					return
				}
			}
		}()
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				var key, body string
				fmt.Sscanf(l, "%s %s", &key, &body)
				acked[key] = body
			case <-deadline:
				if len(acked) == 0 {
					// A loaded machine: kill only once the writer has
					// acknowledged something, the event the round is about.
					if time.Since(start) > 30*time.Second {
						cmd.Process.Kill()
						t.Fatalf("round %d: the writer acknowledged nothing in 30s", round)
					}
					deadline = time.After(10 * time.Millisecond)
					continue
				}
				cmd.Process.Kill()
				for l := range lines {
					var key, body string
					fmt.Sscanf(l, "%s %s", &key, &body)
					acked[key] = body
				}
				break read
			}
		}
		cmd.Wait()
		s, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range acked {
			rc, _, err := s.Get(context.Background(), key)
			if err != nil {
				t.Fatalf("round %d: acknowledged %s lost: %v", round, key, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.HasPrefix(b, []byte(want)) || len(b) != len(want)+writerPad(key) {
				t.Fatalf("round %d: %s incomplete (%d bytes)", round, key, len(b))
			}
		}
		s.Close()
		if len(acked) == 0 {
			t.Fatalf("round %d: the writer acknowledged nothing", round)
		}
		t.Logf("round %d: %d acknowledged writes survived", round, len(acked))
	}
}
