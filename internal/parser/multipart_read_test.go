package parser

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestMultipartReadFillsBuffer checks that a part's Read returns every
// buffered line that fits, not one line per call: a part nested 20 deep
// passes through 20 readers, and one line per call made a 150 MiB nested
// message take half a minute.
func TestMultipartReadFillsBuffer(t *testing.T) {
	body := strings.Repeat("a short line\r\n", 10000) // 140,000 bytes
	raw := "--b\r\n" + body + "\r\n--b--\r\n"
	mr := newMultipartReader(bufio.NewReaderSize(strings.NewReader(raw), 64<<10), "b")
	if !mr.Next() {
		t.Fatal("no part")
	}
	var got strings.Builder
	calls := 0
	buf := make([]byte, 32<<10)
	for {
		n, err := mr.Read(buf)
		got.Write(buf[:n])
		calls++
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != body {
		t.Fatalf("part of %d bytes, want %d", got.Len(), len(body))
	}
	// 140,000 bytes through a 32 KiB buffer: a handful of calls (more
	// where the 64 KiB read buffer runs dry), not 10,000.
	if calls > 20 {
		t.Fatalf("%d Read calls for %d lines", calls, 10000)
	}
	if mr.Next() || !mr.closed {
		t.Fatal("closing delimiter not seen")
	}
}
