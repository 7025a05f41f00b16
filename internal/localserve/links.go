package localserve

import (
	"crypto/rand"
	"log/slog"
	"net/http"

	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/store"
)

// linksPath is where `letterbox dev` serves attachment links.
const linksPath = "/dev/links"

// newLinks returns the signer of `letterbox dev`'s attachment links and
// their handler, to mount at linksPath: the link format of the deployed
// stack (package links), served by streaming the object from st rather than
// by a redirect, whatever the store. The key is random per process, so
// links end when letterbox dev does.
func newLinks(base string, st store.Store, log *slog.Logger) (*links.Signer, http.Handler) {
	kr, err := links.NewKeyring([]byte(rand.Text() + rand.Text()))
	if err != nil {
		panic(err) // 52 random base32 characters are always long enough
	}
	return &links.Signer{Base: base + linksPath, Keys: kr},
		http.StripPrefix(linksPath, &links.Handler{Keys: kr, Store: st, Log: log})
}
