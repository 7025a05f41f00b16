//go:build !awsstack

package awsstack

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/pipeline"
)

// invokerFunc adapts a function to Invoker.
type invokerFunc func(context.Context, []byte) (lambdalocal.Result, error)

func (f invokerFunc) Invoke(ctx context.Context, p []byte) (lambdalocal.Result, error) {
	return f(ctx, p)
}

// startURL serves fn behind the function-URL stand-in.
func startURL(t *testing.T, fn invokerFunc) (*FunctionURL, *[]Invocation) {
	var invs []Invocation
	u, err := ListenFunctionURL("letterbox-Fn", "FnUrl", func(inv Invocation) { invs = append(invs, inv) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	u.Serve(fn)
	return u, &invs
}

// The request becomes a payload format 2.0 event and the answer of the
// adapter the link function uses (links.FunctionURL) an HTTP response.
func TestFunctionURLRoundTrip(t *testing.T) {
	var raw map[string]any
	var seen *http.Request
	var seenBody []byte
	adapter := links.FunctionURL(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		seenBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Location", "http://elsewhere.test/x")
		w.Header().Set("Set-Cookie", "a=1")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, "moved")
	}))
	u, invs := startURL(t, func(ctx context.Context, p []byte) (lambdalocal.Result, error) {
		if err := json.Unmarshal(p, &raw); err != nil {
			t.Fatal(err)
		}
		var in events.LambdaFunctionURLRequest
		if err := json.Unmarshal(p, &in); err != nil {
			t.Fatal(err)
		}
		out, err := adapter(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(out)
		return lambdalocal.Result{Payload: b}, nil
	})
	if !strings.HasSuffix(u.URL(), "/") || !strings.HasPrefix(u.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q: want http://127.0.0.1:PORT/", u.URL())
	}
	req, _ := http.NewRequest(http.MethodPost, u.URL()+"v1.a%2Fb?x=1&x=2&y=3", strings.NewReader("hello"))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Cookie", "c1=v1; c2=v2")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://elsewhere.test/x" || string(body) != "moved" {
		t.Errorf("response: %d Location %q body %q", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if raw["version"] != "2.0" || raw["rawPath"] != "/v1.a%2Fb" || raw["rawQueryString"] != "x=1&x=2&y=3" || raw["isBase64Encoded"] != false || raw["body"] != "hello" {
		t.Errorf("event: %v", raw)
	}
	hdrs, _ := raw["headers"].(map[string]any)
	if hdrs["x-multi"] != "one,two" || hdrs["content-type"] != "text/plain" || hdrs["cookie"] != nil {
		t.Errorf("headers (lower-cased, joined, no cookie): %v", hdrs)
	}
	if c, _ := json.Marshal(raw["cookies"]); string(c) != `["c1=v1","c2=v2"]` {
		t.Errorf("cookies: %s", c)
	}
	ctxHTTP, _ := raw["requestContext"].(map[string]any)["http"].(map[string]any)
	if ctxHTTP["method"] != "POST" || ctxHTTP["path"] != "/v1.a/b" || ctxHTTP["sourceIp"] != "127.0.0.1" {
		t.Errorf("requestContext.http: %v", ctxHTTP)
	}
	if seen.Method != http.MethodPost || string(seenBody) != "hello" || seen.URL.RawQuery != "x=1&x=2&y=3" {
		t.Errorf("handler saw %s %s body %q", seen.Method, seen.URL, seenBody)
	}
	if len(*invs) != 1 || (*invs)[0].Mapping != "FnUrl" || (*invs)[0].Err != nil {
		t.Errorf("invocations: %+v", *invs)
	}
}

// A binary body travels base64-encoded; a base64 answer is decoded and its
// cookies become Set-Cookie headers.
func TestFunctionURLBinary(t *testing.T) {
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	u, _ := startURL(t, func(ctx context.Context, p []byte) (lambdalocal.Result, error) {
		var in events.LambdaFunctionURLRequest
		_ = json.Unmarshal(p, &in)
		if !in.IsBase64Encoded || in.Body != base64.StdEncoding.EncodeToString(bin) {
			t.Errorf("binary body: base64 %v %q", in.IsBase64Encoded, in.Body)
		}
		b, _ := json.Marshal(events.LambdaFunctionURLResponse{StatusCode: 201, Headers: map[string]string{"Content-Type": "application/octet-stream"},
			Cookies: []string{"s=1; Path=/", "t=2"}, Body: base64.StdEncoding.EncodeToString(bin), IsBase64Encoded: true})
		return lambdalocal.Result{Payload: b}, nil
	})
	resp, err := http.Post(u.URL(), "application/octet-stream", bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !bytes.Equal(body, bin) || strings.Join(resp.Header.Values("Set-Cookie"), "|") != "s=1; Path=/|t=2" {
		t.Errorf("response: %d %v %v", resp.StatusCode, body, resp.Header)
	}
}

// The stand-in's answers of its own: an inferred 200, a function error
// (502), a body over the 6 MB quota (413).
func TestFunctionURLAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  string
		err     error
		body    int
		status  int
		ct, out string
	}{
		{name: "inferred", answer: `{"hello":"world"}`, status: 200, ct: "application/json", out: `{"hello":"world"}`},
		{name: "function error", answer: `{"errorType":"x","errorMessage":"y"}`, err: &lambdalocal.FunctionError{Type: "x", Message: "y"},
			status: 502, ct: "application/json", out: `{"Message":"Internal Server Error"}`},
		{name: "not JSON", answer: `nope`, status: 502, ct: "application/json", out: `{"Message":"Internal Server Error"}`},
		{name: "too large", body: maxURLRequestBytes + 1, status: 413, ct: "text/plain; charset=utf-8",
			out: "Request must be smaller than 6291456 bytes for the InvokeFunction operation\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			u, _ := startURL(t, func(context.Context, []byte) (lambdalocal.Result, error) {
				called = true
				return lambdalocal.Result{Payload: []byte(tc.answer)}, tc.err
			})
			resp, err := http.Post(u.URL(), "text/plain", bytes.NewReader(make([]byte, tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.ct || string(b) != tc.out {
				t.Errorf("got %d %q %q, want %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.status, tc.ct, tc.out)
			}
			if called != (tc.body == 0) {
				t.Errorf("function invoked: %v", called)
			}
		})
	}
}

// The template's secrets are generated; package pipeline reads them as the
// functions do: AWSPREVIOUS is absent until a rotation, and a link signed
// before two rotations is refused.
func TestSecretsLinkKeyRotation(t *testing.T) {
	tp, err := LoadTemplate(repoTemplate(t), map[string]string{"Domains": "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	s := StartSecrets(t)
	if err := s.Generate(tp); err != nil {
		t.Fatal(err)
	}
	arn := tp.Refs["LinkKeySecret"]
	if v, ok := s.Value(arn, "AWSCURRENT"); !ok || len(v) != 64 {
		t.Fatalf("LinkKeySecret %q: AWSCURRENT %q, want 64 generated characters", arn, v)
	}
	if _, ok := tp.Refs["ForwardSrsSecret"]; ok {
		t.Errorf("ForwardSrsSecret generated without UseForwarding")
	}
	api := secretsmanager.New(secretsmanager.Options{Region: Region, BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	getenv := func(k string) string { return map[string]string{"LETTERBOX_LINK_KEY_ARN": arn}[k] }
	load := func() *links.Keyring {
		kr, err := pipeline.LoadLinkKeys(context.Background(), getenv, api)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	now := time.Now()
	token := load().Token("attachments/x/0/a.bin", now.Add(time.Hour))
	for i, wantOK := range []bool{true, false} {
		v, _ := password(64)
		s.Rotate(arn, v)
		_, err := load().Verify(token, now)
		if (err == nil) != wantOK {
			t.Errorf("after rotation %d: verify: %v", i+1, err)
		}
	}
	_, err = api.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn), VersionStage: aws.String("AWSPENDING")})
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("AWSPENDING: %v, want ResourceNotFoundException", err)
	}
}
