package parser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

// oracleKnown lists every field on which we knowingly disagree with
// Python's email package, keyed "file:field", with the reason. The same
// table is in docs/parsing.md. The test fails on a disagreement missing
// here and on an entry that no longer disagrees.
var oracleKnown = map[string]string{
	"calendar_invite.eml:attachments":         "line endings: we keep a 7bit text attachment's bytes as sent (CRLF); Python returns them with LF",
	"dsn_report.eml:attachments":              "Python parses message/delivery-status as a list of header blocks and drops it from attachments; we keep it as an attachment. The text/rfc822-headers size differs by line endings (CRLF kept)",
	"gb2312_foxmail.eml:text":                 "text labelled gb2312 with a GBK character: we decode gb2312 as GB 18030 (a superset, as browsers and mail clients do); Python's strict gb2312 codec gives U+FFFD",
	"malformed_8bit_headers.eml:from":         "raw 8-bit header bytes: we decode them with the message's declared charset (else windows-1252); Python gives U+FFFD",
	"malformed_8bit_headers.eml:subject":      "raw 8-bit header bytes: as for from",
	"malformed_bad_base64.eml:attachments":    "base64 whose length is not a multiple of 4: we decode every complete quantum and warn; Python gives up and returns the undecoded text",
	"malformed_deep_nesting.eml:attachments":  "nesting limit: below depth 20 we keep the rest as one opaque attachment and warn; Python recurses without limit",
	"malformed_garbage_header.eml:to":         "unterminated address list: we keep only well-formed addr-specs (\"Broken <broken@\" has none) and report the rest; Python returns the words as addresses",
	"malformed_no_boundary.eml:attachments":   "multipart whose boundary never occurs: we read the body as text/plain (warning); Python keeps a non-multipart multipart/mixed, which it neither shows as body nor names",
	"malformed_nul_bytes.eml:subject":         "NUL bytes: we remove them from text and headers (warning), since JSON consumers and databases reject them; Python keeps them",
	"malformed_nul_bytes.eml:text":            "NUL bytes: as for subject",
	"malformed_qp_and_params.eml:attachments": "unquoted boundary with a space (boundary=simple boundary): we take the value up to the semicolon, as mail clients do, and find the parts; Python stops at the space, finds no part, and returns the whole body",
	"malformed_unknown_charset.eml:subject":   "unknown charset in an encoded word: we decode as UTF-8 when valid, else windows-1252, and warn; Python gives U+FFFD",
	"malformed_unknown_charset.eml:text":      "unknown charset of a body: as for subject; Python raises LookupError",
	"outlook_winmail.eml:text":                "text labelled iso-8859-1 that uses windows-1252 quotes: we decode iso-8859-1 as windows-1252 (WHATWG, what mail clients do); Python gives C1 control characters",
	"thunderbird_flowed.eml:text":             "format=flowed: we join flowed lines (RFC 3676), also in quotes, so \"> \" markers inside a quoted paragraph disappear; Python does not unflow",
}

type oracleResult struct {
	File        string          `json:"file"`
	Subject     json.RawMessage `json:"subject"`
	From        json.RawMessage `json:"from"`
	To          json.RawMessage `json:"to"`
	Cc          json.RawMessage `json:"cc"`
	Text        json.RawMessage `json:"text"`
	Attachments json.RawMessage `json:"attachments"`
}

// norm collapses white space, the comparison the issue asks for.
func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

func normAddrs(as []message.Address) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, norm(a.Name)+" <"+a.Address+">")
	}
	return strings.Join(parts, ", ")
}

// TestOracle compares every test message with Python's standard library
// parser on subject, addresses, plain-text body (white space normalised)
// and attachment names and sizes.
func TestOracle(t *testing.T) {
	py := testenv.Require(t, "python3", "install Python 3 (apt-get install python3)")
	files := corpus(t)
	out, err := exec.Command(py, append([]string{"testdata/oracle.py"}, files...)...).Output()
	if err != nil {
		t.Fatalf("oracle.py: %v", err)
	}
	var results []oracleResult
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range results {
		name := filepath.Base(r.File)
		raw, err := os.ReadFile(r.File)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(context.Background(), bytes.NewReader(raw), Options{})
		if err != nil {
			t.Fatal(err)
		}
		compare := func(field, ours string, theirs json.RawMessage, conv func(json.RawMessage) (string, bool)) {
			want, ok := conv(theirs)
			if !ok {
				return
			}
			if norm(ours) != norm(want) {
				got[name+":"+field] = fmt.Sprintf("ours %q, python %q", clipS(ours), clipS(want))
			}
		}
		str := func(j json.RawMessage) (string, bool) {
			var s *string
			if json.Unmarshal(j, &s) != nil {
				return string(j), true
			}
			if s == nil {
				return "", false // Python found no such body: nothing to compare
			}
			return *s, true
		}
		addrs := func(j json.RawMessage) (string, bool) {
			var l [][2]string
			if json.Unmarshal(j, &l) != nil {
				return string(j), true
			}
			var as []message.Address
			for _, a := range l {
				as = append(as, message.Address{Name: a[0], Address: a[1]})
			}
			return normAddrs(as), true
		}
		atts := func(j json.RawMessage) (string, bool) {
			var l [][2]any
			if json.Unmarshal(j, &l) != nil {
				return string(j), true
			}
			var parts []string
			for _, a := range l {
				parts = append(parts, fmt.Sprintf("%v:%v", a[0], a[1]))
			}
			return strings.Join(parts, " "), true
		}
		compare("subject", m.Subject, r.Subject, str)
		var from []message.Address
		if m.From != nil {
			from = []message.Address{*m.From}
		}
		compare("from", normAddrs(from), r.From, addrs)
		compare("to", normAddrs(m.To), r.To, addrs)
		compare("cc", normAddrs(m.Cc), r.Cc, addrs)
		if hasPlain(m) {
			compare("text", m.Text, r.Text, str)
		}
		var ours []string
		for _, a := range m.Attachments {
			size := fmt.Sprint(a.Size)
			if a.ContentType == "message/rfc822" || a.ContentType == "message/global" {
				size = "<nil>"
			}
			ours = append(ours, a.Filename+":"+size)
		}
		compare("attachments", strings.Join(ours, " "), r.Attachments, atts)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := oracleKnown[k]; !ok {
			t.Errorf("new disagreement with Python on %s: %s", k, got[k])
		}
	}
	for k := range oracleKnown {
		if _, ok := got[k]; !ok {
			t.Errorf("oracleKnown[%q] no longer disagrees: remove it here and in docs/parsing.md", k)
		}
	}
}

func hasPlain(m *message.Message) bool {
	for _, p := range m.Parts {
		if p.ContentType == "text/plain" {
			return true
		}
	}
	return false
}

func clipS(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}
