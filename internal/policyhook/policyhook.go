// Package policyhook asks the routes file's policy hook (policy.hook) what
// to do with a message during the SMTP session: at RCPT (RFC 5321
// §4.1.1.3) with the envelope so far, and at the end of DATA (§4.1.1.4)
// with the envelope, the header fields and the scanners' verdicts.
//
// The hook is an HTTP endpoint or, on AWS, a Lambda function (its URL is
// a function ARN, invoked synchronously). An HTTP request is a POST of a
// JSON Request signed per Standard Webhooks
// (https://www.standardwebhooks.com), as letterbox's webhooks are (package
// webhook verifies it); it connects only where the egress guard allows
// (package egress), follows no redirect, and has one deadline for the
// whole exchange. The answer is a JSON Answer; an answer that is not
// valid (an action other than accept, reject, defer or quarantine, a
// reject code that is not 5xx, a defer code that is not 4xx, an RFC 3463
// enhanced code of another class, a message that is not one line of
// printable ASCII, a body over MaxAnswerBytes) is a failure, as are a
// non-2xx status, a timeout and a refused connection: the caller then
// applies the hook's failure mode.
package policyhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/telemetry"
	"github.com/letterboxmail/letterbox/message"
	"github.com/letterboxmail/letterbox/webhook"
)

// Stages and the request types that name them.
const (
	StageRcpt = "rcpt"
	StageData = "data"

	TypeRcpt = "policy.rcpt"
	TypeData = "policy.data"
)

// Actions an answer may give.
const (
	Accept     = "accept"
	Reject     = "reject"
	Defer      = "defer"
	Quarantine = "quarantine"
)

// Bounds of an answer.
const (
	// MaxAnswerBytes bounds the answer's body; a longer one is a failure.
	MaxAnswerBytes = 16 << 10
	// MaxMessageLen bounds the answer's message, which the SMTP client
	// sees in the reply.
	MaxMessageLen = 200
)

// Request is the JSON body of a hook request, version 1. Receivers must
// ignore fields they do not know.
type Request struct {
	// Type is "policy.rcpt" or "policy.data".
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      *Query    `json:"data"`
}

// Query is what the gateway knows at the stage it asks.
type Query struct {
	// Stage is "rcpt" or "data".
	Stage string `json:"stage"`
	// SessionID names the SMTP connection, MessageID the transaction
	// (the id the message is stored under if accepted).
	SessionID string     `json:"session_id"`
	MessageID string     `json:"message_id"`
	Client    SMTPClient `json:"client"`
	// MailFrom is the reverse-path, "" for the null sender.
	MailFrom string `json:"mail_from"`
	// Rcpt, at the rcpt stage, is the recipient being asked about.
	Rcpt string `json:"rcpt,omitempty"`
	// RcptTo is the recipients accepted so far (rcpt) or all of them
	// (data).
	RcptTo []string `json:"rcpt_to"`
	// At the data stage: the message's size as stored (with the
	// gateway's trace fields), its header fields (as received, unfolded,
	// not decoded; the gateway's own trace fields first) and the
	// scanners' verdicts, when they ran.
	Size    int64          `json:"size,omitempty"`
	Headers []Header       `json:"headers,omitempty"`
	Spam    *message.Spam  `json:"spam,omitempty"`
	Virus   *message.Virus `json:"virus,omitempty"`
}

// SMTPClient is the SMTP client as the gateway saw it.
type SMTPClient struct {
	IP       string `json:"ip"`
	HELO     string `json:"helo"`
	TLS      bool   `json:"tls"`
	AuthUser string `json:"auth_user,omitempty"`
}

// Header is one header field.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Answer is the hook's JSON answer. Code, EnhancedCode and Message are
// used by reject (default 550 5.7.1) and defer (default 450 4.7.1);
// accept and quarantine ignore them.
type Answer struct {
	Action       string `json:"action"`
	Code         int    `json:"code,omitempty"`
	EnhancedCode string `json:"enhanced_code,omitempty"`
	Message      string `json:"message,omitempty"`
}

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// Validate checks an answer and fills in the defaults of its action.
func (a *Answer) Validate() error {
	switch a.Action {
	case Accept, Quarantine:
		a.Code, a.EnhancedCode, a.Message = 0, "", ""
		return nil
	case Reject:
		if a.Code == 0 {
			a.Code = 550
		}
		if a.Code < 500 || a.Code > 599 {
			return fmt.Errorf("reject with code %d: a reject code is 5xx", a.Code)
		}
	case Defer:
		if a.Code == 0 {
			a.Code = 450
		}
		if a.Code < 400 || a.Code > 499 {
			return fmt.Errorf("defer with code %d: a defer code is 4xx", a.Code)
		}
	default:
		return fmt.Errorf("action %q: want accept, reject, defer or quarantine", truncate(a.Action, 32))
	}
	class := a.Code / 100
	if a.EnhancedCode == "" {
		a.EnhancedCode = strconv.Itoa(class) + ".7.1"
	} else if !enhancedRE.MatchString(a.EnhancedCode) || int(a.EnhancedCode[0]-'0') != class {
		return fmt.Errorf("enhanced_code %q: want an RFC 3463 code of class %d (e.g. %d.7.1)", truncate(a.EnhancedCode, 16), class, class)
	}
	if len(a.Message) > MaxMessageLen {
		return fmt.Errorf("message of %d bytes: at most %d", len(a.Message), MaxMessageLen)
	}
	for i := 0; i < len(a.Message); i++ {
		if c := a.Message[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("message has byte 0x%02x at %d: only printable ASCII on one line", c, i)
		}
	}
	if a.Message == "" {
		if a.Action == Reject {
			a.Message = "Message refused by policy"
		} else {
			a.Message = "Message deferred by policy; try again later"
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// LambdaAPI is the part of the Lambda client the hook uses.
type LambdaAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Target is one hook: where to ask, how to sign, how long to wait.
type Target struct {
	// URL is an http or https URL, or a Lambda function ARN.
	URL string
	// Secrets sign HTTP requests (several during a rotation); a Lambda
	// function is reached through IAM and needs none.
	Secrets []webhook.Secret
	Timeout time.Duration
}

// Client asks hooks. It is safe for concurrent use.
type Client struct {
	http *http.Client
	// Lambda invokes ARN targets; nil refuses them.
	Lambda LambdaAPI
	// UserAgent is sent with HTTP requests.
	UserAgent string
	// Now stamps requests; nil is time.Now.
	Now func() time.Time
}

// New returns a client whose HTTP connections obey policy.
func New(policy egress.Policy, lam LambdaAPI) *Client {
	return &Client{
		http: &http.Client{
			Transport: &http.Transport{
				DialContext:         policy.DialContext,
				ForceAttemptHTTP2:   true,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 10 * time.Second,
				// The caller's deadline bounds everything, body included.
			},
			// No redirect is followed: it would leave the URL the
			// operator configured (and the egress guard's intent).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Lambda:    lam,
		UserAgent: "letterbox-policy-hook/1",
	}
}

// IsLambda reports whether a target URL is a Lambda function ARN.
func IsLambda(url string) bool { return len(url) > 4 && url[:4] == "arn:" }

// Ask sends the query and returns the hook's valid answer, or an error
// saying why there is none (the caller applies the failure mode). id
// identifies the request (the webhook-id header): unique per question.
func (c *Client) Ask(ctx context.Context, t Target, id string, q *Query) (*Answer, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	ts := now()
	typ := TypeRcpt
	if q.Stage == StageData {
		typ = TypeData
	}
	body, err := json.Marshal(Request{Type: typ, Timestamp: ts.UTC(), Data: q})
	if err != nil {
		return nil, fault.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var raw []byte
	if IsLambda(t.URL) {
		raw, err = c.invoke(ctx, t, body)
	} else {
		raw, err = c.post(ctx, t, id, ts, body)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, egress.ErrForbidden) {
			return nil, fault.Temporaryf("policy hook: no answer within %s", t.Timeout)
		}
		return nil, err
	}
	var a Answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fault.Temporaryf("policy hook: answer is not a JSON object: %s", jsonErr(err))
	}
	if err := a.Validate(); err != nil {
		return nil, fault.Temporaryf("policy hook: invalid answer: %w", err)
	}
	return &a, nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "unreadable"
}

// NewRequest builds the signed HTTP request of one question: the one
// place a request is made, where trace headers are added too.
func (c *Client) NewRequest(ctx context.Context, t Target, id string, ts time.Time, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fault.Permanentf("policy hook url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, webhook.SignatureHeader(t.Secrets, id, ts, body))
	// The hook's own tracing continues the message's trace (the SMTP
	// command's span).
	telemetry.InjectHTTP(req)
	return req, nil
}

func (c *Client) post(ctx context.Context, t Target, id string, ts time.Time, body []byte) ([]byte, error) {
	if len(t.Secrets) == 0 {
		return nil, fault.Permanentf("policy hook: no signing secret")
	}
	req, err := c.NewRequest(ctx, t, id, ts, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrForbidden) {
			return nil, fault.Permanent(fmt.Errorf("policy hook: %w", err))
		}
		return nil, fault.Temporary(fmt.Errorf("policy hook: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drain a little, so the connection may be reused; never more.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fault.Temporaryf("policy hook: answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return readAnswer(resp.Body)
}

func readAnswer(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxAnswerBytes+1))
	if err != nil {
		return nil, fault.Temporary(fmt.Errorf("policy hook: reading the answer: %w", err))
	}
	if len(raw) > MaxAnswerBytes {
		return nil, fault.Temporaryf("policy hook: answer larger than %d bytes", MaxAnswerBytes)
	}
	return raw, nil
}

func (c *Client) invoke(ctx context.Context, t Target, body []byte) ([]byte, error) {
	if c.Lambda == nil {
		return nil, fault.Permanentf("policy hook: %s is a Lambda function, and this gateway has no Lambda client (AWS only)", t.URL)
	}
	out, err := c.Lambda.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(t.URL),
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        body,
	})
	if err != nil {
		return nil, fault.Temporary(fmt.Errorf("policy hook: invoke %s: %w", t.URL, err))
	}
	if out.FunctionError != nil {
		return nil, fault.Temporaryf("policy hook: function error %q", truncate(aws.ToString(out.FunctionError), 64))
	}
	return readAnswer(bytes.NewReader(out.Payload))
}
