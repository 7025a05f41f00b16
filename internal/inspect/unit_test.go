package inspect

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

const rawWithParts = "From: a@example.org\r\nTo: support@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
	"--b\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nfirst attachment\r\n" +
	"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n" +
	"--b--\r\n"

// A store that keeps no parsed JSON (the deployed default): the message is
// parsed on the fly, attachments are decoded from the raw message by the
// parser's own numbering, and nothing is written to the store.
func TestSourceWithoutParsedJSON(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const id = "01KBX0000000000000000000AA"
	env := message.Envelope{MailFrom: "a@example.org", RcptTo: []string{"support@example.test"}, ReceivedAt: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	if _, err := store.PutRaw(ctx, st, id, env, strings.NewReader(rawWithParts)); err != nil {
		t.Fatal(err)
	}
	src := Source{Store: st}
	m, err := src.Message(ctx, id)
	if err != nil || m.Subject != "parts" || len(m.Attachments) != 2 || m.Envelope.RcptTo[0] != "support@example.test" {
		t.Fatalf("message: %v %+v", err, m)
	}
	for n, want := range []string{"first attachment", "\x00\x01\x02\x03"} {
		var got bytes.Buffer
		var desc message.Attachment
		if err := src.Attachment(ctx, id, n, func(a message.Attachment) io.Writer { desc = a; return &got }); err != nil {
			t.Fatalf("attachment %d: %v", n, err)
		}
		if got.String() != want || desc.Filename != m.Attachments[n].Filename {
			t.Errorf("attachment %d: %q (%s), want %q", n, got.String(), desc.Filename, want)
		}
	}
	if err := src.Attachment(ctx, id, 2, func(message.Attachment) io.Writer { return io.Discard }); err != ErrNoAttachment {
		t.Errorf("attachment 2: %v, want ErrNoAttachment", err)
	}
	var keys []string
	st.List(ctx, "", "", func(o store.Object) bool { keys = append(keys, o.Key); return true })
	if len(keys) != 1 || keys[0] != store.RawKey(id) {
		t.Errorf("the inspector wrote to the store: %v", keys)
	}
	// Ids are never paths.
	for _, bad := range []string{"../x", "a/b", "", ".."} {
		if _, err := src.Message(ctx, bad); !store.IsNotFound(err) {
			t.Errorf("Message(%q): %v, want not found", bad, err)
		}
	}
}

func TestSanitize(t *testing.T) {
	m := &message.Message{ID: "M1", Attachments: []message.Attachment{{ContentID: "<logo@x>", ContentType: "image/png"}}}
	var b strings.Builder
	err := sanitize(&b, `<html><head><meta http-equiv="refresh" content="0;url=https://evil.example"><base href="https://evil.example/"><style>p{color:red}</style></head>
<body onload="alert(1)"><p style="color:blue">hi</p><a href="javascript:alert(1)">x</a><a href="https://ok.example/">ok</a>
<img src="cid:logo@x"><img src="cid:unknown"><img src="data:image/png;base64,AAAA"><img src="data:text/html,<script>1</script>">
<svg><script>alert(1)</script></svg><iframe src="https://evil.example"></iframe><form action="https://evil.example"><input></form>
<SCRIPT>alert(1)</SCRIPT><img src=x onerror=alert(1)><!-- comment --></body></html>`, m)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"refresh", "<base", "onload", "javascript:", "cid:", "data:text", "<svg", "<iframe", "<form", "alert", "onerror", "comment"} {
		if strings.Contains(strings.ToLower(out), bad) {
			t.Errorf("sanitised HTML keeps %q:\n%s", bad, out)
		}
	}
	for _, good := range []string{`<p style="color:blue">hi</p>`, `<style>p{color:red}</style>`, `href="https://ok.example/" target="_blank" rel="noopener noreferrer"`,
		`src="/messages/M1/inline/0"`, `src="data:image/png;base64,AAAA"`} {
		if !strings.Contains(out, good) {
			t.Errorf("sanitised HTML lacks %q:\n%s", good, out)
		}
	}
}

func TestVerdicts(t *testing.T) {
	m := &message.Message{
		Auth: &message.Auth{
			SPF:   &message.SPFResult{Result: "pass", Domain: "example.org"},
			DKIM:  []message.DKIMResult{{Result: "fail", Domain: "example.org", Selector: "s1", Reason: "body hash did not verify"}},
			DMARC: &message.DMARCResult{Result: "pass", Policy: "reject", Domain: "example.org", SPFAligned: true},
		},
		Spam:  &message.Spam{Score: 7.5, RequiredScore: 15, Action: "add header", Scanner: "rspamd", Symbols: []message.SpamSymbol{{Name: "BAYES_SPAM", Score: 5.1}}},
		Virus: &message.Virus{Result: "infected", Signatures: []string{"Eicar-Signature"}, Scanner: "clamd"},
	}
	var got []string
	for _, v := range verdicts(m) {
		got = append(got, v.Check+" "+v.Result+" ("+v.Class+"): "+v.Text)
	}
	want := []string{
		"SPF pass (good): the sending server is allowed to send for example.org",
		"DKIM fail (bad): signature of example.org (selector s1): body hash did not verify",
		`DMARC pass (good): the From domain example.org publishes policy "reject"; aligned through SPF`,
		"Spam add header (neutral): score 7.5 of 15.0 (rspamd): BAYES_SPAM +5.1",
		"Virus infected (bad): found Eicar-Signature (clamd)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A message whose envelope cannot be decoded is listed as unreadable; it
// does not hold up the messages after it.
func TestSyncSkipsUnreadable(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const bad, good = "01KBX0000000000000000000AA", "01KBX0000000000000000000AB"
	if _, err := st.Put(ctx, store.RawKey(bad), strings.NewReader(rawWithParts), map[string]string{store.MetaEnvelope: "!not base64!"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutRaw(ctx, st, good, message.Envelope{RcptTo: []string{"support@example.test"}}, strings.NewReader(rawWithParts)); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(t.TempDir() + "/i.db")
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	changed, more, err := ix.Sync(ctx, Source{Store: st}, time.Now(), 0)
	if err != nil || more || len(changed) != 2 {
		t.Fatalf("sync: %v %v %d", err, more, len(changed))
	}
	if it, _ := ix.Get(ctx, bad); !strings.HasPrefix(it.Subject, "(unreadable") {
		t.Errorf("bad message: %+v", it)
	}
	if it, _ := ix.Get(ctx, good); it.Subject != "parts" || it.RcptTo[0] != "support@example.test" {
		t.Errorf("good message: %+v", it)
	}
}
