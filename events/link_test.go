package events_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/links"
)

// sampleLinkKey signed link-url.json's token (expiry 2100-01-01).
const sampleLinkKey = "letterbox-sample-link-key-0123456789abcdef0123456789"

// The link function's sample: a GET of a link through the function URL.
// With the key that signed it the handler serves it; once the key has been
// rotated out it answers 403.
func TestLinkSample(t *testing.T) {
	st, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const key = "attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/1/order.pdf"
	if _, err := st.Put(context.Background(), key, strings.NewReader("%PDF-1.4\n"), map[string]string{"content-type": "application/pdf"}); err != nil {
		t.Fatal(err)
	}
	invoke := func(secret string) events.LambdaFunctionURLResponse {
		t.Helper()
		kr, err := links.NewKeyring([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		// Redirect is nil: this handler streams, as in letterbox dev; the
		// redirect to S3 is tested against versitygw in internal/links.
		h := links.FunctionURL(&links.Handler{Keys: kr, Store: st, Log: quiet()})
		out, err := lambda.NewHandler(h).Invoke(context.Background(), sample(t, "link-url.json"))
		if err != nil {
			t.Fatal(err)
		}
		var resp events.LambdaFunctionURLResponse
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := invoke(sampleLinkKey); r.StatusCode != 200 || r.Body != "%PDF-1.4\n" || r.Headers["Content-Type"] != "application/pdf" {
		t.Errorf("with the signing key: %d %v %q", r.StatusCode, r.Headers, r.Body)
	}
	if r := invoke(strings.Repeat("k", links.MinKeyBytes)); r.StatusCode != 403 {
		t.Errorf("with another key: %d %q, want 403", r.StatusCode, r.Body)
	}
}
