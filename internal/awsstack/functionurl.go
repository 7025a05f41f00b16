package awsstack

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
)

// maxURLRequestBytes is a function URL's request payload quota (6 MB,
// Lambda's synchronous invocation limit).
const maxURLRequestBytes = 6 << 20

// FunctionURL stands for a function's AWS::Lambda::Url (AuthType NONE) on
// loopback: each HTTP request becomes the event Lambda sends for function
// URLs, payload format version 2.0, the function runs through Function,
// and its answer becomes the HTTP response. The formats are the AWS Lambda
// Developer Guide's, "Invoking Lambda function URLs", request and
// response payloads
// (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html),
// as events.LambdaFunctionURLRequest and LambdaFunctionURLResponse carry
// them (aws-lambda-go, events/testdata/lambda-urls-request.json):
//
//   - version "2.0"; rawPath and rawQueryString as sent; headers with
//     lower-cased names, repeated ones joined with commas; the Cookie
//     header as the cookies list instead; requestContext.http with
//     method, path, protocol, sourceIp and userAgent;
//   - body, base64-encoded with isBase64Encoded set unless its
//     Content-Type is text;
//   - the answer's statusCode, headers, cookies (as Set-Cookie) and body
//     (decoded when isBase64Encoded). An answer that is JSON without a
//     statusCode is sent as 200 application/json, as Lambda infers it;
//   - a function error, a crash or a timeout answers 502, as Lambda's
//     front end does.
//
// Not modelled: AWS_IAM auth, CORS, response streaming, the 6 MB
// response limit.
type FunctionURL struct {
	Function Invoker
	// Name is the function's name, the request's apiId.
	Name string
	// Mapping names the URL in the invocation record (its logical id).
	Mapping string
	// Invoked, when set, is told about every invocation.
	Invoked func(Invocation)

	srv *http.Server
	ln  net.Listener
}

// ListenFunctionURL listens on a free loopback port, so that the URL is
// known before the functions that name it start; Serve answers.
func ListenFunctionURL(name, mapping string, invoked func(Invocation)) (*FunctionURL, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &FunctionURL{Name: name, Mapping: mapping, Invoked: invoked, ln: ln}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	return u, nil
}

// Serve answers the URL's requests by invoking fn.
func (u *FunctionURL) Serve(fn Invoker) {
	u.Function = fn
	go u.srv.Serve(u.ln)
}

// URL is FunctionUrl as AWS gives it: the origin with a trailing slash.
func (u *FunctionURL) URL() string { return "http://" + u.ln.Addr().String() + "/" }

// Close stops the server.
func (u *FunctionURL) Close() {
	_ = u.srv.Close()
	_ = u.ln.Close()
}

func (u *FunctionURL) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxURLRequestBytes+1))
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxURLRequestBytes {
		http.Error(w, "Request must be smaller than 6291456 bytes for the InvokeFunction operation", http.StatusRequestEntityTooLarge)
		return
	}
	payload, err := json.Marshal(URLRequest(r, body, u.Name))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	res, err := u.Function.Invoke(r.Context(), payload)
	if u.Invoked != nil {
		u.Invoked(Invocation{Mapping: u.Mapping, Records: 1, Payload: len(payload), Result: res, Err: err})
	}
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"Message":"Internal Server Error"}`)
		return
	}
	if err := WriteURLResponse(w, res.Payload); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"Message":"Internal Server Error"}`)
	}
}

// URLRequest is the payload format 2.0 event of r with its body.
func URLRequest(r *http.Request, body []byte, name string) events.LambdaFunctionURLRequest {
	in := events.LambdaFunctionURLRequest{
		Version:        "2.0",
		RawPath:        r.URL.EscapedPath(),
		RawQueryString: r.URL.RawQuery,
		Headers:        map[string]string{},
	}
	for k, v := range r.Header {
		k = strings.ToLower(k)
		if k == "cookie" {
			for _, line := range v {
				for _, c := range strings.Split(line, ";") {
					if c = strings.TrimSpace(c); c != "" {
						in.Cookies = append(in.Cookies, c)
					}
				}
			}
			continue
		}
		in.Headers[k] = strings.Join(v, ",")
	}
	host, port, _ := net.SplitHostPort(r.Host)
	in.Headers["host"] = r.Host
	in.Headers["x-forwarded-proto"] = "http"
	in.Headers["x-forwarded-port"] = port
	sourceIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	in.Headers["x-forwarded-for"] = sourceIP
	if q := r.URL.Query(); len(q) > 0 {
		in.QueryStringParameters = map[string]string{}
		for k, v := range q {
			in.QueryStringParameters[k] = strings.Join(v, ",")
		}
	}
	now := time.Now().UTC()
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	in.RequestContext = events.LambdaFunctionURLRequestContext{
		AccountID: "anonymous", RequestID: hex.EncodeToString(id), APIID: name, DomainName: host, DomainPrefix: name,
		Time: now.Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
		HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{Method: r.Method, Path: r.URL.Path, Protocol: r.Proto,
			SourceIP: sourceIP, UserAgent: r.UserAgent()},
	}
	if len(body) > 0 {
		if textual(r.Header.Get("Content-Type")) {
			in.Body = string(body)
		} else {
			in.Body, in.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
	}
	return in
}

// textual reports whether a body of that type travels as text.
func textual(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || mt == "application/xml" ||
		mt == "application/javascript" || mt == "application/x-www-form-urlencoded" ||
		strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

// WriteURLResponse writes the function's answer, payload, as Lambda's
// front end does. An error means the answer could not be used (nothing
// was written).
func WriteURLResponse(w http.ResponseWriter, payload []byte) error {
	var probe map[string]json.RawMessage
	if json.Unmarshal(payload, &probe) != nil || probe["statusCode"] == nil {
		if !json.Valid(payload) {
			return errors.New("the function's answer is not JSON")
		}
		// Inferred: the answer is the body.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(payload)
		return nil
	}
	var out events.LambdaFunctionURLResponse
	if err := json.Unmarshal(payload, &out); err != nil {
		return err
	}
	body := []byte(out.Body)
	if out.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(out.Body)
		if err != nil {
			return err
		}
		body = b
	}
	for k, v := range out.Headers {
		w.Header().Set(k, v)
	}
	for _, c := range out.Cookies {
		w.Header().Add("Set-Cookie", c)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(out.StatusCode)
	_, _ = w.Write(body)
	return nil
}

var _ Invoker = (*lambdalocal.Function)(nil)
