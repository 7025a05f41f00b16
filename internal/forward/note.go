package forward

import (
	"context"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/store"
)

// note is a job's progress: the recipients already delivered to. It is
// written only when an attempt with several recipients delivered to some
// and failed for others, and read only by jobs with several recipients,
// so a forward to one address costs no store request beyond the message.
type note struct {
	Delivered []noteEntry `json:"delivered"`
}

type noteEntry struct {
	Rcpt string    `json:"rcpt"`
	Host string    `json:"host,omitempty"`
	At   time.Time `json:"at"`
}

// NoteKey is the store key of a job's progress note.
func NoteKey(messageID, jobID string) string {
	return NotesPrefix + messageID + "/" + jobID + ".json"
}

func (n *note) has(rcpt string) bool {
	for _, d := range n.Delivered {
		if strings.EqualFold(d.Rcpt, rcpt) {
			return true
		}
	}
	return false
}

func (n *note) add(outs []outcome, at time.Time) {
	for _, o := range outs {
		if !n.has(o.rcpt) {
			n.Delivered = append(n.Delivered, noteEntry{Rcpt: o.rcpt, Host: o.host, At: at.UTC()})
		}
	}
}

func (f *Forwarder) readNote(ctx context.Context, j *delivery.Job) (note, error) {
	var n note
	err := store.GetJSON(ctx, f.cfg.Store, NoteKey(j.MessageID, j.ID), &n)
	if store.IsNotFound(err) {
		return note{}, nil
	}
	return n, err
}

func (f *Forwarder) writeNote(ctx context.Context, j *delivery.Job, n note) error {
	return store.PutJSON(ctx, f.cfg.Store, NoteKey(j.MessageID, j.ID), n)
}
