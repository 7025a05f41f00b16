package parser

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"go.uber.org/goleak"
)

// txtServer answers TXT queries from records on a loopback port.
func txtServer(t testing.TB, records map[string]string) string {
	t.Helper()
	z := testenv.StartDNS(t)
	for name, v := range records {
		z.TXT(name, v)
	}
	return z.Addr
}

func signingKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return k, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

func sign(t testing.TB, k *rsa.PrivateKey, msg io.Reader) string {
	t.Helper()
	s, err := dkim.NewSigner(&dkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: k,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(s, msg); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s.Signature()
}

// TestParseWithAuth runs the whole thing: a DKIM-signed message with an
// attachment is parsed and authenticated in one pass against a real DNS
// server.
func TestParseWithAuth(t *testing.T) {
	k, rec := signingKey(t)
	addr := txtServer(t, map[string]string{
		"s1._domainkey.example.org.": rec,
		"_dmarc.example.org.":        "v=DMARC1; p=reject",
	})
	checker, err := mailauth.New(mailauth.Config{Resolver: addr, Timeout: 2 * time.Second, AuthServID: "mx.letterbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.Replace(withAttachments, "From: a@example.com", "From: Alice <alice@example.org>", 1)
	signed := sign(t, k, strings.NewReader(raw)) + raw
	m, st := parse(t, signed, Options{Auth: checker})
	if m.Auth == nil || len(m.Auth.DKIM) != 1 || m.Auth.DKIM[0].Result != "pass" || m.Auth.DMARC.Result != "pass" || m.Auth.SPF.Result != "none" {
		t.Fatalf("auth = %+v", m.Auth)
	}
	if !strings.HasPrefix(m.Auth.AuthenticationResults, "mx.letterbox.test; spf=none") {
		t.Fatalf("Authentication-Results = %q", m.Auth.AuthenticationResults)
	}
	if len(m.Attachments) != 3 || len(st.objs) != 3 || m.Subject != "files" {
		t.Fatalf("parse with auth lost content: %d attachments, %d stored", len(m.Attachments), len(st.objs))
	}

	// A tampered copy fails, and the parse is unaffected.
	m2, _ := parse(t, strings.Replace(signed, "see attached", "see ATTACHED", 1), Options{Auth: checker})
	if m2.Auth.DKIM[0].Result != "fail" || m2.Auth.DMARC.Result != "fail" || m2.Text != "see ATTACHED\nnotes" {
		t.Fatalf("tampered: auth %+v, text %q", m2.Auth, m2.Text)
	}
}

// TestParseWithAuthReadError: a failing input fails the parse, and the
// concurrent authentication stops with it.
func TestParseWithAuthReadError(t *testing.T) {
	checker, err := mailauth.New(mailauth.Config{Resolver: "127.0.0.1:1", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := io.MultiReader(strings.NewReader(withAttachments[:300]), &failReader{})
	_, err = Parse(context.Background(), r, Options{Auth: checker})
	if err == nil || err.Error() != "parser: read message: boom" {
		t.Fatalf("Parse error = %v, want parser: read message: boom", err)
	}
	// goleak (deferred above) fails the test if authentication outlived
	// Parse.
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, fmt.Errorf("boom") }

// bigMessage streams a DKIM-signed message of about size bytes with two
// large base64 attachments, generating it twice from the same seed (once
// to sign, once to send) so that it is never held in memory.
func bigMessage(t testing.TB, k *rsa.PrivateKey, size int) io.Reader {
	gen := func() io.Reader {
		pr, pw := io.Pipe()
		go func() {
			rnd := mrand.NewChaCha8([32]byte{1})
			w := &lineWriter{w: pw}
			fmt.Fprintf(pw, "From: Alice <alice@example.org>\r\nTo: bob@letterbox.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nTwo big files.\r\n")
			for i := 0; i < 2; i++ {
				fmt.Fprintf(pw, "--XYZ\r\nContent-Type: application/octet-stream; name=big%d.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n", i)
				enc := base64.NewEncoder(base64.StdEncoding, w)
				buf := make([]byte, 57*1024)
				for n := 0; n < size/2*3/4; n += len(buf) {
					rnd.Read(buf)
					enc.Write(buf)
				}
				enc.Close()
				w.flush()
				io.WriteString(pw, "\r\n")
			}
			io.WriteString(pw, "--XYZ--\r\n")
			pw.Close()
		}()
		return pr
	}
	return io.MultiReader(strings.NewReader(sign(t, k, gen())), gen())
}

// lineWriter breaks base64 into 76-character lines.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := min(76-l.col, len(p))
		l.w.Write(p[:c])
		l.col += c
		p = p[c:]
		if l.col == 76 {
			l.w.Write([]byte("\r\n"))
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) flush() {
	if l.col > 0 {
		l.w.Write([]byte("\r\n"))
		l.col = 0
	}
}

// hashStore keeps only each object's size and hash.
type hashStore struct {
	memStore
	mu    sync.Mutex
	sizes map[string]int64
}

func (h *hashStore) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	d := sha256.New()
	n, err := io.Copy(d, body)
	h.mu.Lock()
	h.sizes[key] = n
	h.mu.Unlock()
	return store.Object{Key: key, Size: n}, err
}

// TestMemoryBounded parses a 50 MiB signed message with two large
// attachments, authentication on, and checks that the heap stays far below
// the message size: attachments stream to the store and DKIM reads the
// same pass.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MiB message")
	}
	k, rec := signingKey(t)
	addr := txtServer(t, map[string]string{"s1._domainkey.example.org.": rec, "_dmarc.example.org.": "v=DMARC1; p=none"})
	checker, err := mailauth.New(mailauth.Config{Resolver: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const size = 50 << 20
	heapGrowth := testenv.HeapGrowth()
	st := &hashStore{sizes: map[string]int64{}}
	m, err := Parse(context.Background(), bigMessage(t, k, size), Options{ID: "BIG", Store: st, Auth: checker})
	grown := float64(heapGrowth())
	if err != nil {
		t.Fatal(err)
	}
	if m.Size < size || len(m.Attachments) != 2 || m.Attachments[0].Size < size/3 || m.Auth.DKIM[0].Result != "pass" {
		t.Fatalf("size %d, attachments %+v, dkim %+v", m.Size, m.Attachments, m.Auth.DKIM)
	}
	t.Logf("message %.1f MiB, peak heap growth %.1f MiB", float64(m.Size)/(1<<20), grown/(1<<20))
	if limit := float64(size) / 4; grown > limit {
		t.Fatalf("heap grew by %.1f MiB for a %.0f MiB message; want under %.1f MiB", grown/(1<<20), float64(size)/(1<<20), limit/(1<<20))
	}
}
