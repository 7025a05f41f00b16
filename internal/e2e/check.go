package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/letterboxmail/letterbox/internal/store"
)

// Expectation says, for a message's envelope recipients, which receivers
// must get it and under which route name (the webhook-id is
// "<message id>.<route>.0").
type Expectation func(rcpts []string) (routeByReceiver map[string]string)

// Report is the outcome of Check.
type Report struct {
	// Messages the senders tried to send, and how many attempts they made.
	Messages, Attempts int
	// Attempt outcomes.
	Deferred, Dropped, Unknown, Refused int
	// Accepted counts messages answered 250; Stored those whose raw object
	// holds exactly the bytes sent; DeliveredDistinct those delivered to
	// every matching receiver.
	Accepted, Stored, DeliveredDistinct int
	// Duplicates counts successful webhook requests beyond the first for
	// the same webhook-id.
	Duplicates int
	// Lost counts accepted messages not stored complete or not delivered
	// everywhere they should have been.
	Lost int
	// UnknownStored counts attempts whose connection broke after the
	// final dot but whose message was stored all the same (the sender
	// retried: a duplicate message, never a lost one).
	UnknownStored int
	// GaveUp counts messages never accepted before the senders stopped
	// retrying.
	GaveUp int
	// Requests is the number of webhook requests, failed ones included.
	Requests int
	// Problems lists every violated property; empty means all held.
	Problems []string
	// LostMessages describes each lost message.
	LostMessages []LostMessage
}

// LostMessage is an acknowledged message that was not stored complete or
// not delivered everywhere.
type LostMessage struct {
	ID, Token string
	NotStored bool
	// Missing lists the receivers that never got it, with the route
	// (receiver name → route name).
	Missing map[string]string
}

// Summary is the one-line result.
func (r *Report) Summary() string {
	return fmt.Sprintf("accepted %d, stored %d, delivered %d distinct, duplicates %d, lost %d",
		r.Accepted, r.Stored, r.DeliveredDistinct, r.Duplicates, r.Lost)
}

// Details is a second line with the attempt counts.
func (r *Report) Details() string {
	return fmt.Sprintf("messages %d, attempts %d (deferred 4xx %d, connection lost before the dot %d, after the dot %d of which stored %d, refused 5xx %d), never accepted %d, webhook requests %d",
		r.Messages, r.Attempts, r.Deferred, r.Dropped, r.Unknown, r.UnknownStored, r.Refused, r.GaveUp, r.Requests)
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// AttemptHeader is the header field carrying an attempt's token in every
// message the tests send.
const AttemptHeader = "X-Faults-Attempt"

var attemptHeaderRE = regexp.MustCompile(`(?m)^` + AttemptHeader + `: (s\d+-m\d+-a\d+)\r?$`)

// Check compares what the senders were told (attempts) and what the
// receivers got (requests) with what the store holds.
func Check(ctx context.Context, st store.Store, attempts []Attempt, requests []Request, expect Expectation) (*Report, error) {
	r := &Report{Attempts: len(attempts), Requests: len(requests)}
	byToken := map[string]*Attempt{}
	byID := map[string]*Attempt{}
	messages := map[[2]int]bool{}
	accepted := map[[2]int]bool{}
	for i := range attempts {
		a := &attempts[i]
		byToken[a.Token] = a
		k := [2]int{a.Sender, a.Seq}
		messages[k] = true
		switch a.Outcome {
		case Accepted:
			if accepted[k] {
				r.problem("message %d/%d accepted twice (attempt %s)", a.Sender, a.Seq, a.Token)
			}
			accepted[k] = true
			if a.ID == "" {
				r.problem("attempt %s: 250 reply %q names no message id", a.Token, a.Text)
				continue
			}
			byID[a.ID] = a
		case Deferred:
			r.Deferred++
		case Dropped:
			r.Dropped++
		case Unknown:
			r.Unknown++
		case Refused:
			r.Refused++
			r.problem("attempt %s refused at %s: %d %s %s (a fault must give 4xx, never 5xx)", a.Token, a.Stage, a.Code, a.Enhanced, a.Text)
		}
	}
	r.Messages, r.Accepted = len(messages), len(byID)
	r.GaveUp = len(messages) - len(accepted)

	// The store: every raw object, traced to its attempt.
	var keys []string
	if err := st.List(ctx, store.RawPrefix, "", func(o store.Object) bool {
		keys = append(keys, o.Key)
		return true
	}); err != nil {
		return nil, fmt.Errorf("list raw messages: %w", err)
	}
	stored := map[string]bool{}    // ids
	storedTok := map[string]bool{} // tokens
	for _, key := range keys {
		id, ok := store.IDFromRawKey(key)
		if !ok {
			continue
		}
		raw, err := store.ReadAll(ctx, st, key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		m := attemptHeaderRE.FindSubmatch(raw)
		if m == nil {
			r.problem("stored %s carries no %s header: not sent by these senders", key, AttemptHeader)
			continue
		}
		tok := string(m[1])
		storedTok[tok] = true
		a := byToken[tok]
		switch {
		case a == nil:
			r.problem("stored %s: attempt %s is not in the senders' log", key, tok)
			continue
		case a.Outcome == Accepted && a.ID != id:
			r.problem("stored %s: attempt %s was acknowledged as %s, not %s", key, tok, a.ID, id)
			continue
		case a.Outcome == Unknown:
			r.UnknownStored++
		case a.Outcome != Accepted:
			r.problem("stored %s: attempt %s was not acknowledged (%s at %s: %d %s %s%s) but its message is visible",
				key, tok, a.Outcome, a.Stage, a.Code, a.Enhanced, a.Text, errSuffix(a.Err))
			continue
		}
		if err := sameMessage(raw, a); err != nil {
			r.problem("stored %s (attempt %s, %s): %v", key, tok, a.Outcome, err)
			continue
		}
		stored[id] = true
	}

	// The receivers.
	type jobKey struct{ receiver, id string }
	delivered := map[jobKey]bool{}
	idsOfJob := map[jobKey]map[string]bool{}
	okByWebhookID := map[string]int{}
	for _, q := range requests {
		if q.Incomplete {
			continue // the pipeline died mid-request
		}
		if q.Err != "" {
			r.problem("%s got a request that does not verify (webhook-id %q): %s", q.Receiver, q.WebhookID, q.Err)
			continue
		}
		a := byID[q.MessageID]
		if a == nil {
			ta := byToken[q.Token]
			if ta != nil && ta.Outcome == Unknown && storedTok[q.Token] {
				continue // a stored unacknowledged attempt: may be delivered
			}
			r.problem("%s got message %s (attempt %q) which was never acknowledged", q.Receiver, q.MessageID, q.Token)
			continue
		}
		if q.Token != a.Token {
			r.problem("%s got message %s with the content of attempt %q, but %s was acknowledged for %s", q.Receiver, q.MessageID, q.Token, q.MessageID, a.Token)
		}
		route, ok := expect(a.Rcpts)[q.Receiver]
		if !ok {
			r.problem("%s got message %s (to %v), which no route sends it", q.Receiver, q.MessageID, a.Rcpts)
			continue
		}
		k := jobKey{q.Receiver, q.MessageID}
		if idsOfJob[k] == nil {
			idsOfJob[k] = map[string]bool{}
		}
		idsOfJob[k][q.WebhookID] = true
		if want := q.MessageID + "." + route + ".0"; q.WebhookID != want {
			r.problem("%s: request for %s carries webhook-id %q, want %q", q.Receiver, q.MessageID, q.WebhookID, want)
		}
		if q.Delivered() {
			delivered[k] = true
			okByWebhookID[q.WebhookID]++
		}
	}
	for k, ids := range idsOfJob {
		if len(ids) > 1 {
			r.problem("%s: attempts for message %s carry %d webhook-ids: %v", k.receiver, k.id, len(ids), sortedKeys(ids))
		}
	}
	for _, n := range okByWebhookID {
		r.Duplicates += n - 1
	}

	// Every acknowledged message: stored complete and delivered everywhere.
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		a := byID[id]
		lm := LostMessage{ID: id, Token: a.Token, Missing: map[string]string{}}
		lost := false
		if stored[id] {
			r.Stored++
		} else {
			lost, lm.NotStored = true, true
			r.problem("LOST: message %s (attempt %s, 250 at %s) is not stored complete", id, a.Token, a.End.Format("15:04:05.000"))
		}
		all := true
		var missing []string
		for recv, route := range expect(a.Rcpts) {
			if !delivered[jobKey{recv, id}] {
				all = false
				missing = append(missing, recv)
				lm.Missing[recv] = route
			}
		}
		if all {
			r.DeliveredDistinct++
		} else {
			lost = true
			sort.Strings(missing)
			r.problem("LOST: message %s (attempt %s, 250 at %s) was never delivered to %s", id, a.Token, a.End.Format("15:04:05.000"), strings.Join(missing, ", "))
		}
		if lost {
			r.Lost++
			r.LostMessages = append(r.LostMessages, lm)
		}
	}
	return r, nil
}

// sameMessage checks that a stored raw message is the bytes sent, after
// the trace header fields the gateway prepends.
func sameMessage(raw []byte, a *Attempt) error {
	if len(raw) < a.Size {
		return fmt.Errorf("stored %d bytes, fewer than the %d sent", len(raw), a.Size)
	}
	head, body := raw[:len(raw)-a.Size], raw[len(raw)-a.Size:]
	if sha256.Sum256(body) != a.Digest {
		return fmt.Errorf("the last %d bytes stored differ from the %d bytes sent", a.Size, a.Size)
	}
	if !bytes.HasPrefix(head, []byte("Received: ")) || !bytes.HasSuffix(head, []byte("\r\n")) {
		return fmt.Errorf("the gateway's prefix is not a Received header: %q", truncate(head, 200))
	}
	for _, line := range bytes.Split(bytes.TrimSuffix(head, []byte("\r\n")), []byte("\r\n")) {
		if len(line) == 0 {
			return fmt.Errorf("the gateway's prefix holds an empty line")
		}
		if line[0] == ' ' || line[0] == '\t' || bytes.HasPrefix(line, []byte("Received:")) || bytes.HasPrefix(line, []byte("Received-SPF:")) {
			continue
		}
		return fmt.Errorf("the gateway's prefix holds more than trace fields: %q", truncate(line, 200))
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func errSuffix(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
