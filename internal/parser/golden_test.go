package parser

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json from the parser's output")

// memStore is an in-memory store.Store for tests.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	meta map[string]map[string]string
	// failOn makes Put fail for keys containing it.
	failOn string
	err    error
}

func newMemStore() *memStore {
	return &memStore{objs: map[string][]byte{}, meta: map[string]map[string]string{}}
}

func (m *memStore) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	if m.failOn != "" && strings.Contains(key, m.failOn) {
		// Read a little, as a real store would before failing.
		io.CopyN(io.Discard, body, 10)
		return store.Object{}, m.err
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return store.Object{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = b
	m.meta[key] = meta
	return store.Object{Key: key, Size: int64(len(b)), Meta: meta}, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, store.Object{}, store.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), store.Object{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) Stat(ctx context.Context, key string) (store.Object, error) {
	_, o, err := m.Get(ctx, key)
	return o, err
}

func (m *memStore) List(ctx context.Context, prefix, startAfter string, fn func(store.Object) bool) error {
	m.mu.Lock()
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) && k > startAfter {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		if !fn(store.Object{Key: k}) {
			break
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *memStore) Ping(ctx context.Context) error { return nil }
func (m *memStore) URL() string                    { return "mem://" }

const goldenID = "01HMGOLDEN00000000000000000"

var goldenTime = time.Date(2024, 1, 22, 12, 0, 0, 0, time.UTC)

func goldenEnvelope() *message.Envelope {
	return &message.Envelope{
		MailFrom:   "bounce+srs=abc@sender.example",
		RcptTo:     []string{"support+ticket-42@letterbox.test", "ops@letterbox.test"},
		ClientIP:   "192.0.2.1",
		HELO:       "mail.sender.example",
		TLS:        true,
		ReceivedAt: goldenTime,
		Source:     "gateway",
	}
}

// encodeJSON is how letterbox prints messages: indented, HTML not escaped.
func encodeJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return b.Bytes()
}

func corpusFiles() ([]string, error) { return filepath.Glob("testdata/*.eml") }

func corpus(t testing.TB) []string {
	t.Helper()
	files, err := corpusFiles()
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.eml: %v", err)
	}
	return files
}

// TestGolden parses every testdata/*.eml and compares the JSON with the
// .json beside it; go test -run TestGolden -update rewrites them. It also
// checks that every attachment's bytes reached the store intact.
func TestGolden(t *testing.T) {
	for _, path := range corpus(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			st := newMemStore()
			m, err := Parse(context.Background(), bytes.NewReader(raw), Options{
				ID: goldenID, RawKey: store.RawKey(goldenID), Envelope: goldenEnvelope(), Store: st,
				Now: func() time.Time { return goldenTime },
			})
			if err != nil {
				t.Fatal(err)
			}
			if m.Size != int64(len(raw)) {
				t.Errorf("Size = %d, want %d", m.Size, len(raw))
			}
			for _, a := range m.Attachments {
				b, ok := st.objs[a.Key]
				if !ok {
					t.Errorf("attachment %q: key %q not in the store", a.Filename, a.Key)
					continue
				}
				sum := sha256.Sum256(b)
				if int64(len(b)) != a.Size || hex.EncodeToString(sum[:]) != a.SHA256 {
					t.Errorf("attachment %q: stored %d bytes with sha256 %x, JSON says %d, %s", a.Filename, len(b), sum, a.Size, a.SHA256)
				}
			}
			if len(st.objs) != len(m.Attachments) {
				t.Errorf("store holds %d objects for %d attachments", len(st.objs), len(m.Attachments))
			}
			got := encodeJSON(m)
			golden := strings.TrimSuffix(path, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON differs from %s (run with -update to accept):\n%s", golden, diffLines(string(want), string(got)))
			}
		})
	}
}

// diffLines shows the first differing lines.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want " + wl + "\n  got  " + gl + "\n")
			n++
		}
	}
	return b.String()
}

type messageT = message.Message

func fixedNow() time.Time { return goldenTime }

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
