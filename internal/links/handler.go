package links

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

// DefaultRedirectTTL is how long the URL a Handler redirects to lives: long
// enough to follow the redirect, short enough that a copied URL is of no
// use. S3 checks it when a download starts, not while it runs.
const DefaultRedirectTTL = 5 * time.Minute

// Handler serves links: GET or HEAD BASE/TOKEN, the path relative to where
// it is mounted (http.StripPrefix in `letterbox dev`, the root of a
// function URL). Its answers:
//
//	200  the object (HEAD: its headers; GET without Redirect: its bytes)
//	302  GET with Redirect: to a URL Redirect presigns for RedirectTTL
//	403  a malformed or tampered token, one signed with a key that is no
//	     longer accepted (revoked by rotation), or one naming a key that may
//	     not be linked
//	404  a valid link whose object is gone
//	405  a method other than GET and HEAD
//	410  a valid link past its expiry
//	500  the store refused (permanent error); 503 it is unavailable (temporary)
//
// Logs name the object key and the outcome, never the token.
type Handler struct {
	Keys  *Keyring
	Store store.Store
	// Redirect, when set, answers GET with a redirect to a URL it makes
	// (the S3 store's presigned URL, signed with the credentials the
	// function has now); when nil, GET streams the object from Store.
	Redirect    store.Presigner
	RedirectTTL time.Duration // default DefaultRedirectTTL
	// Now is the clock the expiry is checked against; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger // nil: slog.Default()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	token := strings.TrimPrefix(r.URL.Path, "/")
	key, err := h.Keys.Verify(token, now())
	switch {
	case errors.Is(err, ErrExpired):
		log.Info("link expired", "key", key)
		http.Error(w, "this link has expired", http.StatusGone)
		return
	case err != nil:
		log.Info("link refused: invalid token")
		http.Error(w, "invalid link", http.StatusForbidden)
		return
	}
	ctx := r.Context()
	var (
		obj  store.Object
		body io.ReadCloser
	)
	if r.Method == http.MethodGet && h.Redirect == nil {
		body, obj, err = h.Store.Get(ctx, key)
	} else {
		obj, err = h.Store.Stat(ctx, key)
	}
	if err != nil {
		h.storeError(w, log, key, err)
		return
	}
	if r.Method == http.MethodGet && h.Redirect != nil {
		ttl := h.RedirectTTL
		if ttl <= 0 {
			ttl = DefaultRedirectTTL
		}
		u, err := h.Redirect.PresignGet(ctx, key, ttl)
		if err != nil {
			h.storeError(w, log, key, err)
			return
		}
		log.Info("link followed", "key", key, "status", http.StatusFound)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Location", u)
		w.WriteHeader(http.StatusFound)
		return
	}
	ct := obj.Meta["content-type"]
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(obj.Size, 10))
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if body == nil {
		return // HEAD
	}
	defer body.Close()
	log.Info("link followed", "key", key, "status", http.StatusOK)
	if _, err := io.Copy(w, body); err != nil {
		log.Warn("link: copy interrupted", "key", key, "err", err)
	}
}

func (h *Handler) storeError(w http.ResponseWriter, log *slog.Logger, key string, err error) {
	switch {
	case store.IsNotFound(err):
		log.Info("link refused: object not found", "key", key)
		http.Error(w, "not found", http.StatusNotFound)
	case fault.IsTemporary(err):
		log.Warn("link: store unavailable", "key", key, "err", err)
		http.Error(w, "store unavailable, try again", http.StatusServiceUnavailable)
	default:
		log.Error("link: store refused", "key", key, "err", err)
		http.Error(w, "cannot serve this link", http.StatusInternalServerError)
	}
}

// FunctionURL adapts h to a Lambda function URL (payload format 2.0,
// buffered invoke mode). The answer is buffered: h must answer in small
// bodies, as a Handler with Redirect does.
func FunctionURL(h http.Handler) func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	return func(ctx context.Context, in events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
		u := &url.URL{Path: in.RawPath, RawQuery: in.RawQueryString}
		req, err := http.NewRequestWithContext(ctx, in.RequestContext.HTTP.Method, u.String(), strings.NewReader(in.Body))
		if err != nil {
			return events.LambdaFunctionURLResponse{StatusCode: http.StatusBadRequest, Body: "bad request\n"}, nil
		}
		for k, v := range in.Headers {
			req.Header.Set(k, v)
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		out := events.LambdaFunctionURLResponse{StatusCode: rec.status, Headers: map[string]string{}, Body: rec.body.String()}
		if out.StatusCode == 0 {
			out.StatusCode = http.StatusOK
		}
		for k, v := range rec.header {
			out.Headers[k] = strings.Join(v, ", ")
		}
		return out, nil
	}
}

// recorder is the http.ResponseWriter FunctionURL hands to its handler.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
