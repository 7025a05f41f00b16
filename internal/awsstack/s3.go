package awsstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Notifier receives versitygw's bucket notifications (its
// --event-webhook-url POSTs, shaped like events.S3Event) and sends each
// record that a QueueConfiguration matches to that queue as S3 would: one
// message per record, {"Records":[record]}, the event name without the
// "s3:" prefix versitygw adds. versitygw's start-up test event becomes the
// s3:TestEvent message S3 sends when a notification is configured.
type Notifier struct {
	Bucket string
	Rules  []Notification
	// QueueURL maps a queue ARN to its URL.
	QueueURL func(arn string) string
	SQS      *sqs.Client
	Log      io.Writer

	srv  *http.Server
	addr string
	mu   sync.Mutex
	sent int
}

// Start serves on a free loopback port; URL is the webhook.
func (n *Notifier) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.addr = ln.Addr().String()
	n.srv = &http.Server{Handler: n}
	go n.srv.Serve(ln)
	return nil
}

// URL is where versitygw posts.
func (n *Notifier) URL() string { return "http://" + n.addr + "/s3-events" }

// Close stops the server.
func (n *Notifier) Close() { _ = n.srv.Close() }

// Sent is the number of messages sent to queues.
func (n *Notifier) Sent() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent
}

func (n *Notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var raw struct {
		Event   string                       `json:"Event"`
		Records []map[string]json.RawMessage `json:"Records"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		http.Error(w, "not an S3 event notification: "+err.Error(), http.StatusBadRequest)
		return
	}
	if raw.Event == "s3:TestEvent" {
		test, _ := json.Marshal(map[string]string{"Service": "Amazon S3", "Event": "s3:TestEvent",
			"Time": time.Now().UTC().Format(time.RFC3339), "Bucket": n.Bucket, "RequestId": "LOCAL", "HostId": "local"})
		for _, rule := range n.Rules {
			if err := n.send(r.Context(), rule.QueueARN, test); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		return
	}
	for _, rec := range raw.Records {
		var name string
		_ = json.Unmarshal(rec["eventName"], &name)
		name = strings.TrimPrefix(name, "s3:")
		var s3 struct {
			Object struct {
				Key string `json:"key"`
			} `json:"object"`
		}
		_ = json.Unmarshal(rec["s3"], &s3)
		key, err := url.QueryUnescape(s3.Object.Key)
		if err != nil {
			key = s3.Object.Key
		}
		// versitygw sends an empty time here, which events.S3Event cannot
		// read; S3 sends the field only for restores.
		delete(rec, "glacierEventData")
		rec["eventName"], _ = json.Marshal(name)
		msg, _ := json.Marshal(map[string]any{"Records": []any{rec}})
		if n.Log != nil {
			fmt.Fprintf(n.Log, "notifier: %s %s\n", name, key)
		}
		for _, rule := range n.Rules {
			if !rule.Matches(name, key) {
				continue
			}
			if err := n.send(r.Context(), rule.QueueARN, msg); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
	}
}

// Matches reports whether an event (e.g. ObjectCreated:Put) on key matches
// the rule: S3's event types end in a "*" wildcard or name one event.
func (rule Notification) Matches(event, key string) bool {
	pattern := strings.TrimPrefix(rule.Event, "s3:")
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		if !strings.HasPrefix(event, p) {
			return false
		}
	} else if event != pattern {
		return false
	}
	return strings.HasPrefix(key, rule.Prefix) && strings.HasSuffix(key, rule.Suffix)
}

func (n *Notifier) send(ctx context.Context, arn string, body []byte) error {
	u := n.QueueURL(arn)
	if u == "" {
		return fmt.Errorf("no queue %s", arn)
	}
	_, err := n.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(string(body))})
	if err != nil {
		if n.Log != nil {
			fmt.Fprintf(n.Log, "notifier: send to %s: %v\n", arn, err)
		}
		return err
	}
	n.mu.Lock()
	n.sent++
	n.mu.Unlock()
	return nil
}

// S3Counter is a reverse proxy in front of versitygw that counts requests
// as S3 bills them: PUT, COPY, POST and LIST requests in one class, GET and
// all other reads in another.
type S3Counter struct {
	mu     sync.Mutex
	counts map[string]int64
	srv    *http.Server
	addr   string
}

// Request classes of S3Counter.
const (
	S3Put  = "PUT" // PUT, COPY, POST, LIST
	S3Get  = "GET" // GET, HEAD and others
	S3Free = "DELETE"
)

// StartS3Counter proxies to target on a free loopback port.
func StartS3Counter(target string, errlog io.Writer) (*S3Counter, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &S3Counter{counts: map[string]int64{}, addr: ln.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(u)
	// During an S3 outage the proxy answers 502, which the SDK retries as
	// it would a connection error.
	proxy.ErrorLog = log.New(errlog, "s3 proxy: ", 0)
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.count(r)
		proxy.ServeHTTP(w, r)
	})}
	go c.srv.Serve(ln)
	return c, nil
}

func (c *S3Counter) count(r *http.Request) {
	class := S3Get
	// Path style: /bucket or /bucket/key.
	hasKey := strings.Contains(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPut || r.Method == http.MethodPost:
		class = S3Put
	case r.Method == http.MethodDelete:
		class = S3Free
	case r.Method == http.MethodGet && !hasKey:
		class = S3Put // LIST
	}
	c.mu.Lock()
	c.counts[class]++
	c.mu.Unlock()
}

// Endpoint is the proxy's URL.
func (c *S3Counter) Endpoint() string { return "http://" + c.addr }

// Counts returns a copy of the counters.
func (c *S3Counter) Counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counters.
func (c *S3Counter) Reset() {
	c.mu.Lock()
	c.counts = map[string]int64{}
	c.mu.Unlock()
}

// Close stops the proxy.
func (c *S3Counter) Close() { _ = c.srv.Close() }
