package dkimcanon_test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"github.com/letterboxmail/letterbox/internal/dkimcanon"
)

// The data a relaxed/relaxed signature over From and Subject hashes: the
// body hash for bh=, then the selected header fields.
func Example() {
	msg := "From: Alice <alice@example.org>\r\nSubject:  Hello\r\n\tworld \r\n\r\nHi  there \r\n\r\n"
	br := bufio.NewReader(strings.NewReader(msg))
	_, fields, err := dkimcanon.ReadHeader(br, dkimcanon.MaxHeader)
	if err != nil {
		panic(err)
	}

	body := dkimcanon.NewBodyHasher(sha256.New(), dkimcanon.Relaxed, dkimcanon.CRAsSent)
	io.Copy(body, br)
	fmt.Printf("bh is %d bytes\n", len(body.Sum()))

	p := dkimcanon.NewPicker(fields)
	for _, name := range []string{"from", "subject", "from"} {
		if raw, ok := p.Pick(name); ok {
			fmt.Printf("%q\n", dkimcanon.RelaxedHeader(raw))
		}
	}
	// Output:
	// bh is 32 bytes
	// "from:Alice <alice@example.org>\r\n"
	// "subject:Hello world\r\n"
}
