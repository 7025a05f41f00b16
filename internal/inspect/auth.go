package inspect

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// TokenEnv names the environment variable holding the inspector's token.
const TokenEnv = "LETTERBOX_INSPECT_TOKEN"

// tokenCookie holds the token in the browser after a ?token= login.
const tokenCookie = "letterbox_inspect_token"

// ErrTokenRequired is returned by CheckBind for a non-loopback address
// without a token.
var ErrTokenRequired = errors.New("the inspector binds to a non-loopback address only with a token: set " + TokenEnv)

// IsLoopback reports whether a listen address accepts only local
// connections: 127.0.0.0/8, ::1 or localhost. An empty host (":8025")
// listens on every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckBind refuses a non-loopback listen address without a token.
func CheckBind(addr, token string) error {
	if IsLoopback(addr) || token != "" {
		return nil
	}
	return fmt.Errorf("--http %s: %w", addr, ErrTokenRequired)
}

// authorize wraps h so that, when token is set, every request must carry
// it: "Authorization: Bearer TOKEN", or the cookie a browser gets by
// opening any page with ?token=TOKEN once. The comparison takes constant
// time (of hashes, so the length leaks nothing either).
func authorize(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	ok := func(got string) bool {
		sum := sha256.Sum256([]byte(got))
		return got != "" && subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && ok(bearer) {
			h.ServeHTTP(w, r)
			return
		}
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet {
			if !ok(t) {
				unauthorized(w)
				return
			}
			// Log in: keep the token in a cookie and drop it from the
			// address bar (and from what the page's links carry on).
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			q := r.URL.Query()
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		if c, err := r.Cookie(tokenCookie); err == nil && ok(c.Value) {
			h.ServeHTTP(w, r)
			return
		}
		unauthorized(w)
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="letterbox inspector"`)
	http.Error(w, "401 unauthorized: send Authorization: Bearer $"+TokenEnv+", or open the inspector once with ?token=…", http.StatusUnauthorized)
}
