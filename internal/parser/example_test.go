package parser_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/letterboxmail/letterbox/internal/parser"
)

func ExampleParse() {
	raw := "From: =?utf-8?q?J=C3=B6rg?= <joerg+invoices@example.de>\r\n" +
		"To: Support: help@letterbox.test;\r\n" +
		"Subject: =?iso-8859-1?q?R=E9ponse?=\r\n" +
		"Date: Mon, 8 Jan 2024 09:30:00 +0100\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYes, paid.\r\n\r\nOn Sun, Jan 7, 2024 at 8:00 PM Help <help@letterbox.test> wrote:\r\n> Paid?\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''Quittung%20%E2%84%96%201.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
		"--b--\r\n"
	m, err := parser.Parse(context.Background(), strings.NewReader(raw), parser.Options{ID: "01HMEXAMPLE"})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Subject, "|", m.Date)
	fmt.Println(m.From.Name, m.From.Address, m.From.MailboxHash)
	fmt.Println(m.To[0].Group, m.To[0].Address)
	fmt.Printf("%q\n", m.StrippedText)
	a := m.Attachments[0]
	fmt.Println(a.Filename, a.Size, a.SHA256[:12])
	// Output:
	// Réponse | 2024-01-08T09:30:00+01:00
	// Jörg joerg+invoices@example.de invoices
	// Support help@letterbox.test
	// "Yes, paid."
	// Quittung № 1.pdf 9 e5c62df5dab5
}
