package filestore

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The write-ahead log makes small writes durable without creating a file
// per write: records are appended to a segment file and made durable with
// one fdatasync per batch; a materializer then writes each record out as an
// ordinary file in the tree, syncs the tree once per batch, and deletes a
// segment once every record in it is in the tree. Until then, reads are
// served from memory. At start, segments left by a crash are replayed into
// the tree; a torn record at a segment's end was never acknowledged and is
// dropped.

const (
	logDir = ".log"
	// smallMax is the largest body that goes through the log; larger ones
	// are written to a temporary file and renamed into place.
	smallMax = 256 << 10
	// segmentMax is the size at which a segment is sealed.
	segmentMax = 64 << 20

	recordMagic = 0x4C425831 // "LBX1"
	opPut       = 1
	opDelete    = 2
	headerLen   = 4 + 4 + 1 + 2 + 4 + 4 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is one logged write.
type record struct {
	op   byte
	key  string
	meta map[string]string
	data []byte
	mod  time.Time

	seg *segment
	n   int // encoded length, set by decode
}

// encode appends the record: magic, crc32c of the rest, op, key length,
// meta length, data length, modification time, key, meta JSON, data.
func (r *record) encode(b []byte) ([]byte, error) {
	var meta []byte
	if len(r.meta) > 0 {
		var err error
		if meta, err = json.Marshal(r.meta); err != nil {
			return b, err
		}
	}
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, recordMagic)
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = append(b, r.op)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.key)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.data)))
	b = binary.BigEndian.AppendUint64(b, uint64(r.mod.UnixNano()))
	b = append(b, r.key...)
	b = append(b, meta...)
	b = append(b, r.data...)
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], castagnoli))
	return b, nil
}

// errTorn marks the end of the valid records of a segment.
var errTorn = errors.New("torn or corrupt record")

// decode reads one record; io.EOF at a clean end, errTorn at a damaged one.
func decode(r *bufio.Reader) (*record, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, errTorn
	}
	if binary.BigEndian.Uint32(h[0:]) != recordMagic {
		return nil, errTorn
	}
	sum := binary.BigEndian.Uint32(h[4:])
	op := h[8]
	kl := int(binary.BigEndian.Uint16(h[9:]))
	ml := int(binary.BigEndian.Uint32(h[11:]))
	dl := int(binary.BigEndian.Uint32(h[15:]))
	if ml > smallMax || dl > smallMax || (op != opPut && op != opDelete) {
		return nil, errTorn
	}
	rest := make([]byte, kl+ml+dl)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, errTorn
	}
	c := crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, rest)
	if c != sum {
		return nil, errTorn
	}
	rec := &record{op: op, key: string(rest[:kl]), data: rest[kl+ml:], mod: time.Unix(0, int64(binary.BigEndian.Uint64(h[19:]))), n: headerLen + kl + ml + dl}
	if ml > 0 {
		if err := json.Unmarshal(rest[kl:kl+ml], &rec.meta); err != nil {
			return nil, errTorn
		}
	}
	return rec, nil
}

// segment is one log file.
type segment struct {
	seq  uint64
	path string
	f    *os.File
	size int64
	// pending counts records not yet materialized; sealed segments with
	// none are deleted.
	pending int
	sealed  bool
}

func segmentPath(dir string, seq uint64) string {
	return filepath.Join(dir, logDir, fmt.Sprintf("%016d.seg", seq))
}

// segments lists the segment files in order.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(filepath.Join(dir, logDir))
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// readSegment returns the valid records of a segment, in order.
func readSegment(path string) ([]*record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var out []*record
	for {
		r, err := decode(br)
		if err != nil {
			return out, nil // io.EOF or a torn tail: both end the segment
		}
		out = append(out, r)
	}
}
