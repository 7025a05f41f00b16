// Package storetest is the conformance suite for store.Store backends.
//
// A backend's test calls Run with a function that opens a fresh, empty
// store; every subtest opens its own. The suite pins down the parts of the
// contract that callers rely on and that the interface's types cannot say:
//
//   - Get and Stat of a missing key return store.ErrNotFound, permanent.
//   - Put is all-or-nothing: a body that fails midway, or a context
//     canceled before the commit, leaves nothing visible, and an object
//     being overwritten keeps its old body and metadata. The body's error
//     is returned wrapped, keeping its temporary/permanent class.
//   - An overwrite replaces body and metadata together; concurrent writers
//     of one key never produce a mix of two writes.
//   - Metadata (lower-case ASCII keys, ASCII values, S3's 2 KiB budget)
//     round-trips exactly through Put, Get and Stat.
//   - List visits keys in lexical byte order (the order of S3 ListObjectsV2,
//     not of a directory walk: "a-c" < "a.d" < "a/b" < "a0"), strictly
//     after startAfter, and stops when fn returns false.
//   - A key is not a directory: "a/b" existing does not make "a" exist.
//     The converse is not required: a key is never also the directory of
//     other keys ("a" and "a/b"), because the layout never needs it and
//     file-backed stores (filestore, versitygw's posix backend) cannot
//     have both.
//   - Delete is idempotent: deleting a missing key succeeds.
//   - A canceled context fails every operation with an error that is
//     context.Canceled (errors.Is) and temporary.
//   - Large bodies (20 MiB) stream through with the right size and bytes.
//   - store.PutRaw and store.Envelope round-trip, inline and for an
//     envelope too big for metadata.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// LargeSize is the size of the large bodies the suite streams: big enough
// to cross an S3 backend's multipart threshold.
const LargeSize = 20 << 20

// errBody is what failing bodies return.
var errBody = errors.New("storetest: body failed (client went away)")

// Run runs the conformance suite. open returns a new, empty store; it is
// called once per subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"Ping", testPing},
		{"URL", testURL},
		{"Missing", testMissing},
		{"PutGetStat", testPutGetStat},
		{"EmptyBody", testEmptyBody},
		{"Metadata", testMetadata},
		{"Overwrite", testOverwrite},
		{"KeyIsNotDirectory", testKeyIsNotDirectory},
		{"KeyCharacters", testKeyCharacters},
		{"List", testList},
		{"ListEarlyStop", testListEarlyStop},
		{"ListManyPages", testListManyPages},
		{"Delete", testDelete},
		{"PutFailingBody", testPutFailingBody},
		{"LargeBody", testLargeBody},
		{"ContextCanceled", testContextCanceled},
		{"PutCanceledMidway", testPutCanceledMidway},
		{"PutRaw", testPutRaw},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			tt.fn(t, s)
		})
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testURL(t *testing.T, s store.Store) {
	u := s.URL()
	if !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "s3://") {
		t.Fatalf("URL() = %q, want file://DIR or s3://BUCKET[/PREFIX]", u)
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "parsed/missing.json"
	_, err := s.Stat(ctx, key)
	WantNotFound(t, "Stat", err)
	rc, _, err := s.Get(ctx, key)
	if rc != nil {
		rc.Close()
		t.Error("Get of a missing key returned a reader")
	}
	WantNotFound(t, "Get", err)
	if !store.IsNotFound(err) {
		t.Error("store.IsNotFound(Get error) = false")
	}
	_, err = store.ReadAll(ctx, s, key)
	WantNotFound(t, "store.ReadAll", err)
}

func testPutGetStat(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "parsed/01JD000000000000000000000A.json"
	body := `{"hello":"world"}`
	meta := map[string]string{"content-type": "application/json", "x-letterbox-id": "01JD000000000000000000000A"}
	before := time.Now()
	obj, err := s.Put(ctx, key, strings.NewReader(body), meta)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	checkObject(t, "Put", obj, key, int64(len(body)), meta, before)

	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	checkObject(t, "Stat", st, key, int64(len(body)), meta, before)

	got, gobj := MustGet(t, s, key)
	if got != body {
		t.Errorf("Get body = %q, want %q", got, body)
	}
	checkObject(t, "Get", gobj, key, int64(len(body)), meta, before)

	var v map[string]string
	if err := store.GetJSON(ctx, s, key, &v); err != nil || v["hello"] != "world" {
		t.Errorf("store.GetJSON = %v, %v", v, err)
	}
}

func testEmptyBody(t *testing.T, s store.Store) {
	const key = "deliveries/01JD000000000000000000000A/empty.json"
	obj, err := s.Put(t.Context(), key, strings.NewReader(""), nil)
	if err != nil {
		t.Fatalf("Put empty: %v", err)
	}
	if obj.Size != 0 {
		t.Errorf("Put empty: Size = %d", obj.Size)
	}
	got, gobj := MustGet(t, s, key)
	if got != "" || gobj.Size != 0 {
		t.Errorf("Get empty = %q (Size %d)", got, gobj.Size)
	}
}

func testMetadata(t *testing.T, s store.Store) {
	// The largest inline envelope PutRaw writes is 1800 characters.
	long := strings.Repeat("eyJtYWlsX2Zyb20iOiJh", 90)
	tests := []struct {
		name string
		meta map[string]string
	}{
		{"nil", nil},
		{"empty", map[string]string{}},
		{"one", map[string]string{"content-type": "message/rfc822"}},
		{"several", map[string]string{"a": "1", "b-c": "two words", "d_e.f": "x=y;z", "letterbox-id": "01JD000000000000000000000A"}},
		{"envelope-sized value", map[string]string{store.MetaEnvelope: long}},
		{"empty value", map[string]string{"note": ""}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("meta/%02d", i)
			if _, err := s.Put(t.Context(), key, strings.NewReader("body"), tt.meta); err != nil {
				t.Fatalf("Put: %v", err)
			}
			st, err := s.Stat(t.Context(), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			WantMeta(t, "Stat", st.Meta, tt.meta)
			_, gobj := MustGet(t, s, key)
			WantMeta(t, "Get", gobj.Meta, tt.meta)
		})
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "parsed/overwrite.json"
	if _, err := s.Put(ctx, key, strings.NewReader("a longer first version"), map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatalf("Put v1: %v", err)
	}
	// Shorter, so a backend that writes in place without truncating shows.
	v2meta := map[string]string{"c": "3"}
	if _, err := s.Put(ctx, key, strings.NewReader("v2"), v2meta); err != nil {
		t.Fatalf("Put v2: %v", err)
	}
	got, obj := MustGet(t, s, key)
	if got != "v2" || obj.Size != 2 {
		t.Errorf("after overwrite: body %q, Size %d; want \"v2\", 2", got, obj.Size)
	}
	WantMeta(t, "Get after overwrite", obj.Meta, v2meta)
	WantKeys(t, s, "", "", []string{key})
}

func testKeyIsNotDirectory(t *testing.T, s store.Store) {
	ctx := t.Context()
	MustPut(t, s, "attachments/01JD/1/file.txt", "x", nil)
	for _, key := range []string{"attachments/01JD/1", "attachments/01JD", "attachments", "attachments/01JD/1/"} {
		_, err := s.Stat(ctx, key)
		WantNotFound(t, fmt.Sprintf("Stat(%q)", key), err)
		rc, _, err := s.Get(ctx, key)
		if rc != nil {
			rc.Close()
		}
		WantNotFound(t, fmt.Sprintf("Get(%q)", key), err)
	}
}

func testKeyCharacters(t *testing.T, s store.Store) {
	// Attachment names come from senders.
	keys := []string{
		"attachments/01JD/1/Rechnung März 2026 (final)+v2.pdf",
		"attachments/01JD/2/a%20b&c=d?e#f.txt",
		"attachments/01JD/3/日本語.txt",
		"raw/SES+id with spaces",
	}
	for i, key := range keys {
		MustPut(t, s, key, fmt.Sprint(i), map[string]string{"n": fmt.Sprint(i)})
	}
	for i, key := range keys {
		got, obj := MustGet(t, s, key)
		if got != fmt.Sprint(i) || obj.Key != key {
			t.Errorf("Get(%q) = %q, key %q", key, got, obj.Key)
		}
	}
	WantKeys(t, s, "", "", sorted(keys))
}

func testList(t *testing.T, s store.Store) {
	// Byte order: '-' 0x2d < '.' 0x2e < '/' 0x2f < '0' 0x30. A directory
	// walk would visit list/a/b before list/a-c.
	all := []string{
		"deliveries/01A/j1.json",
		"list/a-c",
		"list/a.d",
		"list/a/b",
		"list/a/c",
		"list/a0",
		"list/b",
		"raw/01A.eml",
		"raw/01B.eml",
		"raw/01C.eml",
	}
	sizes := map[string]int64{}
	for i, key := range slices.Backward(all) { // written out of order
		body := strings.Repeat("x", i+1)
		MustPut(t, s, key, body, map[string]string{"k": "v"})
		sizes[key] = int64(len(body))
	}
	tests := []struct {
		name, prefix, startAfter string
		want                     []string
	}{
		{"all", "", "", all},
		{"prefix", "raw/", "", all[7:]},
		{"prefix not at a slash", "list/a", "", all[1:6]},
		{"startAfter existing key", "raw/", "raw/01A.eml", all[8:]},
		{"startAfter missing key", "raw/", "raw/01AZ", all[8:]},
		{"startAfter before prefix", "raw/", "list/zzz", all[7:]},
		{"startAfter past prefix", "list/", "list/zzz", nil},
		{"startAfter last key", "", "raw/01C.eml", nil},
		{"no match", "parsed/", "", nil},
		{"exact key as prefix", "list/a/b", "", all[3:4]},
		{"directory prefix", "list/a/", "", all[3:5]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := s.List(t.Context(), tt.prefix, tt.startAfter, func(o store.Object) bool {
				got = append(got, o.Key)
				if o.Size != sizes[o.Key] {
					t.Errorf("List: %s has Size %d, want %d", o.Key, o.Size, sizes[o.Key])
				}
				if o.ModTime.IsZero() {
					t.Errorf("List: %s has no ModTime", o.Key)
				}
				return true
			})
			if err != nil {
				t.Fatalf("List(%q, %q): %v", tt.prefix, tt.startAfter, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("List(%q, %q) =\n\t%q\nwant\n\t%q", tt.prefix, tt.startAfter, got, tt.want)
			}
		})
	}
}

func testListEarlyStop(t *testing.T, s store.Store) {
	keys := []string{"raw/1", "raw/2", "raw/3", "raw/4", "raw/5"}
	for _, k := range keys {
		MustPut(t, s, k, k, nil)
	}
	for _, stopAfter := range []int{1, 2, 5} {
		var got []string
		err := s.List(t.Context(), "raw/", "", func(o store.Object) bool {
			got = append(got, o.Key)
			return len(got) < stopAfter
		})
		if err != nil {
			t.Fatalf("List stopping after %d: %v", stopAfter, err)
		}
		if !slices.Equal(got, keys[:stopAfter]) {
			t.Errorf("List stopping after %d visited %q", stopAfter, got)
		}
	}
}

// testListManyPages writes more keys than S3 returns in one page (1000).
func testListManyPages(t *testing.T, s store.Store) {
	const n = 1010
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("deliveries/01JD/%05d.json", i)
	}
	work := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 16 {
		wg.Go(func() {
			for k := range work {
				if _, err := s.Put(t.Context(), k, strings.NewReader("{}"), nil); err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	WantKeys(t, s, "deliveries/", "", keys)
	WantKeys(t, s, "deliveries/", keys[998], keys[999:])
	var got []string
	if err := s.List(t.Context(), "deliveries/", "", func(o store.Object) bool {
		got = append(got, o.Key)
		return len(got) < 1001
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(got, keys[:1001]) {
		t.Errorf("List stopping after 1001 visited %d keys, last %q", len(got), got[len(got)-1])
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "parsed/delete.json"
	MustPut(t, s, key, "x", map[string]string{"a": "b"})
	MustPut(t, s, "parsed/keep.json", "y", nil)
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Stat(ctx, key)
	WantNotFound(t, "Stat after Delete", err)
	WantKeys(t, s, "", "", []string{"parsed/keep.json"})
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil (Delete is idempotent)", err)
	}
	MustPut(t, s, key, "again", nil)
	if got, obj := MustGet(t, s, key); got != "again" || len(obj.Meta) != 0 {
		t.Errorf("Put after Delete: %q, meta %v", got, obj.Meta)
	}
}

func testPutFailingBody(t *testing.T, s store.Store) {
	tests := []struct {
		name     string
		existing bool
		after    int64
	}{
		{"new key, small body", false, 1000},
		{"new key, large body", false, LargeSize - 1000},
		{"existing key, small body", true, 1000},
		{"existing key, large body", true, LargeSize - 1000},
		{"new key, nothing read", false, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := fmt.Sprintf("failing/%d/", i)
			key := dir + "msg.eml"
			oldMeta := map[string]string{"version": "old"}
			if tt.existing {
				MustPut(t, s, key, "old body", oldMeta)
			}
			// A permanent failure of the body must stay permanent: the
			// store must not reclassify its caller's errors.
			body := &FailingReader{R: NewBody(1, LargeSize), After: tt.after, Err: fault.Permanent(errBody)}
			_, err := s.Put(ctx, key, body, map[string]string{"version": "new"})
			if !errors.Is(err, errBody) {
				t.Fatalf("Put with a failing body: err = %v, want it to wrap the body's error", err)
			}
			if fault.IsTemporary(err) {
				t.Errorf("Put with a permanently failing body: error %v is temporary, want the body's class (permanent)", err)
			}
			if tt.existing {
				got, obj := MustGet(t, s, key)
				if got != "old body" {
					t.Errorf("old object changed: %q", got)
				}
				WantMeta(t, "old object", obj.Meta, oldMeta)
				WantKeys(t, s, dir, "", []string{key})
			} else {
				_, err := s.Stat(ctx, key)
				WantNotFound(t, "Stat after failed Put", err)
				WantKeys(t, s, dir, "", nil)
			}
		})
	}
	// No debris (temporary files, parts) anywhere in the store.
	WantKeys(t, s, "", "", []string{"failing/2/msg.eml", "failing/3/msg.eml"})
	// A temporary failure stays temporary.
	body := &FailingReader{R: NewBody(1, 100), After: 10, Err: fault.Temporary(errBody)}
	_, err := s.Put(t.Context(), "failing/temp.eml", body, nil)
	if !errors.Is(err, errBody) || !fault.IsTemporary(err) {
		t.Errorf("Put with a temporarily failing body: err = %v (temporary %v), want the body's error, temporary", err, fault.IsTemporary(err))
	}
}

func testLargeBody(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "raw/large.eml"
	meta := map[string]string{"size-class": "large"}
	obj, err := s.Put(ctx, key, NewBody(7, LargeSize), meta)
	if err != nil {
		t.Fatalf("Put %d bytes: %v", LargeSize, err)
	}
	if obj.Size != LargeSize {
		t.Errorf("Put: Size = %d, want %d", obj.Size, LargeSize)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if st.Size != LargeSize {
		t.Errorf("Stat: Size = %d, want %d", st.Size, LargeSize)
	}
	WantMeta(t, "Stat", st.Meta, meta)
	rc, gobj, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	if gobj.Size != LargeSize {
		t.Errorf("Get: Size = %d, want %d", gobj.Size, LargeSize)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if n != LargeSize {
		t.Fatalf("read %d bytes, want %d", n, LargeSize)
	}
	if !bytes.Equal(h.Sum(nil), Digest(7, LargeSize)) {
		t.Fatal("large body came back with different bytes")
	}
	var listed int64 = -1
	if err := s.List(ctx, key, "", func(o store.Object) bool { listed = o.Size; return false }); err != nil {
		t.Fatalf("List: %v", err)
	}
	if listed != LargeSize {
		t.Errorf("List: Size = %d, want %d", listed, LargeSize)
	}
}

func testContextCanceled(t *testing.T, s store.Store) {
	const key = "parsed/present.json"
	MustPut(t, s, key, "present", nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Put(ctx, "parsed/new.json", strings.NewReader("x"), nil)
	WantCanceled(t, "Put", err)
	_, err = s.Put(ctx, "parsed/large.json", NewBody(2, LargeSize), nil)
	WantCanceled(t, "Put large", err)
	rc, _, err := s.Get(ctx, key)
	if rc != nil {
		rc.Close()
	}
	WantCanceled(t, "Get", err)
	_, err = s.Stat(ctx, key)
	WantCanceled(t, "Stat", err)
	called := false
	err = s.List(ctx, "", "", func(store.Object) bool { called = true; return true })
	WantCanceled(t, "List", err)
	if called {
		t.Error("List with a canceled context called fn")
	}
	WantCanceled(t, "Delete", s.Delete(ctx, key))
	WantCanceled(t, "Ping", s.Ping(ctx))

	// Nothing happened.
	if got, _ := MustGet(t, s, key); got != "present" {
		t.Errorf("object changed to %q", got)
	}
	WantKeys(t, s, "", "", []string{key})
}

func testPutCanceledMidway(t *testing.T, s store.Store) {
	tests := []struct {
		name   string
		size   int64
		cancel int64
	}{
		{"small body", 64 << 10, 32 << 10},
		{"large body, early", LargeSize, 1 << 20},
		{"large body, late", LargeSize, LargeSize - (1 << 20)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			key := fmt.Sprintf("raw/canceled-%d.eml", i)
			body := &cancelingReader{r: NewBody(3, tt.size), after: tt.cancel, cancel: cancel}
			_, err := s.Put(ctx, key, body, nil)
			WantCanceled(t, "Put canceled midway", err)
			_, err = s.Stat(t.Context(), key)
			WantNotFound(t, "Stat after canceled Put", err)
			WantKeys(t, s, "", "", nil)
		})
	}
}

func testPutRaw(t *testing.T, s store.Store) {
	ctx := t.Context()
	received := time.Date(2026, 11, 22, 16, 37, 8, 123456789, time.UTC)
	small := message.Envelope{
		MailFrom:   "alice@example.org",
		RcptTo:     []string{"bob@example.com", "carol+tag@example.com"},
		ClientIP:   "192.0.2.1",
		HELO:       "mail.example.org",
		TLS:        true,
		TLSVersion: "TLS 1.3",
		SMTPUTF8:   true,
		ReceivedAt: received,
		Source:     "gateway",
	}
	big := small
	big.RcptTo = nil
	for i := range 300 {
		big.RcptTo = append(big.RcptTo, fmt.Sprintf("recipient-%03d@example.com", i))
	}
	tests := []struct {
		name   string
		id     string
		env    message.Envelope
		inline bool
	}{
		{"inline envelope", "01JD0000000000000000000001", small, true},
		{"envelope object", "01JD0000000000000000000002", big, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const raw = "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
			obj, err := store.PutRaw(ctx, s, tt.id, tt.env, strings.NewReader(raw))
			if err != nil {
				t.Fatalf("PutRaw: %v", err)
			}
			if obj.Key != store.RawKey(tt.id) || obj.Size != int64(len(raw)) {
				t.Errorf("PutRaw returned key %q size %d", obj.Key, obj.Size)
			}
			st, err := s.Stat(ctx, store.RawKey(tt.id))
			if err != nil {
				t.Fatalf("Stat raw: %v", err)
			}
			if tt.inline {
				if st.Meta[store.MetaEnvelope] == "" || st.Meta[store.MetaEnvelopeKey] != "" {
					t.Errorf("small envelope not inline: meta %v", st.Meta)
				}
				_, err := s.Stat(ctx, store.EnvelopeKey(tt.id))
				WantNotFound(t, "Stat envelope object of an inline envelope", err)
			} else if st.Meta[store.MetaEnvelopeKey] != store.EnvelopeKey(tt.id) {
				t.Errorf("big envelope: raw meta %v, want %s=%s", st.Meta, store.MetaEnvelopeKey, store.EnvelopeKey(tt.id))
			}
			env, err := store.Envelope(ctx, s, st)
			if err != nil {
				t.Fatalf("Envelope: %v", err)
			}
			if env == nil {
				t.Fatal("Envelope = nil")
			}
			want, _ := json.Marshal(tt.env)
			got, _ := json.Marshal(env)
			if !bytes.Equal(got, want) {
				t.Errorf("Envelope =\n\t%s\nwant\n\t%s", got, want)
			}
			if id, ok := store.IDFromRawKey(st.Key); !ok || id != tt.id {
				t.Errorf("IDFromRawKey(%q) = %q, %v", st.Key, id, ok)
			}
		})
	}
	t.Run("no envelope", func(t *testing.T) {
		obj := MustPut(t, s, "raw/ses-object", "x", nil)
		env, err := store.Envelope(ctx, s, obj)
		if env != nil || err != nil {
			t.Errorf("Envelope of a raw object without one = %v, %v; want nil, nil", env, err)
		}
	})
	t.Run("envelope object missing", func(t *testing.T) {
		obj := MustPut(t, s, "raw/dangling.eml", "x", map[string]string{store.MetaEnvelopeKey: store.EnvelopeKey("dangling")})
		_, err := store.Envelope(ctx, s, obj)
		WantNotFound(t, "Envelope with a missing envelope object", err)
	})
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	ctx := t.Context()
	const distinct, same = 24, 8
	const shared = "raw/shared.eml"
	var wg sync.WaitGroup
	errs := make(chan error, distinct+same)
	body := func(i int) string { return strings.Repeat(fmt.Sprintf("writer %03d\n", i), 1000+i) }
	for i := range distinct {
		wg.Go(func() {
			if _, err := s.Put(ctx, fmt.Sprintf("raw/c%03d.eml", i), strings.NewReader(body(i)), map[string]string{"writer": fmt.Sprint(i)}); err != nil {
				errs <- err
			}
		})
	}
	for i := range same {
		wg.Go(func() {
			if _, err := s.Put(ctx, shared, strings.NewReader(body(100+i)), map[string]string{"writer": fmt.Sprint(100 + i)}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Put: %v", err)
	}
	for i := range distinct {
		key := fmt.Sprintf("raw/c%03d.eml", i)
		got, obj := MustGet(t, s, key)
		if got != body(i) || obj.Meta["writer"] != fmt.Sprint(i) {
			t.Errorf("%s: %d bytes, writer %q; want writer %d's body and meta", key, len(got), obj.Meta["writer"], i)
		}
	}
	got, obj := MustGet(t, s, shared)
	var w int
	if _, err := fmt.Sscan(obj.Meta["writer"], &w); err != nil || w < 100 || w >= 100+same {
		t.Fatalf("%s: meta writer %q is none of the writers", shared, obj.Meta["writer"])
	}
	if got != body(w) {
		t.Errorf("%s: metadata says writer %d but the body is not that writer's (%d bytes): writes mixed", shared, w, len(got))
	}
	if n := countKeys(t, s, ""); n != distinct+1 {
		t.Errorf("List sees %d objects, want %d", n, distinct+1)
	}
}

// MustPut stores body under key.
func MustPut(t testing.TB, s store.Store, key, body string, meta map[string]string) store.Object {
	t.Helper()
	obj, err := s.Put(context.Background(), key, strings.NewReader(body), meta)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return obj
}

// MustGet reads a whole object.
func MustGet(t testing.TB, s store.Store, key string) (string, store.Object) {
	t.Helper()
	rc, obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): reading: %v", key, err)
	}
	return string(b), obj
}

// WantNotFound fails unless err is store.ErrNotFound and permanent.
func WantNotFound(t testing.TB, op string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: err = %v, want store.ErrNotFound", op, err)
		return
	}
	if fault.IsTemporary(err) {
		t.Errorf("%s: not-found error %v is temporary, want permanent", op, err)
	}
}

// WantCanceled fails unless err is context.Canceled and temporary.
func WantCanceled(t testing.TB, op string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s with a canceled context: err = %v, want context.Canceled", op, err)
		return
	}
	if !fault.IsTemporary(err) {
		t.Errorf("%s with a canceled context: error %v is permanent, want temporary", op, err)
	}
}

// WantMeta compares metadata; nil and empty are the same.
func WantMeta(t testing.TB, op string, got, want map[string]string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s: meta = %v, want %v", op, got, want)
	}
}

// WantKeys fails unless List(prefix, startAfter) visits exactly want.
func WantKeys(t testing.TB, s store.Store, prefix, startAfter string, want []string) {
	t.Helper()
	var got []string
	if err := s.List(context.Background(), prefix, startAfter, func(o store.Object) bool {
		got = append(got, o.Key)
		return true
	}); err != nil {
		t.Fatalf("List(%q, %q): %v", prefix, startAfter, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(%q, %q) = %d keys %s, want %d keys %s", prefix, startAfter, len(got), abbrev(got), len(want), abbrev(want))
	}
}

func countKeys(t testing.TB, s store.Store, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(context.Background(), prefix, "", func(store.Object) bool { n++; return true }); err != nil {
		t.Fatalf("List: %v", err)
	}
	return n
}

func checkObject(t *testing.T, op string, o store.Object, key string, size int64, meta map[string]string, before time.Time) {
	t.Helper()
	if o.Key != key {
		t.Errorf("%s: Key = %q, want %q", op, o.Key, key)
	}
	if o.Size != size {
		t.Errorf("%s: Size = %d, want %d", op, o.Size, size)
	}
	WantMeta(t, op, o.Meta, meta)
	// Stores may round to the second (S3 does); allow for clock steps.
	if d := o.ModTime.Sub(before); o.ModTime.IsZero() || d < -5*time.Second || d > 5*time.Minute {
		t.Errorf("%s: ModTime = %v, want about %v", op, o.ModTime, before)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func abbrev(keys []string) string {
	if len(keys) > 8 {
		return fmt.Sprintf("%q ... %q", keys[:4], keys[len(keys)-4:])
	}
	return fmt.Sprintf("%q", keys)
}
