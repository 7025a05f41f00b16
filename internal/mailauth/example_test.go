package mailauth_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/message"
)

// A message with no signature, checked with a DNS server that does not
// answer: every DNS-based verdict is temperror, nothing fails.
func ExampleChecker_Check() {
	c, err := mailauth.New(mailauth.Config{Resolver: "127.0.0.1:1", Timeout: 200 * time.Millisecond, AuthServID: "mx.example.net"})
	if err != nil {
		panic(err)
	}
	raw := "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	env := &message.Envelope{ClientIP: "192.0.2.1", MailFrom: "alice@example.org", HELO: "mail.example.org"}
	// The From identity comes from the caller's reading of the header
	// (package parser in letterbox).
	from := func() mailauth.From { return mailauth.From{Domain: "example.org"} }
	a, err := c.Check(context.Background(), env, strings.NewReader(raw), from)
	if err != nil {
		panic(err)
	}
	fmt.Println(a.SPF.Result, len(a.DKIM), a.DMARC.Result, a.ARC.Result)
	// Output: temperror 0 temperror none
}
