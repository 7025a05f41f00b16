package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

// abortTimeout bounds the clean-up of a failed multipart upload, which runs
// even when the caller's context is done.
const abortTimeout = 30 * time.Second

// Put stores body under key with meta. A body up to the part size is one
// PutObject; a larger one is a multipart upload. Either way the object
// appears whole or not at all. An error reading body is returned wrapped,
// keeping its class.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	full, err := s.key(key)
	if err != nil {
		return store.Object{}, err
	}
	if err := checkMeta(meta); err != nil {
		return store.Object{}, fault.Permanent(fmt.Errorf("s3store: put %s: %w", key, err))
	}
	if err := ctx.Err(); err != nil {
		return store.Object{}, classify(err, "put", key)
	}
	buf := s.bufs.get()
	defer s.bufs.put(buf)
	// One byte more than a part tells a body of exactly one part from a
	// longer one.
	*buf, err = readUpTo(body, (*buf)[:0], s.partSize+1)
	if err != nil && err != io.EOF {
		return store.Object{}, fmt.Errorf("s3store: put %s: read body: %w", key, err)
	}
	var size int64
	if len(*buf) <= s.partSize {
		size = int64(len(*buf))
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        &s.bucket,
			Key:           &full,
			Body:          bytes.NewReader(*buf),
			ContentLength: aws.Int64(size),
			Metadata:      meta,
		})
		if err != nil {
			return store.Object{}, classify(err, "put", key)
		}
	} else {
		first, extra := (*buf)[:s.partSize], (*buf)[s.partSize:]
		size, err = s.putMultipart(ctx, key, full, first, io.MultiReader(bytes.NewReader(extra), body), meta)
		if err != nil {
			return store.Object{}, err
		}
	}
	return store.Object{Key: key, Size: size, ModTime: time.Now(), Meta: maps.Clone(meta)}, nil
}

// putMultipart uploads first and then the rest of the body in parts, with
// at most s.concurrency parts being read or uploaded besides first, and
// aborts the upload on any failure.
func (s *Store) putMultipart(ctx context.Context, key, full string, first []byte, rest io.Reader, meta map[string]string) (int64, error) {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &full,
		Metadata:          meta,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return 0, classify(err, "put", key)
	}
	m := &multipart{s: s, key: key, full: full, uploadID: created.UploadId}
	size, err := m.upload(ctx, first, rest)
	if err == nil {
		slices.SortFunc(m.parts, func(a, b types.CompletedPart) int {
			return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber))
		})
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket:          &s.bucket,
			Key:             &full,
			UploadId:        m.uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: m.parts},
		})
		if err != nil {
			err = classify(err, "put", key)
		}
	}
	if err != nil {
		m.abort(ctx)
		return 0, err
	}
	return size, nil
}

type multipart struct {
	s        *Store
	key      string
	full     string
	uploadID *string

	mu    sync.Mutex
	parts []types.CompletedPart
	err   error
}

func (m *multipart) upload(parent context.Context, first []byte, rest io.Reader) (int64, error) {
	// Canceled by the caller, or by the first failure to stop the others.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	fail := func(err error) {
		m.mu.Lock()
		if m.err == nil {
			m.err = err
		}
		m.mu.Unlock()
		cancel()
	}
	// free holds one token per part that may be read or in flight: a part
	// buffer, or nil until one is needed. Buffers circulate within the
	// upload and go back to the store's pool at the end.
	free := make(chan *[]byte, m.s.concurrency)
	for range m.s.concurrency {
		free <- nil
	}
	var wg sync.WaitGroup
	size := int64(len(first))
	wg.Go(func() {
		if err := m.part(ctx, 1, first); err != nil {
			fail(err)
		}
	})
	for n := int32(2); ; n++ {
		var buf *[]byte
		took := false
		select {
		case buf = <-free:
			took = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if took {
				free <- buf
			}
			break
		}
		if buf == nil {
			buf = m.s.bufs.get()
			if cap(*buf) < m.s.partSize {
				*buf = make([]byte, 0, m.s.partSize)
			}
		}
		var rerr error
		*buf, rerr = readUpTo(rest, (*buf)[:0], m.s.partSize)
		if rerr != nil && rerr != io.EOF {
			free <- buf
			fail(fmt.Errorf("s3store: put %s: read body: %w", m.key, rerr))
			break
		}
		if len(*buf) == 0 {
			free <- buf
			break
		}
		if n > maxParts {
			free <- buf
			fail(fault.Permanentf("s3store: put %s: body larger than %d parts of %d bytes", m.key, maxParts, m.s.partSize))
			break
		}
		size += int64(len(*buf))
		wg.Go(func() {
			defer func() { free <- buf }()
			if err := m.part(ctx, n, *buf); err != nil {
				fail(err)
			}
		})
		if rerr == io.EOF {
			break
		}
	}
	wg.Wait()
	for range m.s.concurrency {
		if buf := <-free; buf != nil {
			m.s.bufs.put(buf)
		}
	}
	if m.err != nil {
		return 0, m.err
	}
	if err := parent.Err(); err != nil {
		return 0, classify(err, "put", m.key)
	}
	return size, nil
}

func (m *multipart) part(ctx context.Context, n int32, data []byte) error {
	out, err := m.s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            &m.s.bucket,
		Key:               &m.full,
		UploadId:          m.uploadID,
		PartNumber:        aws.Int32(n),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return classify(err, "put", m.key)
	}
	m.mu.Lock()
	m.parts = append(m.parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
	m.mu.Unlock()
	return nil
}

// abort discards the uploaded parts. A part upload still in flight at the
// server may land after an abort, so, as the S3 API reference advises for
// AbortMultipartUpload, the upload is aborted again until ListParts no
// longer finds it. An upload that cannot be aborted is still invisible; a
// bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims it.
func (m *multipart) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	for try := 1; ; try++ {
		_, err := m.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &m.s.bucket, Key: &m.full, UploadId: m.uploadID})
		switch {
		case err == nil:
			_, err = m.s.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &m.s.bucket, Key: &m.full, UploadId: m.uploadID})
			if err != nil {
				return // gone (NoSuchUpload), or no way to tell: the lifecycle rule's
			}
		case isNoSuchUpload(err):
			return
		default:
			// A server still writing a canceled part may refuse the abort
			// (versitygw answers 500 "directory not empty"): a 5xx answer
			// is tried again like a part that landed late. An S3 that does
			// not answer at all is not waited for: the SMTP client is
			// waiting for its 451, and the lifecycle rule reclaims the
			// upload.
			again := httpStatus(err) >= 500
			slog.WarnContext(ctx, "s3store: abort multipart upload", "bucket", m.s.bucket, "key", m.full, "upload_id", aws.ToString(m.uploadID), "try", try, "retry", again, "err", err)
			if !again {
				return
			}
		}
		if try == 5 {
			return // give up to the lifecycle rule
		}
		select {
		case <-time.After(time.Duration(try) * 50 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsu) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "NoSuchUpload"
}

// readUpTo appends from r to buf until buf holds limit bytes or r ends
// (io.EOF). Capacity grows by doubling, never beyond limit, so a small body
// takes a small buffer.
func readUpTo(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			// Exact capacities (append would round up past limit and the
			// pool would drop the buffer).
			grown := make([]byte, len(buf), min(max(2*cap(buf), 16<<10), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// bufPool recycles body buffers. Buffers keep the capacity they grew to,
// up to max.
type bufPool struct {
	max  int
	pool sync.Pool
}

func (p *bufPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func (p *bufPool) put(b *[]byte) {
	if cap(*b) > p.max {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}
