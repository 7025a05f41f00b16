package localserve

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
)

// links serves stored objects behind time-limited signed URLs: what S3
// presigned URLs are on AWS, for attachment links in `letterbox dev`.
type links struct {
	base string // http://HOST:PORT
	key  []byte
	st   store.Store
}

func newLinks(base string, st store.Store) *links {
	k := make([]byte, 32)
	rand.Read(k)
	return &links{base: base, key: k, st: st}
}

func (l *links) sig(key string, exp int64) string {
	mac := hmac.New(sha256.New, l.key)
	fmt.Fprintf(mac, "%s\n%d", key, exp)
	return hex.EncodeToString(mac.Sum(nil))
}

// PresignGet returns a link to key valid for ttl.
func (l *links) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	exp := time.Now().Add(ttl).Unix()
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return fmt.Sprintf("%s/dev/objects/%s?expires=%d&sig=%s", l.base, strings.Join(segs, "/"), exp, l.sig(key, exp)), nil
}

// ServeHTTP serves GET /dev/objects/KEY?expires=…&sig=….
func (l *links) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/dev/objects/")
	exp, err := strconv.ParseInt(r.URL.Query().Get("expires"), 10, 64)
	if err != nil || !hmac.Equal([]byte(r.URL.Query().Get("sig")), []byte(l.sig(key, exp))) {
		http.Error(w, "invalid link signature", http.StatusForbidden)
		return
	}
	if time.Now().Unix() > exp {
		http.Error(w, "link expired", http.StatusForbidden)
		return
	}
	rc, obj, err := l.st.Get(r.Context(), key)
	if store.IsNotFound(err) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	defer rc.Close()
	if ct := obj.Meta["content-type"]; ct != "" {
		w.Header().Set("Content-Type", ct)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Content-Length", strconv.FormatInt(obj.Size, 10))
	io.Copy(w, rc)
}
