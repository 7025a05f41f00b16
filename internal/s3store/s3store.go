// Package s3store is the store.Store backend for Amazon S3 and S3-protocol
// servers, addressed as s3://BUCKET[/PREFIX].
//
// Configuration comes from the standard AWS sources (environment, shared
// config and credentials files, the Lambda or ECS role) through
// config.LoadDefaultConfig. An endpoint set there, such as
// AWS_ENDPOINT_URL_S3 for a local S3 server, switches the client to
// path-style addressing.
//
// Costs: a body up to the part size (8 MiB by default) is one PutObject from
// a pooled buffer, so store.PutRaw of an ordinary message is one PUT request.
// A larger body is a multipart upload with a bounded number of part buffers
// in flight, aborted on any error, so a failed Put never leaves a visible
// object. Metadata travels as x-amz-meta-* headers.
//
// Errors are classified (package fault): a missing key is store.ErrNotFound
// and permanent; throttling, 5xx and network failures are temporary; other
// 4xx answers (access, validation, missing bucket) are permanent.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Defaults for the multipart path.
const (
	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 4
	// MinPartSize is S3's smallest part, for all but the last.
	MinPartSize = 5 << 20
	// maxParts is S3's limit on the parts of one upload.
	maxParts = 10000
	// maxPresignTTL is the longest a SigV4 presigned URL can live.
	maxPresignTTL = 7 * 24 * time.Hour
)

// Store is an S3 bucket, or a prefix in one.
type Store struct {
	client      *s3.Client
	presign     *s3.PresignClient
	bucket      string
	prefix      string // "" or ending in "/"
	partSize    int
	concurrency int
	bufs        bufPool
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Presigner = (*Store)(nil)
)

// Option configures New.
type Option func(*options)

type options struct {
	partSize    int
	concurrency int
	load        []func(*config.LoadOptions) error
}

// WithPartSize sets the largest body written with a single PutObject and
// the part size of multipart uploads. It is raised to MinPartSize if lower.
func WithPartSize(n int) Option {
	return func(o *options) { o.partSize = max(n, MinPartSize) }
}

// WithConcurrency sets how many parts of one multipart upload are read or
// in flight at once; each holds a part-sized buffer.
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithLoadOptions passes options to config.LoadDefaultConfig, for example
// config.WithRegion or config.WithRetryMaxAttempts.
func WithLoadOptions(fns ...func(*config.LoadOptions) error) Option {
	return func(o *options) { o.load = append(o.load, fns...) }
}

// New opens the store at rawURL, s3://BUCKET[/PREFIX]. It does not contact
// S3; Ping does.
func New(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	bucket, prefix, err := parseURL(rawURL)
	if err != nil {
		return nil, fault.Permanent(err)
	}
	o := options{partSize: DefaultPartSize, concurrency: DefaultConcurrency}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := config.LoadDefaultConfig(ctx, o.load...)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("s3store: load AWS config: %w", err))
	}
	if cfg.Region == "" {
		return nil, fault.Permanentf("s3store: no AWS region configured (set AWS_REGION)")
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		// BaseEndpoint is resolved by now from AWS_ENDPOINT_URL_S3,
		// AWS_ENDPOINT_URL or the shared config. S3-protocol servers
		// rarely serve virtual-hosted buckets.
		if so.BaseEndpoint != nil {
			so.UsePathStyle = true
		}
		// Objects uploaded in parts have a checksum of checksums, which
		// GetObject cannot validate; it would log a warning per read.
		so.DisableLogOutputChecksumValidationSkipped = true
	})
	return &Store{
		client:      client,
		presign:     s3.NewPresignClient(client),
		bucket:      bucket,
		prefix:      prefix,
		partSize:    o.partSize,
		concurrency: o.concurrency,
		bufs:        bufPool{max: o.partSize + 1},
	}, nil
}

// parseURL splits s3://BUCKET[/PREFIX] into the bucket and a prefix that is
// empty or ends in "/".
func parseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("s3store: %w", err)
	}
	if u.Scheme != "s3" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", fmt.Errorf("s3store: %q is not s3://BUCKET[/PREFIX]", raw)
	}
	if !validBucket(u.Host) {
		return "", "", fmt.Errorf("s3store: %q: invalid bucket name %q", raw, u.Host)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// validBucket checks the S3 bucket naming rules that matter for addressing:
// 3 to 63 of [a-z0-9.-], starting and ending with a letter or digit.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '.') || i == 0 || i == len(b)-1) {
			return false
		}
	}
	return true
}

// URL returns s3://BUCKET or s3://BUCKET/PREFIX.
func (s *Store) URL() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

func (s *Store) key(k string) (string, error) {
	if k == "" {
		return "", fault.Permanentf("s3store: empty key")
	}
	// S3 keys are at most 1024 bytes of UTF-8.
	if full := s.prefix + k; len(full) <= 1024 {
		return full, nil
	}
	return "", fault.Permanentf("s3store: key %.40q... is longer than 1024 bytes with the prefix", k)
}

// Stat returns an object's description (HeadObject).
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	full, err := s.key(key)
	if err != nil {
		return store.Object{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &full})
	if err != nil {
		return store.Object{}, classify(err, "stat", key)
	}
	return store.Object{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		Meta:    out.Metadata,
	}, nil
}

// Get opens an object (GetObject). The caller closes the reader.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	full, err := s.key(key)
	if err != nil {
		return nil, store.Object{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &full})
	if err != nil {
		return nil, store.Object{}, classify(err, "get", key)
	}
	return out.Body, store.Object{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		Meta:    out.Metadata,
	}, nil
}

// List calls fn for the objects under prefix after startAfter, in lexical
// order (ListObjectsV2, 1000 keys a page). Listed objects carry no Meta.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)}
	if startAfter != "" {
		in.StartAfter = aws.String(s.prefix + startAfter)
	}
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return classify(err, "list", prefix)
		}
		for _, o := range page.Contents {
			k, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok {
				continue
			}
			if !fn(store.Object{Key: k, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}) {
				return nil
			}
		}
	}
	return nil
}

// Delete removes an object (DeleteObject); deleting a missing key succeeds.
func (s *Store) Delete(ctx context.Context, key string) error {
	full, err := s.key(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &full}); err != nil {
		return classify(err, "delete", key)
	}
	return nil
}

// Ping checks that the bucket exists and is reachable (HeadBucket).
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	err = classify(err, "ping", s.bucket)
	if errors.Is(err, store.ErrNotFound) {
		return fault.Permanentf("s3store: ping: bucket %q does not exist", s.bucket)
	}
	return err
}

// PresignGet returns a URL that GETs key without credentials for ttl (at
// most 7 days). It does not check that the key exists. A URL signed with
// temporary credentials (a Lambda or ECS role) stops working when they
// expire, whatever ttl says.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > maxPresignTTL {
		return "", fault.Permanentf("s3store: presign %s: ttl %v outside (0, %v]", key, ttl, maxPresignTTL)
	}
	full, err := s.key(key)
	if err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &full}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", classify(err, "presign", key)
	}
	return req.URL, nil
}
