package e2e

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
)

// The checker must see every kind of violation, or the fault scenario
// proves nothing.
func TestCheckFindsEveryViolation(t *testing.T) {
	onlyA := func([]string) map[string]string { return map[string]string{"A": "all"} }
	type stored struct{ id, token, mangle string }
	cases := []struct {
		name     string
		attempts []Attempt
		stored   []stored
		reqs     []Request
		want     []string // substrings of problems, in any order
		summary  string
	}{
		{
			name:     "all well",
			attempts: []Attempt{acc(0, "ID1"), {Sender: 0, Seq: 1, N: 1, Token: Token(0, 1, 1), Outcome: Deferred, Code: 451}, acc2(0, 1, 2, "ID2")},
			stored:   []stored{{"ID1", Token(0, 0, 1), ""}, {"ID2", Token(0, 1, 2), ""}},
			reqs:     []Request{ok("ID1", 0, 0, 1), ok("ID2", 0, 1, 2), ok("ID2", 0, 1, 2)},
			summary:  "accepted 2, stored 2, delivered 2 distinct, duplicates 1, lost 0",
		},
		{
			name:     "acknowledged but not stored",
			attempts: []Attempt{acc(0, "ID1")},
			reqs:     []Request{ok("ID1", 0, 0, 1)},
			want:     []string{"LOST: message ID1", "not stored complete"},
			summary:  "accepted 1, stored 0, delivered 1 distinct, duplicates 0, lost 1",
		},
		{
			name:     "stored but never delivered",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), ""}},
			reqs:     []Request{{Receiver: "A", WebhookID: "ID1.all.0", MessageID: "ID1", Token: Token(0, 0, 1), Status: 503}},
			want:     []string{"LOST: message ID1", "never delivered to A"},
			summary:  "accepted 1, stored 1, delivered 0 distinct, duplicates 0, lost 1",
		},
		{
			name:     "stored bytes differ",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), "truncate"}},
			reqs:     []Request{ok("ID1", 0, 0, 1)},
			want:     []string{"stored raw/ID1.eml", "LOST: message ID1"},
		},
		{
			name:     "prefix is more than a trace field",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), "header"}},
			reqs:     []Request{ok("ID1", 0, 0, 1)},
			want:     []string{"more than trace fields", "LOST: message ID1"},
		},
		{
			name:     "deferred attempt visible",
			attempts: []Attempt{{Sender: 0, Seq: 0, N: 1, Token: Token(0, 0, 1), Outcome: Deferred, Code: 451, Stage: "dot"}, acc2(0, 0, 2, "ID2")},
			stored:   []stored{{"ID9", Token(0, 0, 1), ""}, {"ID2", Token(0, 0, 2), ""}},
			reqs:     []Request{ok("ID2", 0, 0, 2), ok("ID9", 0, 0, 1)},
			want:     []string{"attempt s0-m0-a1 was not acknowledged", "A got message ID9 (attempt \"s0-m0-a1\") which was never acknowledged"},
		},
		{
			name:     "refused with 5xx",
			attempts: []Attempt{{Sender: 0, Seq: 0, N: 1, Token: Token(0, 0, 1), Outcome: Refused, Code: 554, Stage: "dot"}},
			want:     []string{"refused at dot: 554"},
		},
		{
			name:     "unacknowledged after the dot, stored: a duplicate, not a problem",
			attempts: []Attempt{{Sender: 0, Seq: 0, N: 1, Token: Token(0, 0, 1), Outcome: Unknown, Stage: "dot", Size: len(body(Token(0, 0, 1))), Digest: sha256.Sum256(body(Token(0, 0, 1)))}, acc2(0, 0, 2, "ID2")},
			stored:   []stored{{"ID8", Token(0, 0, 1), ""}, {"ID2", Token(0, 0, 2), ""}},
			reqs:     []Request{ok("ID8", 0, 0, 1), ok("ID2", 0, 0, 2)},
			summary:  "accepted 1, stored 1, delivered 1 distinct, duplicates 0, lost 0",
		},
		{
			name:     "webhook-id not the job's",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), ""}},
			reqs:     []Request{ok("ID1", 0, 0, 1), {Receiver: "A", WebhookID: "ID1.all.1", MessageID: "ID1", Token: Token(0, 0, 1), Status: 503}},
			want:     []string{`carries webhook-id "ID1.all.1", want "ID1.all.0"`, "carry 2 webhook-ids"},
		},
		{
			name:     "signature does not verify",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), ""}},
			reqs:     []Request{ok("ID1", 0, 0, 1), {Receiver: "A", WebhookID: "ID1.all.0", Err: "webhook: no signature matches", Status: 401}},
			want:     []string{"does not verify"},
		},
		{
			name:     "content of another attempt",
			attempts: []Attempt{acc(0, "ID1")},
			stored:   []stored{{"ID1", Token(0, 0, 1), ""}},
			reqs:     []Request{ok("ID1", 0, 0, 1), {Receiver: "A", WebhookID: "ID1.all.0", MessageID: "ID1", Token: Token(3, 3, 3), Status: 204}},
			want:     []string{`with the content of attempt "s3-m3-a3"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := filestore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			for _, s := range tc.stored {
				b := body(s.token)
				raw := "Received: from mta.faults.test ([127.0.0.1])\r\n\tby mx.faults.test; Sun, 22 Nov 2026 16:40:00 +0000\r\n" + string(b)
				switch s.mangle {
				case "truncate":
					raw = raw[:len(raw)-10]
				case "header":
					raw = strings.Replace(raw, "+0000\r\n", "+0000\r\nX-Extra: 1\r\n", 1)
				}
				if _, err := st.Put(ctx, store.RawKey(s.id), strings.NewReader(raw), nil); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Check(ctx, st, tc.attempts, tc.reqs, onlyA)
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(rep.Problems, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems do not mention %q:\n%s", w, all)
				}
			}
			if len(tc.want) == 0 && len(rep.Problems) > 0 {
				t.Errorf("unexpected problems:\n%s", all)
			}
			if tc.summary != "" && rep.Summary() != tc.summary {
				t.Errorf("summary %q, want %q", rep.Summary(), tc.summary)
			}
		})
	}
}

func body(token string) []byte {
	return Compose("a@faults.example", []string{"u@example.test"}, token, 500, 1)
}

// acc is the accepted first attempt of message seq of sender 0.
func acc(seq int, id string) Attempt { return acc2(0, seq, 1, id) }

func acc2(sender, seq, n int, id string) Attempt {
	tok := Token(sender, seq, n)
	b := body(tok)
	return Attempt{Sender: sender, Seq: seq, N: n, Token: tok, Rcpts: []string{"u@example.test"}, Outcome: Accepted, Code: 250,
		ID: id, Size: len(b), Digest: sha256.Sum256(b)}
}

func ok(id string, sender, seq, n int) Request {
	return Request{Receiver: "A", WebhookID: id + ".all.0", MessageID: id, Token: Token(sender, seq, n), Status: 204}
}
