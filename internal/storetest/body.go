package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
)

// Body is a deterministic stream of n pseudo-random bytes, generated on the
// fly so that large bodies are never held in memory. Every 8-byte block
// differs from every other (it is a hash of the block's offset and a seed),
// so a backend that drops, repeats or reorders parts of a body changes its
// digest.
type Body struct {
	seed uint64
	n    int64
	off  int64
}

// NewBody returns a stream of n bytes determined by seed.
func NewBody(seed uint64, n int64) *Body { return &Body{seed: seed, n: n} }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.off >= b.n {
		return 0, io.EOF
	}
	if rest := b.n - b.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	var blk [8]byte
	n := 0
	for n < len(p) {
		i := b.off / 8
		binary.LittleEndian.PutUint64(blk[:], splitmix64(b.seed^uint64(i)*0x9e3779b97f4a7c15))
		c := copy(p[n:], blk[b.off%8:])
		n += c
		b.off += int64(c)
	}
	return n, nil
}

// Digest returns the SHA-256 of the stream NewBody(seed, n) would produce.
func Digest(seed uint64, n int64) []byte {
	h := sha256.New()
	if _, err := io.Copy(h, NewBody(seed, n)); err != nil {
		panic(err) // Body never fails
	}
	return h.Sum(nil)
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// FailingReader returns the bytes of R until After bytes have been read,
// then Err: a client that disconnects in the middle of a message.
type FailingReader struct {
	R     io.Reader
	After int64
	Err   error
	n     int64
}

// Read implements io.Reader.
func (f *FailingReader) Read(p []byte) (int, error) {
	if f.n >= f.After {
		return 0, f.Err
	}
	if rest := f.After - f.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := f.R.Read(p)
	f.n += int64(n)
	return n, err
}

// cancelingReader cancels a context once after bytes have been read and
// keeps on delivering data: the caller went away while the body was still
// streaming.
type cancelingReader struct {
	r      io.Reader
	after  int64
	cancel context.CancelFunc
	n      int64
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}
