package parser

import (
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// extraLayouts are date forms seen in the wild that RFC 5322 §3.3 does not
// allow, tried after net/mail's parser.
var extraLayouts = []string{
	time.RFC3339,
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"Mon Jan _2 15:04:05 2006",
	"Mon Jan _2 15:04:05 -0700 2006",
	"Mon Jan _2 15:04:05 MST 2006",
	"Mon, _2 Jan 2006 15:04:05 MST-0700",
	"Mon, _2 Jan 2006 15:04 -0700",
	"_2 Jan 2006 15:04 -0700",
	"Mon, _2 Jan 06 15:04:05 -0700",
	"Mon, _2 January 2006 15:04:05 -0700",
	"Monday, _2 Jan 2006 15:04:05 -0700",
	"Mon, _2 Jan 2006 15:04:05",
	"_2 Jan 2006 15:04:05",
	"Mon, _2 Jan 2006 15.04.05 -0700",
	"Mon, Jan _2 2006 15:04:05 -0700",
	"Mon, _2 Jan 2006 3:04:05 PM -0700",
}

var (
	dateComment = regexp.MustCompile(`\s*\([^)]*\)\s*$`)
	dateSpaces  = regexp.MustCompile(`\s+`)
	gmtOffset   = regexp.MustCompile(`(?i)\b(?:GMT|UTC|UT)\s*([+-]\d{4})$`)
	obsZone     = regexp.MustCompile(`(?i)\s+(EST|EDT|CST|CDT|MST|MDT|PST|PDT)(\s*\([^)]*\))?\s*$`)
	obsZones    = map[string]string{"EST": "-0500", "EDT": "-0400", "CST": "-0600", "CDT": "-0500",
		"MST": "-0700", "MDT": "-0600", "PST": "-0800", "PDT": "-0700"}
)

// parseDate parses a Date header leniently and reports whether it could.
// The result keeps the zone offset the sender wrote.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if m := obsZone.FindStringSubmatch(s); m != nil {
		// RFC 5322 §4.3: obsolete zone names mean fixed offsets.
		s = s[:len(s)-len(m[0])] + " " + obsZones[strings.ToUpper(m[1])] + m[2]
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t, true
	}
	c := dateComment.ReplaceAllString(s, "")
	c = dateSpaces.ReplaceAllString(c, " ")
	c = gmtOffset.ReplaceAllString(c, "$1")
	c = strings.TrimSuffix(c, ",")
	if t, err := mail.ParseDate(c); err == nil {
		return t, true
	}
	for _, l := range extraLayouts {
		if t, err := time.Parse(l, c); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
