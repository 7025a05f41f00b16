package policyhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/policyhook"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func mustSecret(t *testing.T) []webhook.Secret {
	k, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return []webhook.Secret{k}
}

func query() *policyhook.Query {
	return &policyhook.Query{Stage: policyhook.StageData, SessionID: "s1", MessageID: "m1",
		Client:   policyhook.SMTPClient{IP: "192.0.2.1", HELO: "mx.sender.test", TLS: true},
		MailFrom: "a@sender.test", RcptTo: []string{"b@example.test"}, Size: 42,
		Headers: []policyhook.Header{{Name: "Subject", Value: "hi"}},
		Spam:    &message.Spam{Score: 7.5, RequiredScore: 15, Action: "add header", Scanner: "rspamd"},
		Virus:   &message.Virus{Result: "clean", Scanner: "clamd"}}
}

// hookServer answers with answer after verifying the Standard Webhooks
// signature; it records the request it verified.
func hookServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, chan *policyhook.Request) {
	t.Helper()
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *policyhook.Request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, body); err != nil {
			t.Errorf("signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req policyhook.Request
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("request body: %v", err)
		}
		got <- &req
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func jsonAnswer(s string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, s)
	}
}

var loopback = egress.Policy{AllowLoopback: true}

func TestAskAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       policyhook.Answer
	}{
		{"accept", `{"action":"accept"}`, policyhook.Answer{Action: "accept"}},
		{"accept ignores code", `{"action":"accept","code":550,"message":"x"}`, policyhook.Answer{Action: "accept"}},
		{"quarantine", `{"action":"quarantine","extra":{"future":true}}`, policyhook.Answer{Action: "quarantine"}},
		{"reject defaults", `{"action":"reject"}`, policyhook.Answer{Action: "reject", Code: 550, EnhancedCode: "5.7.1", Message: "Message refused by policy"}},
		{"reject own code", `{"action":"reject","code":554,"enhanced_code":"5.7.26","message":"DMARC says no"}`, policyhook.Answer{Action: "reject", Code: 554, EnhancedCode: "5.7.26", Message: "DMARC says no"}},
		{"defer defaults", `{"action":"defer"}`, policyhook.Answer{Action: "defer", Code: 450, EnhancedCode: "4.7.1", Message: "Message deferred by policy; try again later"}},
		{"defer own code", `{"action":"defer","code":451,"enhanced_code":"4.7.0","message":"greylisted"}`, policyhook.Answer{Action: "defer", Code: 451, EnhancedCode: "4.7.0", Message: "greylisted"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := hookServer(t, jsonAnswer(tt.body))
			c := policyhook.New(loopback, nil)
			a, err := c.Ask(context.Background(), policyhook.Target{URL: srv.URL, Secrets: mustSecret(t), Timeout: 5 * time.Second}, "m1.data.1", query())
			if err != nil {
				t.Fatal(err)
			}
			if *a != tt.want {
				t.Fatalf("answer = %+v, want %+v", *a, tt.want)
			}
			req := <-got
			if req.Type != policyhook.TypeData || req.Data.MessageID != "m1" || req.Data.Client.IP != "192.0.2.1" ||
				req.Data.Spam.Score != 7.5 || req.Data.Virus.Result != "clean" || req.Data.Headers[0].Name != "Subject" {
				t.Fatalf("request = %+v", req.Data)
			}
		})
	}
}

// Every bad answer and every misbehaving hook is an error the caller turns
// into the failure mode, within the deadline.
func TestAskFailures(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
		want   string
	}{
		{"unknown action", jsonAnswer(`{"action":"bounce"}`), `invalid answer: action "bounce"`},
		{"no action", jsonAnswer(`{}`), `invalid answer: action ""`},
		{"reject with 4xx", jsonAnswer(`{"action":"reject","code":450}`), "reject with code 450: a reject code is 5xx"},
		{"defer with 5xx", jsonAnswer(`{"action":"defer","code":550}`), "defer with code 550: a defer code is 4xx"},
		{"reject with 2xx", jsonAnswer(`{"action":"reject","code":250}`), "reject with code 250"},
		{"enhanced class mismatch", jsonAnswer(`{"action":"reject","code":550,"enhanced_code":"4.7.1"}`), `enhanced_code "4.7.1": want an RFC 3463 code of class 5`},
		{"enhanced garbage", jsonAnswer(`{"action":"defer","enhanced_code":"4.x.1"}`), `enhanced_code "4.x.1"`},
		{"message with CRLF", jsonAnswer(`{"action":"reject","message":"no\r\n250 OK"}`), "message has byte 0x0d at 2"},
		{"message not ASCII", jsonAnswer(`{"action":"reject","message":"nein é"}`), "message has byte 0xc3"},
		{"message too long", jsonAnswer(`{"action":"reject","message":"` + strings.Repeat("a", 201) + `"}`), "message of 201 bytes: at most 200"},
		{"invalid JSON", jsonAnswer(`{"action":`), "answer is not a JSON object"},
		{"JSON array", jsonAnswer(`["accept"]`), "answer is not a JSON object"},
		{"wrong type", jsonAnswer(`{"action":"reject","code":"550"}`), `field "code" has the wrong type`},
		{"status 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", 500) }, "answered 500 Internal Server Error"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://10.0.0.1/", http.StatusFound)
		}, "answered 302 Found"},
		{"huge body", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"action":"accept","pad":"`)
			chunk := strings.Repeat("x", 64<<10)
			for range 64 { // 4 MiB
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}, "answer larger than 16384 bytes"},
		{"slow drip", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for _, b := range []byte(`{"action":"accept"}`) {
				w.Write([]byte{b})
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}, "no answer within 300ms"},
		{"no answer", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "no answer within 300ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := hookServer(t, tt.answer)
			c := policyhook.New(loopback, nil)
			start := time.Now()
			a, err := c.Ask(context.Background(), policyhook.Target{URL: srv.URL, Secrets: mustSecret(t), Timeout: 300 * time.Millisecond}, "id", query())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Ask = %+v, %v; want error containing %q", a, err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Ask took %s with a 300ms deadline", d)
			}
		})
	}
}

// The egress guard applies to every connection: loopback (without
// AllowLoopback) and private addresses are refused before connecting.
func TestAskSSRF(t *testing.T) {
	srv, got := hookServer(t, jsonAnswer(`{"action":"accept"}`))
	for _, url := range []string{srv.URL, "http://10.0.0.1:9/policy", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"} {
		c := policyhook.New(egress.Policy{}, nil)
		_, err := c.Ask(context.Background(), policyhook.Target{URL: url, Secrets: mustSecret(t), Timeout: 5 * time.Second}, "id", query())
		if !errors.Is(err, egress.ErrForbidden) || fault.IsTemporary(err) {
			t.Errorf("%s: err = %v, want a permanent egress.ErrForbidden", url, err)
		}
	}
	if len(got) != 0 {
		t.Fatal("the hook was reached through a refused address")
	}
}

func TestAskUnsigned(t *testing.T) {
	c := policyhook.New(loopback, nil)
	_, err := c.Ask(context.Background(), policyhook.Target{URL: "http://127.0.0.1:9/", Timeout: time.Second}, "id", query())
	if err == nil || !strings.Contains(err.Error(), "no signing secret") {
		t.Fatalf("err = %v", err)
	}
}

// A Lambda hook is invoked synchronously (RequestResponse) with the same
// JSON; here the real SDK client talks to a local endpoint that speaks the
// Lambda Invoke API.
func TestAskLambda(t *testing.T) {
	const arn = "arn:aws:lambda:eu-west-1:123456789012:function:policy"
	var gotPath, gotType string
	var gotBody policyhook.Request
	fnErr := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotType = r.URL.Path, r.Header.Get("X-Amz-Invocation-Type")
		json.NewDecoder(r.Body).Decode(&gotBody)
		if fnErr != "" {
			w.Header().Set("X-Amz-Function-Error", fnErr)
			io.WriteString(w, `{"errorMessage":"boom"}`)
			return
		}
		io.WriteString(w, `{"action":"reject","code":550,"message":"not here"}`)
	}))
	t.Cleanup(srv.Close)
	lc := lambda.New(lambda.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
	c := policyhook.New(egress.Policy{}, lc)
	a, err := c.Ask(context.Background(), policyhook.Target{URL: arn, Timeout: 5 * time.Second}, "id", query())
	if err != nil {
		t.Fatal(err)
	}
	if a.Action != "reject" || a.Code != 550 || a.EnhancedCode != "5.7.1" || a.Message != "not here" {
		t.Fatalf("answer = %+v", a)
	}
	if !strings.Contains(gotPath, "/functions/"+arn+"/invocations") && !strings.Contains(gotPath, "/functions/arn%3Aaws") {
		t.Errorf("path = %q", gotPath)
	}
	if gotType != "RequestResponse" || gotBody.Data == nil || gotBody.Data.MessageID != "m1" {
		t.Errorf("invocation type %q, body %+v", gotType, gotBody)
	}
	fnErr = "Unhandled"
	if _, err := c.Ask(context.Background(), policyhook.Target{URL: arn, Timeout: 5 * time.Second}, "id", query()); err == nil || !strings.Contains(err.Error(), `function error "Unhandled"`) {
		t.Fatalf("function error: %v", err)
	}
	if _, err := policyhook.New(egress.Policy{}, nil).Ask(context.Background(), policyhook.Target{URL: arn, Timeout: time.Second}, "id", query()); err == nil || !strings.Contains(err.Error(), "no Lambda client") {
		t.Fatalf("without a Lambda client: %v", err)
	}
}

// BenchmarkAsk: one signed question to a loopback hook and its answer.
func BenchmarkAsk(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"action":"accept"}`)
	}))
	defer srv.Close()
	k, _ := webhook.ParseSecret(secret)
	c := policyhook.New(loopback, nil)
	t := policyhook.Target{URL: srv.URL, Secrets: []webhook.Secret{k}, Timeout: 5 * time.Second}
	q := query()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Ask(context.Background(), t, "id", q); err != nil {
			b.Fatal(err)
		}
	}
}
