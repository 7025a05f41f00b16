package forward_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/forward"
)

// SRS rewrites the envelope sender of a forwarded message so that SPF is
// checked against the forwarder's domain, and recovers it from a bounce.
func ExampleSRS() {
	srs, err := forward.NewSRS("fwd.example.net", "tops3cr3t-0123456789abcdef")
	if err != nil {
		log.Fatal(err)
	}
	srs.Now = func() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) }

	rewritten, _ := srs.Forward("alice@example.org")
	fmt.Println(rewritten)
	original, _ := srs.Reverse(rewritten)
	fmt.Println(original)
	// Another forwarder's SRS0 address becomes SRS1, naming that forwarder.
	hop, _ := srs.Forward("SRS0=abcd=XY=example.com=bob@fwd1.test")
	fmt.Println(hop)
	null, _ := srs.Forward("")
	fmt.Printf("null sender: %q\n", null)
	// Output:
	// SRS0=Jaaa=JL=example.org=alice@fwd.example.net
	// alice@example.org
	// SRS1=Uv6a=fwd1.test==abcd=XY=example.com=bob@fwd.example.net
	// null sender: ""
}

// New builds the forwarder the deliver function hands to
// delivery.Handler.Forwarder.
func ExampleNew() {
	st, err := filestore.New(os.TempDir())
	if err != nil {
		log.Fatal(err)
	}
	var arc *forward.ARCKey
	if path := os.Getenv("LETTERBOX_ARC_KEY_FILE"); path != "" {
		if arc, err = forward.LoadARCKey(path, os.Getenv("LETTERBOX_ARC_SELECTOR"), os.Getenv("LETTERBOX_ARC_DOMAIN")); err != nil {
			log.Fatal(err)
		}
	}
	fw, err := forward.New(forward.Config{
		Store:     st,
		SRSDomain: "fwd.example.net",
		SRSSecret: os.Getenv("LETTERBOX_SRS_SECRET"),
		ARC:       arc,
		Policy:    egress.Policy{},
	})
	if err != nil {
		log.Fatal(err)
	}
	h := &delivery.Handler{Store: st, Forwarder: fw}
	_ = h
}
