package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

var words = strings.Fields(`the of and printer fire invoice order ticket café naïve résumé
	coffee alpha bravo delta echo straße 東京 mail letterbox webhook retry queue
	S3 bucket crash restart outage duplicate receiver signature ok deliver`)

// Compose returns an RFC 5322 message of about size bytes from a seed:
// the same seed gives the same text, so retries of one message differ only
// in their token. The text has lines that begin with "." and "..", which
// SMTP must dot-stuff and unstuff, long lines up to 998 octets, and UTF-8.
func Compose(from string, to []string, token string, size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	date := time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC).Add(time.Duration(seed%86400) * time.Second)
	fmt.Fprintf(&b, "From: Faults <%s>\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: faults message %s\r\n", token)
	fmt.Fprintf(&b, "Message-ID: <%s.%d@faults.test>\r\n", token, seed)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "%s: %s\r\n", AttemptHeader, token)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	for line := 0; b.Len() < size; line++ {
		var l strings.Builder
		switch rng.IntN(12) {
		case 0:
			l.WriteString(".")
		case 1:
			l.WriteString("..")
		case 2:
			l.WriteString("")
		}
		max := 70
		if rng.IntN(20) == 0 {
			max = 990
		}
		for l.Len() < max {
			w := words[rng.IntN(len(words))]
			if l.Len()+len(w)+1 > 998 {
				break
			}
			if l.Len() > 0 && !strings.HasSuffix(l.String(), ".") {
				l.WriteByte(' ')
			}
			l.WriteString(w)
		}
		b.WriteString(l.String())
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n-- \r\nend of " + token + "\r\n")
	return b.Bytes()
}
