package ingest

import (
	"strings"

	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// ApplyVerdicts sets a parsed message's spam and virus fields: from the
// gateway's verdicts when it scanned the message, else, for a message
// written by SES receiving (no envelope source), from the verdict header
// fields SES adds when its receipt rule scans (X-SES-Spam-Verdict,
// X-SES-Virus-Verdict). Only the gateway's or SES's own verdicts count:
// the SES fields of a message that came through the gateway are the
// sender's, and ignored.
func ApplyVerdicts(m *message.Message, v *store.Verdicts) {
	if v != nil {
		m.Spam, m.Virus = v.Spam, v.Virus
		return
	}
	if m.Envelope.Source != "" {
		return
	}
	// SES prepends its fields: the first occurrence is SES's.
	if s := firstHeader(m, "X-SES-Spam-Verdict"); s != "" {
		m.Spam = sesSpam(s)
	}
	if s := firstHeader(m, "X-SES-Virus-Verdict"); s != "" {
		m.Virus = sesVirus(s)
	}
}

func firstHeader(m *message.Message, name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return strings.ToUpper(strings.TrimSpace(h.Value))
		}
	}
	return ""
}

// sesSpam maps SES's spamVerdict (PASS, FAIL, GRAY, PROCESSING_FAILED)
// onto rspamd's actions; SES gives no score, so Score and RequiredScore
// stay 0.
func sesSpam(status string) *message.Spam {
	v := &message.Spam{Scanner: "ses"}
	switch status {
	case "PASS":
		v.Action = "no action"
	case "FAIL":
		v.Action = "reject"
	case "GRAY":
		v.Action = "add header"
	default:
		v.Action, v.Error = "error", "SES spam verdict "+status
	}
	return v
}

// sesVirus maps SES's virusVerdict.
func sesVirus(status string) *message.Virus {
	v := &message.Virus{Scanner: "ses"}
	switch status {
	case "PASS":
		v.Result = "clean"
	case "FAIL":
		v.Result = "infected"
	default:
		v.Result, v.Error = "error", "SES virus verdict "+status
	}
	return v
}
