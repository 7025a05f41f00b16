package inspect

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Item is one message in the list: what the list page and
// GET /api/v1/messages show.
type Item struct {
	ID         string    `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	Subject    string    `json:"subject"`
	From       string    `json:"from"`
	RcptTo     []string  `json:"rcpt_to"`
	Routes     []string  `json:"routes"`
	// Status sums up the message's delivery records: received (no record
	// yet, or none kept: with the failures-only journal a job delivered at
	// its first attempt leaves none), pending, retrying, delivered, failed
	// (any job dead-lettered, or ingest failed).
	Status string `json:"status"`
	Size   int64  `json:"size"`
}

// Item statuses besides delivery's own.
const StatusReceived = "received"

// unfinished are the statuses a later sync may change.
var unfinished = []string{StatusReceived, delivery.StatusPending, delivery.StatusRetrying}

// Index is the inspector's listing and search index: one row per message
// in a local SQLite database, a cache of what the store holds. It is
// filled incrementally from the store's own keys (Sync): raw/ keys are
// ULIDs, so "what arrived since the last sync" is one List after the last
// key seen. Deleting the file only costs a rebuild.
type Index struct {
	db *sql.DB
	mu sync.Mutex // one Sync at a time
}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id          TEXT PRIMARY KEY,
	received_at INTEGER NOT NULL, -- Unix milliseconds
	subject     TEXT NOT NULL,
	from_addr   TEXT NOT NULL,
	rcpt_to     TEXT NOT NULL,    -- newline-separated
	routes      TEXT NOT NULL,    -- newline-separated
	status      TEXT NOT NULL,
	size        INTEGER NOT NULL,
	search      TEXT NOT NULL     -- lower-cased id, subject, from, recipients, routes, status
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_newest ON messages (received_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status, received_at DESC);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, key TEXT NOT NULL);
`

// OpenIndex opens (creating) the index database at path.
func OpenIndex(path string) (*Index, error) {
	db, err := filestore.OpenSQLite(path, false) // a cache: rebuilt if lost
	if err != nil {
		return nil, fmt.Errorf("inspector index %s: %w", path, err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("inspector index %s: %w", path, err)
	}
	return &Index{db: db}, nil
}

// Close closes the database.
func (ix *Index) Close() error { return ix.db.Close() }

// Put inserts or replaces items in one transaction.
func (ix *Index) Put(ctx context.Context, items []Item) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO messages (id, received_at, subject, from_addr, rcpt_to, routes, status, size, search)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET received_at=excluded.received_at, subject=excluded.subject, from_addr=excluded.from_addr,
		rcpt_to=excluded.rcpt_to, routes=excluded.routes, status=excluded.status, size=excluded.size, search=excluded.search`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, it := range items {
		search := strings.ToLower(strings.Join([]string{it.ID, it.Subject, it.From, strings.Join(it.RcptTo, " "), strings.Join(it.Routes, " "), it.Status}, "\n"))
		if _, err := st.ExecContext(ctx, it.ID, it.ReceivedAt.UnixMilli(), it.Subject, it.From,
			strings.Join(it.RcptTo, "\n"), strings.Join(it.Routes, "\n"), it.Status, it.Size, search); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Query selects messages for the list.
type Query struct {
	// Q is the search: words match anywhere (id, subject, from, recipient,
	// route, status); from:, to:, subject:, route:, status: match one
	// field; since: and until: bound the received time (RFC 3339, a date
	// 2006-01-02, or a duration ago such as 2h).
	Q string
	// Limit is the page size (default 50, at most 500).
	Limit int
	// Before is the id of the last message of the previous page.
	Before string
}

// Page is one page of the list, newest first.
type Page struct {
	Items []Item `json:"items"`
	// NextBefore is the before= of the next page; empty on the last.
	NextBefore string `json:"next_before,omitempty"`
}

// ErrBadQuery is returned for a query that cannot be understood.
var ErrBadQuery = errors.New("bad query")

// List returns a page of messages, newest first.
func (ix *Index) List(ctx context.Context, q Query, now time.Time) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	where, args, err := parseQuery(q.Q, now)
	if err != nil {
		return Page{}, err
	}
	if q.Before != "" {
		var at int64
		err := ix.db.QueryRowContext(ctx, `SELECT received_at FROM messages WHERE id = ?`, q.Before).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return Page{}, fmt.Errorf("%w: before=%s is not a listed message", ErrBadQuery, q.Before)
		}
		if err != nil {
			return Page{}, err
		}
		where = append(where, "(received_at, id) < (?, ?)")
		args = append(args, at, q.Before)
	}
	sqlq := `SELECT id, received_at, subject, from_addr, rcpt_to, routes, status, size FROM messages`
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	sqlq += " ORDER BY received_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := ix.db.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return Page{}, err
	}
	defer rows.Close()
	p := Page{Items: []Item{}}
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return Page{}, err
		}
		p.Items = append(p.Items, it)
	}
	if err := rows.Err(); err != nil {
		return Page{}, err
	}
	if len(p.Items) > limit {
		p.Items = p.Items[:limit]
		p.NextBefore = p.Items[limit-1].ID
	}
	return p, nil
}

// Get returns one message's item, or store.ErrNotFound.
func (ix *Index) Get(ctx context.Context, id string) (Item, error) {
	row := ix.db.QueryRowContext(ctx, `SELECT id, received_at, subject, from_addr, rcpt_to, routes, status, size FROM messages WHERE id = ?`, id)
	it, err := scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, store.ErrNotFound
	}
	return it, err
}

// Count returns the number of indexed messages.
func (ix *Index) Count(ctx context.Context) (int, error) {
	var n int
	err := ix.db.QueryRowContext(ctx, `SELECT count(*) FROM messages`).Scan(&n)
	return n, err
}

func scanItem(r interface{ Scan(...any) error }) (Item, error) {
	var it Item
	var at int64
	var rcpt, routes string
	if err := r.Scan(&it.ID, &at, &it.Subject, &it.From, &rcpt, &routes, &it.Status, &it.Size); err != nil {
		return Item{}, err
	}
	it.ReceivedAt = time.UnixMilli(at).UTC()
	it.RcptTo, it.Routes = splitLines(rcpt), splitLines(routes)
	return it, nil
}

func splitLines(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

// parseQuery turns a search into SQL conditions. Words are looked for
// with instr() in lower-cased text: a plain substring test, several times
// faster than LIKE's pattern matching over a whole-index scan.
func parseQuery(q string, now time.Time) ([]string, []any, error) {
	var where []string
	var args []any
	word := func(col, v string) {
		where, args = append(where, "instr("+col+", ?) > 0"), append(args, strings.ToLower(v))
	}
	for _, tok := range strings.Fields(q) {
		field, val, ok := strings.Cut(tok, ":")
		if !ok || val == "" {
			word("search", tok)
			continue
		}
		switch strings.ToLower(field) {
		case "from":
			word("lower(from_addr)", val)
		case "to", "rcpt":
			word("lower(rcpt_to)", val)
		case "subject":
			word("lower(subject)", val)
		case "route":
			where, args = append(where, "instr(char(10) || routes || char(10), ?) > 0"), append(args, "\n"+val+"\n")
		case "status":
			where, args = append(where, "status = ?"), append(args, strings.ToLower(val))
		case "since", "until":
			t, err := parseWhen(val, now)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadQuery, tok, err)
			}
			op := ">="
			if strings.EqualFold(field, "until") {
				op = "<"
			}
			where, args = append(where, "received_at "+op+" ?"), append(args, t.UnixMilli())
		default: // "re: printer" and addresses with a colon are words
			word("search", tok)
		}
	}
	return where, args, nil
}

// parseWhen reads an RFC 3339 time, a date, or a duration ago.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want an RFC 3339 time, a date (2006-01-02) or a duration ago (2h)")
}

// cursor returns the last raw key a sync listed.
func (ix *Index) cursor(ctx context.Context) (string, error) {
	var k string
	err := ix.db.QueryRowContext(ctx, `SELECT key FROM cursor WHERE name = 'raw'`).Scan(&k)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return k, err
}

func (ix *Index) setCursor(ctx context.Context, key string) error {
	_, err := ix.db.ExecContext(ctx, `INSERT INTO cursor (name, key) VALUES ('raw', ?) ON CONFLICT (name) DO UPDATE SET key = excluded.key`, key)
	return err
}

// unfinishedSince returns the items whose status may still change,
// received after t, newest first, at most n.
func (ix *Index) unfinishedSince(ctx context.Context, t time.Time, n int) ([]Item, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT id, received_at, subject, from_addr, rcpt_to, routes, status, size FROM messages
		WHERE status IN (?, ?, ?) AND received_at >= ? ORDER BY received_at DESC LIMIT ?`,
		unfinished[0], unfinished[1], unfinished[2], t.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// statusOf sums up a message's delivery records.
func statusOf(recs []delivery.Record) (status string, routes []string) {
	if len(recs) == 0 {
		return StatusReceived, []string{}
	}
	routes = []string{}
	counts := map[string]int{}
	for _, r := range recs {
		counts[r.Status]++
		if r.Job.Route != "" && !slices.Contains(routes, r.Job.Route) {
			routes = append(routes, r.Job.Route)
		}
	}
	switch {
	case counts[delivery.StatusFailed] > 0:
		return delivery.StatusFailed, routes
	case counts[delivery.StatusRetrying] > 0:
		return delivery.StatusRetrying, routes
	case counts[delivery.StatusPending] > 0:
		return delivery.StatusPending, routes
	}
	return delivery.StatusDelivered, routes
}

// receivedAt is the time a message arrived: its envelope's, else the time
// in its ULID, else the object's.
func receivedAt(id string, env *message.Envelope, obj store.Object) time.Time {
	if env != nil && !env.ReceivedAt.IsZero() {
		return env.ReceivedAt.UTC()
	}
	if u, err := ulid.ParseStrict(id); err == nil {
		return ulid.Time(u.Time()).UTC()
	}
	return obj.ModTime.UTC()
}

// marshalItem is used by the events stream.
func marshalItem(it Item) []byte {
	b, _ := json.Marshal(it)
	return b
}
