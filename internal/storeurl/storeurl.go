// Package storeurl opens a store from its URL: file://DIR (or a bare path)
// for the embedded file store, s3://BUCKET[/PREFIX] for S3.
package storeurl

import (
	"context"

	"fmt"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"io"
	"strings"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/s3store"
	"github.com/letterboxmail/letterbox/internal/store"
)

// Open opens the store at rawURL. The returned closer releases it.
func Open(ctx context.Context, rawURL string) (store.Store, io.Closer, error) {
	switch {
	case strings.HasPrefix(rawURL, "s3://"):
		s, err := s3store.New(ctx, rawURL)
		if err != nil {
			return nil, nil, err
		}
		return s, io.NopCloser(nil), nil
	case strings.HasPrefix(rawURL, "file://"):
		return openFile(strings.TrimPrefix(rawURL, "file://"))
	case strings.Contains(rawURL, "://"):
		return nil, nil, fmt.Errorf("store %q: unsupported scheme (use file://DIR or s3://BUCKET[/PREFIX])", rawURL)
	case rawURL == "":
		return nil, nil, fmt.Errorf("no store given (use file://DIR or s3://BUCKET[/PREFIX])")
	default:
		return openFile(rawURL)
	}
}

func openFile(dir string) (store.Store, io.Closer, error) {
	if dir == "" {
		return nil, nil, fmt.Errorf("store file:// needs a directory")
	}
	s, err := filestore.New(dir)
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

// Bucket returns the bucket name a store's events should carry: the S3
// bucket, or the directory's base name for the file store.
func Bucket(rawURL string) string {
	u := strings.TrimPrefix(strings.TrimPrefix(rawURL, "s3://"), "file://")
	u = strings.TrimRight(u, "/")
	if strings.HasPrefix(rawURL, "s3://") {
		b, _, _ := strings.Cut(u, "/")
		return b
	}
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// Prefix returns the key prefix S3 event notifications carry for a store:
// "PREFIX/" for s3://BUCKET/PREFIX, "" otherwise.
func Prefix(rawURL string) string {
	rest, ok := strings.CutPrefix(rawURL, "s3://")
	if !ok {
		return ""
	}
	_, prefix, _ := strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return ""
	}
	return prefix + "/"
}

// RoutesLoader returns the loader for a routes location: s3://BUCKET/KEY
// for an S3 object, ssm:///PARAMETER/NAME for an SSM parameter, otherwise a
// local file path.
func RoutesLoader(ctx context.Context, ref string) (routing.Loader, error) {
	switch {
	case strings.HasPrefix(ref, "s3://"):
		bucket, key, ok := strings.Cut(strings.TrimPrefix(ref, "s3://"), "/")
		if !ok || key == "" || bucket == "" {
			return nil, fmt.Errorf("routes %q: want s3://BUCKET/KEY", ref)
		}
		s, err := s3store.New(ctx, "s3://"+bucket)
		if err != nil {
			return nil, err
		}
		return routing.StoreLoader{Store: s, Key: key, Source: ref}, nil
	case strings.HasPrefix(ref, "ssm://"):
		name := strings.TrimPrefix(ref, "ssm://")
		if name == "" || name == "/" {
			return nil, fmt.Errorf("routes %q: want ssm:///PARAMETER/NAME", ref)
		}
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, err
		}
		return SSMLoader{API: ssm.NewFromConfig(cfg), Parameter: name}, nil
	case strings.Contains(ref, "://"):
		return nil, fmt.Errorf("routes %q: unsupported location (use a file path, s3://BUCKET/KEY or ssm:///NAME)", ref)
	case ref == "":
		return nil, fmt.Errorf("no routes file given")
	}
	return routing.FileLoader(ref), nil
}
