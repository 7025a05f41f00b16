package smtpgw

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// userFile holds the submission listener's users: an htpasswd-style file
// of "user:hash" lines, where hash is bcrypt ($2a$, $2b$ or $2y$, as
// `htpasswd -nB user` or `smtpgw hash-password` print). Blank lines and
// lines starting with # are ignored. The file is re-read when it changes;
// an invalid new version is logged and the previous one kept.
type userFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	users   map[string][]byte
	version string
	checked time.Time
	dummy   []byte // compared against for unknown users, so timing does not tell
}

func loadUserFile(path string, log *slog.Logger) (*userFile, error) {
	u := &userFile{path: path, log: log}
	v, users, err := readUserFile(path)
	if err != nil {
		return nil, err
	}
	u.users, u.version, u.checked = users, v, time.Now()
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	if u.dummy, err = bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost); err != nil {
		return nil, err
	}
	return u, nil
}

func readUserFile(path string) (string, map[string][]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("auth users file: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("auth users file: %w", err)
	}
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return "", nil, fmt.Errorf("%s:%d: want user:bcrypt-hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return "", nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash (make one with: smtpgw hash-password, or htpasswd -nB %s)", path, n, user, user)
		}
		if _, dup := users[user]; dup {
			return "", nil, fmt.Errorf("%s:%d: user %q listed twice", path, n, user)
		}
		users[user] = []byte(hash)
	}
	return fmt.Sprintf("%d-%d", fi.ModTime().UnixNano(), fi.Size()), users, nil
}

// check verifies a password, re-reading the file first when it changed
// (checked at most once a second).
func (u *userFile) check(user, pass string) bool {
	u.mu.Lock()
	if time.Since(u.checked) >= time.Second {
		u.checked = time.Now()
		if fi, err := os.Stat(u.path); err == nil && fmt.Sprintf("%d-%d", fi.ModTime().UnixNano(), fi.Size()) != u.version {
			if v, users, err := readUserFile(u.path); err != nil {
				u.log.Error("auth users file reload failed; keeping the previous users", "err", err)
			} else {
				u.users, u.version = users, v
				u.log.Info("auth users file reloaded", "users", len(users))
			}
		}
	}
	hash, ok := u.users[user]
	u.mu.Unlock()
	if !ok {
		_ = bcrypt.CompareHashAndPassword(u.dummy, []byte(pass))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
}

// HashPassword returns a bcrypt hash for an --auth-users file line.
func HashPassword(pass string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	return string(h), err
}

// ipLimiter rate-limits failed AUTH attempts per client address: burst
// failures, then one per interval.
type ipLimiter struct {
	burst int
	every rate.Limit

	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter
}

func newIPLimiter(burst int, interval time.Duration) *ipLimiter {
	return &ipLimiter{burst: burst, every: rate.Every(interval), m: map[netip.Addr]*rate.Limiter{}}
}

// ok reports whether ip may try to authenticate now.
func (l *ipLimiter) ok(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[ip]
	return lim == nil || lim.Tokens() >= 1
}

// fail records a failed attempt.
func (l *ipLimiter) fail(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[ip]
	if lim == nil {
		if len(l.m) >= 10000 {
			// Forget addresses that have recovered fully.
			for a, ll := range l.m {
				if ll.Tokens() >= float64(l.burst) {
					delete(l.m, a)
				}
			}
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.m[ip] = lim
	}
	lim.Allow()
}
