package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Source reads messages and their records from a store, never writing to
// it: what the inspector shows.
type Source struct {
	Store store.Store
	// Log receives what the index cannot read; nil is slog.Default().
	Log *slog.Logger
	// MaxBodyBytes is the parser's body limit for messages the store keeps
	// no parsed JSON of; zero is the parser's default.
	MaxBodyBytes int
}

func (s Source) logf(ctx context.Context, msg string, args ...any) {
	l := s.Log
	if l == nil {
		l = slog.Default()
	}
	l.WarnContext(ctx, msg, args...)
}

func (s Source) journal() delivery.Journal { return delivery.Journal{Store: s.Store} }

// rawKey finds the raw object of message id: raw/<id>.eml, or raw/<id> as
// another ingress (SES receipt rules) writes it.
func (s Source) rawKey(ctx context.Context, id string) (store.Object, error) {
	if !validID(id) {
		return store.Object{}, store.ErrNotFound
	}
	obj, err := s.Store.Stat(ctx, store.RawKey(id))
	if store.IsNotFound(err) {
		return s.Store.Stat(ctx, store.RawPrefix+id)
	}
	return obj, err
}

// validID accepts the ids raw keys can carry: no path separators.
func validID(id string) bool {
	return id != "" && len(id) <= 200 && !strings.ContainsAny(id, "/\\") && id != "." && id != ".."
}

// Raw opens a message's raw source.
func (s Source) Raw(ctx context.Context, id string) (io.ReadCloser, store.Object, error) {
	obj, err := s.rawKey(ctx, id)
	if err != nil {
		return nil, store.Object{}, err
	}
	return s.Store.Get(ctx, obj.Key)
}

// Message returns the parsed message: the stored parsed/<id>.json when
// there is one (what was delivered, with the authentication verdicts of
// the time of receipt), else the raw message parsed now, without
// authentication checks and without writing attachments anywhere.
func (s Source) Message(ctx context.Context, id string) (*message.Message, error) {
	if !validID(id) {
		return nil, store.ErrNotFound
	}
	var m message.Message
	err := store.GetJSON(ctx, s.Store, store.ParsedKey(id), &m)
	if err == nil {
		return &m, nil
	}
	if !store.IsNotFound(err) {
		return nil, err
	}
	return s.parse(ctx, id, nil)
}

// parse parses the raw message; sink, when set, receives the store writes
// the parser would make (attachment bytes), which go nowhere else.
func (s Source) parse(ctx context.Context, id string, sink store.Store) (*message.Message, error) {
	rc, obj, err := s.Raw(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	env, err := store.Envelope(ctx, s.Store, obj)
	if err != nil {
		return nil, err
	}
	return parser.Parse(ctx, rc, parser.Options{ID: id, RawKey: obj.Key, Envelope: env, Store: sink, MaxBodyBytes: s.MaxBodyBytes,
		Now: func() time.Time { return obj.ModTime }})
}

// Deliveries returns a message's delivery records.
func (s Source) Deliveries(ctx context.Context, id string) ([]delivery.Record, error) {
	if !validID(id) {
		return nil, store.ErrNotFound
	}
	return s.journal().List(ctx, id)
}

// ErrNoAttachment is returned for an attachment number the message does
// not have.
var ErrNoAttachment = errors.New("no such attachment")

// Attachment writes the decoded bytes of attachment n (0-based, the order
// of the message JSON's attachments) to the writer open returns, which is
// called once with the attachment's description before any byte. The
// bytes come from the store when the parser kept them there (Key), else
// from the raw message parsed again, streaming: the parser's own walk
// numbers the attachments, so the numbering cannot disagree.
func (s Source) Attachment(ctx context.Context, id string, n int, open func(message.Attachment) io.Writer) error {
	m, err := s.Message(ctx, id)
	if err != nil {
		return err
	}
	if n < 0 || n >= len(m.Attachments) {
		return ErrNoAttachment
	}
	a := m.Attachments[n]
	if a.Key != "" {
		rc, _, err := s.Store.Get(ctx, a.Key)
		if err == nil {
			defer rc.Close()
			_, err = io.Copy(open(a), rc)
			return err
		}
		if !store.IsNotFound(err) {
			return err
		}
	}
	c := &capture{want: fmt.Sprintf("%s%s/%d/", store.AttachmentsPrefix, id, n), open: func() io.Writer { return open(a) }}
	if _, err := s.parse(ctx, id, c); err != nil {
		return err
	}
	if !c.found {
		return ErrNoAttachment
	}
	return c.err
}

// capture is the store the parser writes attachments to when the
// inspector streams one of them: it copies the wanted one and discards
// the others.
type capture struct {
	store.Store // nil: only Put is called
	want        string
	open        func() io.Writer
	found       bool
	err         error
}

func (c *capture) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	if !strings.HasPrefix(key, c.want) || c.found {
		n, err := io.Copy(io.Discard, body)
		return store.Object{Key: key, Size: n}, err
	}
	c.found = true
	n, err := io.Copy(c.open(), body)
	if err != nil {
		c.err = err
		// The client went away: the parse stops here.
		return store.Object{}, fault.Permanent(err)
	}
	return store.Object{Key: key, Size: n}, nil
}

// summarise builds the list item of the raw object obj.
func (s Source) summarise(ctx context.Context, obj store.Object) (Item, error) {
	id, _ := store.IDFromRawKey(obj.Key)
	env, err := store.Envelope(ctx, s.Store, obj)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Item{}, err
	}
	it := Item{ID: id, ReceivedAt: receivedAt(id, env, obj), Size: obj.Size, RcptTo: []string{}}
	if env != nil {
		it.RcptTo = append(it.RcptTo, env.RcptTo...)
	}
	m, err := s.Message(ctx, id)
	if err != nil {
		return Item{}, err
	}
	it.Subject = m.Subject
	if m.From != nil {
		it.From = m.From.Address
	}
	if len(it.RcptTo) == 0 { // another ingress: no envelope
		for _, a := range append(append([]message.Address{}, m.To...), m.Cc...) {
			it.RcptTo = append(it.RcptTo, a.Address)
		}
	}
	if err := s.refresh(ctx, &it); err != nil {
		return Item{}, err
	}
	return it, nil
}

// refresh reads the item's delivery records again.
func (s Source) refresh(ctx context.Context, it *Item) error {
	recs, err := s.journal().List(ctx, it.ID)
	if err != nil {
		return err
	}
	it.Status, it.Routes = statusOf(recs)
	return nil
}

// syncBatch is how many new messages one Sync reads.
const syncBatch = 500

// Sync adds the messages stored since the last sync (at most syncBatch),
// and reads again the delivery records of recent messages whose status may
// still change (at most refreshLimit, received in the last day). It
// returns the items added or changed, and whether more new messages wait.
func (ix *Index) Sync(ctx context.Context, src Source, now time.Time, refreshLimit int) (changed []Item, more bool, err error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	after, err := ix.cursor(ctx)
	if err != nil {
		return nil, false, err
	}
	var objs []store.Object
	err = src.Store.List(ctx, store.RawPrefix, after, func(o store.Object) bool {
		if _, ok := store.IDFromRawKey(o.Key); ok {
			objs = append(objs, o)
		}
		after = o.Key
		return len(objs) < syncBatch
	})
	if err != nil {
		return nil, false, err
	}
	more = len(objs) == syncBatch
	items := make([]Item, len(objs))
	errs := make([]error, len(objs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				items[i], errs[i] = src.summarise(ctx, objs[i])
			}
		}()
	}
	for i := range objs {
		work <- i
	}
	close(work)
	wg.Wait()
	for i, e := range errs {
		if e == nil {
			continue
		}
		if !fault.IsTemporary(e) {
			// A message that cannot be read (a corrupt envelope) is listed
			// as such rather than holding up every later one.
			src.logf(ctx, "inspector: cannot read message; listed as unreadable", "key", objs[i].Key, "err", e)
			id, _ := store.IDFromRawKey(objs[i].Key)
			items[i] = Item{ID: id, ReceivedAt: receivedAt(id, nil, objs[i]), Subject: "(unreadable: see the inspector's log)",
				RcptTo: []string{}, Routes: []string{}, Status: StatusReceived, Size: objs[i].Size}
			continue
		}
		// The cursor stays before this message; the next sync tries again.
		if i == 0 {
			return nil, false, fmt.Errorf("index %s: %w", objs[i].Key, e)
		}
		items, after, more = items[:i], objs[i-1].Key, true
		break
	}
	if err := ix.Put(ctx, items); err != nil {
		return nil, false, err
	}
	if err := ix.setCursor(ctx, after); err != nil {
		return nil, false, err
	}
	changed = items
	if refreshLimit > 0 {
		old, err := ix.unfinishedSince(ctx, now.Add(-24*time.Hour), refreshLimit)
		if err != nil {
			return changed, more, err
		}
		var upd []Item
		for _, it := range old {
			st, routes := it.Status, strings.Join(it.Routes, "\n")
			if err := src.refresh(ctx, &it); err != nil {
				return changed, more, err
			}
			if it.Status != st || strings.Join(it.Routes, "\n") != routes {
				upd = append(upd, it)
			}
		}
		if err := ix.Put(ctx, upd); err != nil {
			return changed, more, err
		}
		changed = append(changed, upd...)
	}
	return changed, more, nil
}
