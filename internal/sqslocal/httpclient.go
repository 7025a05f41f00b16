package sqslocal

import (
	"bytes"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// HTTPClient returns an HTTP client for the SDK (sqs.Options.HTTPClient) that
// hands net/http its own copy of each request body.
//
// The SDK closes a request's body while net/http's writer may still be
// reading it; net/http then closes the connection, and a response larger
// than the client's read buffer (a ReceiveMessage of a few KiB or more) fails
// with "use of closed network connection" (aws/aws-sdk-go-v2#2737; about one
// such receive in a hundred here). The SDK retries it, but the lost first
// attempt has already made its messages invisible, as it would on SQS. Code
// that needs every receive to count (the harness's event source mapping
// poller, tests of exact counts) uses this client; code under test keeps the
// SDK's default, as in Lambda.
func HTTPClient() aws.HTTPClient { return bufferedBodies{awshttp.NewBuildableClient()} }

type bufferedBodies struct{ c aws.HTTPClient }

func (b bufferedBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return b.c.Do(r)
	}
	data, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	r.ContentLength = int64(len(data))
	return b.c.Do(r)
}
