// Package sqslocal is a local stand-in for Amazon SQS standard queues, for
// tests and the local stack harness (issue 11). It speaks the SQS JSON
// protocol (AWS JSON 1.0: POST /, X-Amz-Target: AmazonSQS.<Action>,
// Content-Type: application/x-amz-json-1.0, errors as {"__type", "message"}
// plus the x-amzn-query-error header), so the unmodified aws-sdk-go-v2 SQS
// client talks to it through a custom BaseEndpoint or AWS_ENDPOINT_URL_SQS.
// It exists because no emulator speaking the JSON protocol can run here
// (goaws v0.4.5 speaks only the older Query protocol).
//
// It is a stand-in, not an emulator: it models what letterbox depends on and
// enforces SQS's documented limits on it with the real error codes
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/,
// its CommonErrors page, and the Developer Guide's "Amazon SQS message
// quotas"). Sizes are the current ones: SQS raised the message size to 1 MiB
// in 2025 (AWS Compute Blog, "More room to build: serverless services now
// support payloads up to 1 MB"; the CreateQueue reference gives
// MaximumMessageSize 1,024 to 1,048,576 bytes, default 1,048,576).
//
// Limits enforced:
//
//   - at most 10 entries per batch (TooManyEntriesInBatchRequest), at least
//     one (EmptyBatchRequest), distinct entry ids (BatchEntryIdsNotDistinct)
//     of 1-80 alphanumerics, '-' and '_' (InvalidBatchEntryId);
//   - message size (body plus message attributes: name, type and value) at
//     most the queue's MaximumMessageSize, 1 KiB to 1 MiB, default 1 MiB
//     (InvalidParameterValue); the sum of a SendMessageBatch's messages at
//     most 1 MiB (BatchRequestTooLong);
//   - body characters #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
//     #x10000-#x10FFFF (InvalidMessageContents); at most 10 message
//     attributes;
//   - visibility timeout 0-43200 s, and at most 12 hours of invisibility from
//     the receive: ChangeMessageVisibility past that fails
//     (InvalidParameterValue);
//   - a new receipt handle on every receive; DeleteMessage with an older one
//     succeeds without deleting (as the DeleteMessage reference says), and
//     ChangeMessageVisibility with it, or with the handle of a deleted
//     message, fails (InvalidParameterValue, "Message does not exist or is
//     not available for visibility timeout change"); ChangeMessageVisibility
//     with the latest handle after its timeout ran out succeeds and changes
//     nothing, as AWS does (localstack/localstack#9632); a handle this server
//     never issued is ReceiptHandleIsInvalid;
//   - MessageRetentionPeriod: a message older than it is deleted silently,
//     counted from its SentTimestamp also in a dead-letter queue ("For
//     standard queues, the expiration of a message is always based on its
//     original enqueue timestamp", Developer Guide, "Setting-up dead-letter
//     queue retention");
//   - RedrivePolicy: a receive that would make a message's receive count
//     exceed maxReceiveCount moves it to the dead-letter queue instead,
//     keeping its SentTimestamp;
//   - ReceiveMessage: MaxNumberOfMessages 1-10, WaitTimeSeconds 0-20 (a real
//     long poll that returns as soon as a message is receivable), the
//     VisibilityTimeout override, system attributes ApproximateReceiveCount,
//     ApproximateFirstReceiveTimestamp, SentTimestamp, SenderId, and message
//     attributes by name, prefix.* or All;
//   - MD5OfMessageBody and MD5OfMessageAttributes as SQS computes them.
//
// In a SendMessageBatch, a message with bad contents or over the queue's
// MaximumMessageSize fails its entry only (Failed, SenderFault true); the
// limits on the batch as a whole fail the request.
//
// A queue is configured with the CreateQueue attributes, by the SDK or from
// Go (CreateQueue): the template's AWS::SQS::Queue properties of the same
// names, numbers as decimal strings, RedrivePolicy as the JSON of the
// template's object with deadLetterTargetArn resolved to QueueARN(name) of
// a queue created before.
//
// It does not model: FIFO queues, DeleteQueue, SetQueueAttributes, ListQueues,
// tags, message system attributes (AWSTraceHeader is ignored),
// permissions and IAM, encryption (the attributes are accepted and ignored),
// the 60-second PurgeQueue limit, the in-flight message limit, throttling,
// short polling's sampling of a subset of servers (every receivable message is
// a candidate), duplicate deliveries, request signatures (any credentials are
// accepted).
//
// Time follows a Clock (Options.Clock): RealClock, a ScaledClock that runs
// faster than the wall clock, or a FakeClock that a test advances, so that a
// retry window of more than a day can be checked without waiting a day. Long
// polls wait on the same clock: under a FakeClock a poll with nothing to
// receive returns once the clock is advanced past its wait time (or the
// client gives up).
//
// The server counts requests for cost: Usage reports, per action and queue,
// the requests and the 64 KiB chunks SQS bills them as (each 64 KiB of a
// request's message payload is billed as one request; see Amazon SQS
// pricing).
//
// API (kept stable for the stack harness):
//
//	s := sqslocal.New(sqslocal.Options{Clock: clk})
//	err := s.Start("127.0.0.1:0")      // s.URL() is the endpoint
//	arn, err := s.CreateQueue(name, attrs) // the CreateQueue attributes, e.g. from template.yaml
//	s.QueueURL(name); s.QueueARN(name)
//	s.Usage()                          // map[UsageKey]Usage
//	s.Stats(name)                      // QueueStats: expired, dead-lettered, deleted...
//	sqs.Options{HTTPClient: sqslocal.HTTPClient()} // for pollers that must not lose a receive
//	s.Close()
//
// Server is also an http.Handler, for use under httptest.
package sqslocal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const contentType = "application/x-amz-json-1.0"

// Options configures a Server. The zero value is usable.
type Options struct {
	// Region and AccountID make the queue ARNs
	// arn:aws:sqs:REGION:ACCOUNT:NAME. Defaults: us-east-1, 000000000000.
	Region    string
	AccountID string
	// Clock is the server's time. Default: RealClock.
	Clock Clock
	// Logger receives a line per message moved to a dead-letter queue or
	// expired. Default: discard.
	Logger *slog.Logger
}

// Server is an SQS stand-in. All its state is in memory behind one mutex.
type Server struct {
	region, account string
	clock           Clock
	log             *slog.Logger

	mu     sync.Mutex
	queues map[string]*queue
	usage  map[UsageKey]*Usage

	url string
	hs  *http.Server
}

// UsageKey names a counter: an action on a queue (Queue is "" when the
// request named no queue that exists, e.g. a GetQueueUrl for a missing one).
type UsageKey struct {
	Action string
	Queue  string
}

// Usage is what requests cost.
type Usage struct {
	// Requests is the number of requests, failed ones included.
	Requests int64
	// Chunks is the number of billed requests: each request counts
	// ceil(payload/64 KiB) and at least 1, where payload is the size of the
	// messages it sends or receives (body plus attributes).
	Chunks int64
}

// ChunkSize is SQS's billing unit: every 64 KiB of a payload is one request.
const ChunkSize = 64 << 10

type queue struct {
	name, arn string
	cfg       queueConfig
	created   time.Time
	modified  time.Time
	msgs      []*message // in order of arrival
	byID      map[string]*message
	// notify is closed and replaced when a message may have become
	// receivable, waking long polls.
	notify  chan struct{}
	waiters int
	stats   QueueStats // the counters; the gauges are computed
}

// QueueStats is what happened to a queue's messages, for the harness to
// account for every message (SQS deletes expired messages silently; the
// stand-in counts them).
type QueueStats struct {
	// Visible, InFlight and Delayed are the messages now receivable,
	// received and invisible, and not yet receivable after their delay.
	Visible, InFlight, Delayed int
	// Sent counts messages sent to the queue; MovedIn those moved in as its
	// dead-letter queue.
	Sent, MovedIn int64
	// Deleted (by DeleteMessage), Expired (past the retention period),
	// MovedOut (to the dead-letter queue) and Purged count the messages that
	// left it.
	Deleted, Expired, MovedOut, Purged int64
}

// New returns a server with no queues.
func New(o Options) *Server {
	s := &Server{
		region: o.Region, account: o.AccountID, clock: o.Clock, log: o.Logger,
		queues: map[string]*queue{}, usage: map[UsageKey]*Usage{},
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	if s.account == "" {
		s.account = "000000000000"
	}
	if s.clock == nil {
		s.clock = RealClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until Close.
func (s *Server) Start(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sqslocal: %w", err)
	}
	s.mu.Lock()
	s.url = "http://" + l.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Unlock()
	go s.hs.Serve(l)
	return nil
}

// URL is the endpoint once Start has returned, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops the listener and ends open connections, long polls included.
func (s *Server) Close() error {
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Close()
}

// CreateQueue creates a queue with the CreateQueue attributes (names and
// values as the API takes them: VisibilityTimeout, MessageRetentionPeriod,
// MaximumMessageSize, DelaySeconds, ReceiveMessageWaitTimeSeconds,
// RedrivePolicy as JSON naming the dead-letter queue's ARN, which must exist)
// and returns its ARN. Creating an existing queue with the same attributes is
// not an error, as in SQS; with different ones it is.
func (s *Server) CreateQueue(name string, attrs map[string]string) (arn string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.createQueueLocked(name, attrs)
	if e != nil {
		return "", e
	}
	return q.arn, nil
}

// QueueURL is the URL of the named queue under URL(): URL()/ACCOUNT/NAME.
func (s *Server) QueueURL(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url + "/" + s.account + "/" + name
}

// QueueARN is arn:aws:sqs:REGION:ACCOUNT:NAME, whether or not it exists.
func (s *Server) QueueARN(name string) string {
	return "arn:aws:sqs:" + s.region + ":" + s.account + ":" + name
}

// Usage returns a copy of the counters.
func (s *Server) Usage() map[UsageKey]Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[UsageKey]Usage, len(s.usage))
	for k, v := range s.usage {
		out[k] = *v
	}
	return out
}

// ResetUsage zeroes the counters.
func (s *Server) ResetUsage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage = map[UsageKey]*Usage{}
}

func (s *Server) createQueueLocked(name string, attrs map[string]string) (*queue, *apiError) {
	if !queueNameRE.MatchString(name) {
		return nil, errInvalidParameterValue("Value %s for parameter QueueName is invalid. Reason: Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.", name)
	}
	cfg, e := parseConfig(defaultConfig(), attrs, func(arn string) bool { return s.queueByARNLocked(arn) != nil })
	if e != nil {
		return nil, e
	}
	if q, ok := s.queues[name]; ok {
		if !q.cfg.equal(cfg) {
			return nil, errQueueNameExists(name)
		}
		return q, nil
	}
	now := s.clock.Now()
	q := &queue{
		name: name, arn: s.QueueARN(name), cfg: cfg, created: now, modified: now,
		byID: map[string]*message{}, notify: make(chan struct{}),
	}
	s.queues[name] = q
	return q, nil
}

func (s *Server) queueByARNLocked(arn string) *queue {
	for _, q := range s.queues {
		if q.arn == arn {
			return q
		}
	}
	return nil
}

// queueFromURL finds the queue a QueueUrl names by its last path segment, so
// that a URL under any host name that reaches the server works.
func (s *Server) queueFromURLLocked(u string) *queue {
	if u == "" {
		return nil
	}
	return s.queues[u[strings.LastIndex(u, "/")+1:]]
}

func (s *Server) count(action, queue string, payload int) {
	k := UsageKey{action, queue}
	u := s.usage[k]
	if u == nil {
		u = &Usage{}
		s.usage[k] = u
	}
	u.Requests++
	c := int64((payload + ChunkSize - 1) / ChunkSize)
	if c < 1 {
		c = 1
	}
	u.Chunks += c
}

// maxRequestBody bounds what is read of a request: ten entries of 1 MiB with
// JSON escaping and base64 attributes, so that a too-large batch gets its
// BatchRequestTooLong rather than a cut connection.
const maxRequestBody = 64 << 20

// ServeHTTP serves the SQS JSON protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	action, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, errUnknownOperation(target))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return
	}
	if len(body) > maxRequestBody {
		writeError(w, errMalformed(errors.New("request body too large")))
		return
	}
	var out any
	var e *apiError
	switch action {
	case "CreateQueue":
		out, e = s.createQueue(r, body)
	case "GetQueueUrl":
		out, e = s.getQueueURL(r, body)
	case "GetQueueAttributes":
		out, e = s.getQueueAttributes(body)
	case "SendMessage":
		out, e = s.sendMessage(body)
	case "SendMessageBatch":
		out, e = s.sendMessageBatch(body)
	case "ReceiveMessage":
		out, e = s.receiveMessage(r.Context(), body)
	case "DeleteMessage":
		out, e = s.deleteMessage(body)
	case "DeleteMessageBatch":
		out, e = s.deleteMessageBatch(body)
	case "ChangeMessageVisibility":
		out, e = s.changeMessageVisibility(body)
	case "ChangeMessageVisibilityBatch":
		out, e = s.changeMessageVisibilityBatch(body)
	case "PurgeQueue":
		out, e = s.purgeQueue(body)
	default:
		e = errUnknownOperation(target)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err) // the replies are plain structs and maps of strings
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("x-amzn-RequestId", newID())
	w.Write(b)
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return errMalformed(err)
	}
	return nil
}

// newID is a random UUID (version 4), the shape of SQS message ids.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Receipt handles are base64url("<message id>:<random>"): a new one on every
// receive, and one this server never issued is recognised as invalid.
func newReceipt(id string) string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString([]byte(id + ":" + hex.EncodeToString(b[:])))
}

func receiptMessageID(h string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", false
	}
	id, rnd, ok := strings.Cut(string(b), ":")
	if !ok || len(id) != 36 || len(rnd) != 32 {
		return "", false
	}
	return id, true
}

func (s *Server) baseURL(r *http.Request) string {
	if s.url != "" {
		return s.url
	}
	return "http://" + r.Host
}

func (s *Server) urlOf(r *http.Request, q *queue) string {
	return s.baseURL(r) + "/" + s.account + "/" + q.name
}

// ---- queues ----

func (s *Server) createQueue(r *http.Request, body []byte) (any, *apiError) {
	var in struct {
		QueueName  string
		Attributes map[string]string
		Tags       map[string]string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("CreateQueue", in.QueueName, 0)
	if in.QueueName == "" {
		return nil, errMissingParameter("QueueName")
	}
	q, e := s.createQueueLocked(in.QueueName, in.Attributes)
	if e != nil {
		return nil, e
	}
	return map[string]string{"QueueUrl": s.urlOf(r, q)}, nil
}

func (s *Server) getQueueURL(r *http.Request, body []byte) (any, *apiError) {
	var in struct{ QueueName string }
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[in.QueueName]
	if q == nil {
		s.count("GetQueueUrl", "", 0)
		return nil, errQueueDoesNotExist()
	}
	s.count("GetQueueUrl", q.name, 0)
	return map[string]string{"QueueUrl": s.urlOf(r, q)}, nil
}

// lookup finds the queue of a request and counts the request against it.
// The caller holds s.mu.
func (s *Server) lookupLocked(action, url string, payload int) (*queue, *apiError) {
	if url == "" {
		s.count(action, "", payload)
		return nil, errMissingParameter("QueueUrl")
	}
	q := s.queueFromURLLocked(url)
	if q == nil {
		s.count(action, "", payload)
		return nil, errQueueDoesNotExist()
	}
	s.count(action, q.name, payload)
	return q, nil
}

var queueAttributeNames = []string{
	"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
	"ApproximateNumberOfMessagesDelayed", "QueueArn", "CreatedTimestamp",
	"LastModifiedTimestamp", "VisibilityTimeout", "MessageRetentionPeriod",
	"MaximumMessageSize", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
	"RedrivePolicy",
}

func (s *Server) getQueueAttributes(body []byte) (any, *apiError) {
	var in struct {
		QueueUrl       string
		AttributeNames []string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked("GetQueueAttributes", in.QueueUrl, 0)
	if e != nil {
		return nil, e
	}
	now := s.clock.Now()
	s.expireLocked(q, now)
	all := q.cfg.attributes()
	st := q.statsLocked(now)
	all["ApproximateNumberOfMessages"] = strconv.Itoa(st.Visible)
	all["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(st.InFlight)
	all["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(st.Delayed)
	all["QueueArn"] = q.arn
	all["CreatedTimestamp"] = strconv.FormatInt(q.created.Unix(), 10)
	all["LastModifiedTimestamp"] = strconv.FormatInt(q.modified.Unix(), 10)
	out := map[string]string{}
	for _, n := range in.AttributeNames {
		if n == "All" {
			out = all
			break
		}
		if !contains(queueAttributeNames, n) {
			return nil, errInvalidAttributeName(n)
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	return map[string]any{"Attributes": out}, nil
}

// statsLocked is the counters and the gauges at now, after expiry.
func (q *queue) statsLocked(now time.Time) QueueStats {
	st := q.stats
	for _, m := range q.msgs {
		switch {
		case !m.visibleAt.After(now):
			st.Visible++
		case m.receipt != "":
			st.InFlight++
		default:
			st.Delayed++
		}
	}
	return st
}

// Stats reports on the named queue at the clock's current time, expiring
// what is past the retention period first; ok is false if there is no such
// queue.
func (s *Server) Stats(name string) (st QueueStats, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[name]
	if q == nil {
		return QueueStats{}, false
	}
	now := s.clock.Now()
	s.expireLocked(q, now)
	return q.statsLocked(now), true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (s *Server) purgeQueue(body []byte) (any, *apiError) {
	var in struct{ QueueUrl string }
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked("PurgeQueue", in.QueueUrl, 0)
	if e != nil {
		return nil, e
	}
	q.stats.Purged += int64(len(q.msgs))
	q.msgs = nil
	q.byID = map[string]*message{}
	return struct{}{}, nil
}

// expireLocked deletes, silently as SQS does, the messages older than the
// queue's retention period.
func (s *Server) expireLocked(q *queue, now time.Time) {
	limit := time.Duration(q.cfg.MessageRetentionPeriod) * time.Second
	keep := q.msgs[:0]
	for _, m := range q.msgs {
		if now.Sub(m.sent) >= limit {
			delete(q.byID, m.id)
			q.stats.Expired++
			s.log.Info("sqslocal: message expired", "queue", q.name, "message_id", m.id, "age", now.Sub(m.sent))
			continue
		}
		keep = append(keep, m)
	}
	clear(q.msgs[len(keep):])
	q.msgs = keep
}

func (q *queue) wake() {
	close(q.notify)
	q.notify = make(chan struct{})
}

// ---- send ----

type sendEntry struct {
	Id                string
	MessageBody       *string
	DelaySeconds      *int64
	MessageAttributes map[string]attrValue
}

type sendResult struct {
	Id                     string `json:",omitempty"`
	MessageId              string
	MD5OfMessageBody       string
	MD5OfMessageAttributes string `json:",omitempty"`
}

// newMessage validates an entry against the queue and builds the message.
func newMessage(q *queue, in sendEntry, now time.Time) (*message, *apiError) {
	if in.MessageBody == nil {
		return nil, errMissingParameter("MessageBody")
	}
	body := *in.MessageBody
	if body == "" {
		return nil, errInvalidParameterValue("The request must contain a MessageBody of at least one character.")
	}
	if !validBody(body) {
		return nil, errInvalidMessageContents()
	}
	delay := q.cfg.DelaySeconds
	if in.DelaySeconds != nil {
		if *in.DelaySeconds < 0 || *in.DelaySeconds > 900 {
			return nil, errInvalidParameterValue("Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", *in.DelaySeconds)
		}
		delay = int(*in.DelaySeconds)
	}
	asize, e := checkAttributes(in.MessageAttributes)
	if e != nil {
		return nil, e
	}
	size := len(body) + asize
	if size > q.cfg.MaximumMessageSize {
		return nil, errInvalidParameterValue("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.cfg.MaximumMessageSize)
	}
	m := &message{
		id: newID(), body: body, md5Body: md5Hex([]byte(body)),
		attrs: in.MessageAttributes, md5Attrs: md5OfAttributes(in.MessageAttributes),
		size: size, sent: now, visibleAt: now.Add(time.Duration(delay) * time.Second),
	}
	return m, nil
}

func (q *queue) add(m *message) {
	q.msgs = append(q.msgs, m)
	q.byID[m.id] = m
}

func entrySize(in sendEntry) int {
	n := 0
	if in.MessageBody != nil {
		n = len(*in.MessageBody)
	}
	for name, v := range in.MessageAttributes {
		n += len(name) + len(v.DataType) + len(v.BinaryValue)
		if v.StringValue != nil {
			n += len(*v.StringValue)
		}
	}
	return n
}

func (s *Server) sendMessage(body []byte) (any, *apiError) {
	var in struct {
		QueueUrl string
		sendEntry
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked("SendMessage", in.QueueUrl, entrySize(in.sendEntry))
	if e != nil {
		return nil, e
	}
	m, e := newMessage(q, in.sendEntry, s.clock.Now())
	if e != nil {
		return nil, e
	}
	q.add(m)
	q.stats.Sent++
	q.wake()
	return sendResult{MessageId: m.id, MD5OfMessageBody: m.md5Body, MD5OfMessageAttributes: m.md5Attrs}, nil
}

var batchIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// checkBatch enforces the limits common to the batch actions.
func checkBatch(ids []string) *apiError {
	if len(ids) == 0 {
		return errEmptyBatch()
	}
	if len(ids) > MaxBatchEntries {
		return errTooManyEntries(len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !batchIDRE.MatchString(id) {
			return errInvalidBatchEntryID(id)
		}
		if seen[id] {
			return errIDsNotDistinct(id)
		}
		seen[id] = true
	}
	return nil
}

type batchError struct {
	Id          string
	Code        string
	Message     string
	SenderFault bool
}

func failed(id string, e *apiError) batchError {
	return batchError{Id: id, Code: e.code, Message: e.msg, SenderFault: true}
}

// batchEntry is an entry of a batch action, which names it by its Id.
type batchEntry interface{ entryID() string }

// batch is what the batch actions share: it decodes the request's
// QueueUrl and Entries, looks the queue up (counting the entries' summed
// size, by size if not nil, against it), checks the entry ids
// (checkBatch), then under s.mu calls start once if not nil (its error
// refuses the whole batch) and each for every entry (its error fails that
// entry only), and answers the successes and the failures.
func batch[E batchEntry, R any](s *Server, action string, body []byte, size func(E) int,
	start func(q *queue, total int) *apiError, each func(q *queue, en E) (R, *apiError)) (any, *apiError) {
	var in struct {
		QueueUrl string
		Entries  []E
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	total := 0
	ids := make([]string, len(in.Entries))
	for i, en := range in.Entries {
		if size != nil {
			total += size(en)
		}
		ids[i] = en.entryID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked(action, in.QueueUrl, total)
	if e != nil {
		return nil, e
	}
	if e := checkBatch(ids); e != nil {
		return nil, e
	}
	if start != nil {
		if e := start(q, total); e != nil {
			return nil, e
		}
	}
	ok, bad := []R{}, []batchError{}
	for _, en := range in.Entries {
		r, e := each(q, en)
		if e != nil {
			bad = append(bad, failed(en.entryID(), e))
			continue
		}
		ok = append(ok, r)
	}
	return map[string]any{"Successful": ok, "Failed": bad}, nil
}

func (en sendEntry) entryID() string { return en.Id }

func (s *Server) sendMessageBatch(body []byte) (any, *apiError) {
	var now time.Time
	return batch(s, "SendMessageBatch", body, entrySize,
		func(q *queue, total int) *apiError {
			if total > MaxMessageSize {
				return errBatchTooLong(total)
			}
			now = s.clock.Now()
			return nil
		},
		func(q *queue, en sendEntry) (sendResult, *apiError) {
			m, e := newMessage(q, en, now)
			if e != nil {
				return sendResult{}, e
			}
			q.add(m)
			q.stats.Sent++
			q.wake()
			return sendResult{Id: en.Id, MessageId: m.id, MD5OfMessageBody: m.md5Body, MD5OfMessageAttributes: m.md5Attrs}, nil
		})
}

// ---- receive ----

type receivedMessage struct {
	MessageId              string
	ReceiptHandle          string
	MD5OfBody              string
	Body                   string
	Attributes             map[string]string    `json:",omitempty"`
	MD5OfMessageAttributes string               `json:",omitempty"`
	MessageAttributes      map[string]attrValue `json:",omitempty"`
}

func (s *Server) receiveMessage(ctx context.Context, body []byte) (any, *apiError) {
	var in struct {
		QueueUrl                    string
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
		MaxNumberOfMessages         *int64
		VisibilityTimeout           *int64
		WaitTimeSeconds             *int64
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	q := s.queueFromURLLocked(in.QueueUrl)
	if q == nil {
		_, e := s.lookupLocked("ReceiveMessage", in.QueueUrl, 0)
		s.mu.Unlock()
		return nil, e
	}
	cfg := q.cfg
	s.mu.Unlock()

	max := 1
	if in.MaxNumberOfMessages != nil {
		if *in.MaxNumberOfMessages < 1 || *in.MaxNumberOfMessages > 10 {
			s.countLocking("ReceiveMessage", q.name, 0)
			return nil, errInvalidParameterValue("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", *in.MaxNumberOfMessages)
		}
		max = int(*in.MaxNumberOfMessages)
	}
	vis := cfg.VisibilityTimeout
	if in.VisibilityTimeout != nil {
		if *in.VisibilityTimeout < 0 || *in.VisibilityTimeout > MaxVisibilityTimeout {
			s.countLocking("ReceiveMessage", q.name, 0)
			return nil, errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided.", *in.VisibilityTimeout)
		}
		vis = int(*in.VisibilityTimeout)
	}
	wait := cfg.ReceiveMessageWaitTimeSeconds
	if in.WaitTimeSeconds != nil {
		if *in.WaitTimeSeconds < 0 || *in.WaitTimeSeconds > 20 {
			s.countLocking("ReceiveMessage", q.name, 0)
			return nil, errInvalidParameterValue("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *in.WaitTimeSeconds)
		}
		wait = int(*in.WaitTimeSeconds)
	}
	sysAttrs := append(in.AttributeNames, in.MessageSystemAttributeNames...)
	deadline := s.clock.Now().Add(time.Duration(wait) * time.Second)

	for {
		s.mu.Lock()
		now := s.clock.Now()
		got, next := s.takeLocked(q, now, max, time.Duration(vis)*time.Second)
		if len(got) > 0 || !now.Before(deadline) || ctx.Err() != nil {
			out := make([]receivedMessage, 0, len(got))
			payload := 0
			for _, m := range got {
				out = append(out, render(m, sysAttrs, in.MessageAttributeNames, s.account))
				payload += m.size
			}
			s.count("ReceiveMessage", q.name, payload)
			s.mu.Unlock()
			return map[string]any{"Messages": out}, nil
		}
		ch := q.notify
		q.waiters++
		s.mu.Unlock()

		wake := deadline
		if !next.IsZero() && next.Before(wake) {
			wake = next
		}
		tc, stop := s.clock.Timer(wake.Sub(now))
		select {
		case <-ch:
		case <-tc:
		case <-ctx.Done():
		}
		stop()
		s.mu.Lock()
		q.waiters--
		s.mu.Unlock()
	}
}

func (s *Server) countLocking(action, queue string, payload int) {
	s.mu.Lock()
	s.count(action, queue, payload)
	s.mu.Unlock()
}

// takeLocked receives up to max messages receivable at now, moving those
// past their queue's maxReceiveCount to the dead-letter queue. It returns
// them, and the earliest time a message not yet receivable becomes so (zero if
// none).
func (s *Server) takeLocked(q *queue, now time.Time, max int, vis time.Duration) (got []*message, next time.Time) {
	s.expireLocked(q, now)
	var moved []*message
	for _, m := range q.msgs {
		if m.visibleAt.After(now) {
			if next.IsZero() || m.visibleAt.Before(next) {
				next = m.visibleAt
			}
			continue
		}
		if len(got) == max {
			continue
		}
		if rp := q.cfg.Redrive; rp != nil && m.receiveCount >= rp.MaxReceiveCount {
			if dlq := s.queueByARNLocked(rp.DeadLetterTargetArn); dlq != nil {
				moved = append(moved, m)
				continue
			}
		}
		m.receiveCount++
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		m.lastReceive = now
		m.receipt = newReceipt(m.id)
		m.visibleAt = now.Add(vis)
		got = append(got, m)
	}
	if len(moved) > 0 {
		dlq := s.queueByARNLocked(q.cfg.Redrive.DeadLetterTargetArn)
		for _, m := range moved {
			q.remove(m)
			q.stats.MovedOut++
			dlq.stats.MovedIn++
			// The message keeps its id, SentTimestamp (so retention still
			// counts from the original send) and receive count.
			m.receipt = ""
			m.visibleAt = now
			dlq.add(m)
			s.log.Info("sqslocal: message moved to dead-letter queue", "queue", q.name, "dead_letter_queue", dlq.name, "message_id", m.id, "receive_count", m.receiveCount)
		}
		dlq.wake()
	}
	return got, next
}

func (q *queue) remove(m *message) {
	delete(q.byID, m.id)
	for i, x := range q.msgs {
		if x == m {
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
			return
		}
	}
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func render(m *message, sysAttrs, msgAttrs []string, account string) receivedMessage {
	r := receivedMessage{MessageId: m.id, ReceiptHandle: m.receipt, MD5OfBody: m.md5Body, Body: m.body}
	all := map[string]string{
		"ApproximateReceiveCount":          strconv.Itoa(m.receiveCount),
		"ApproximateFirstReceiveTimestamp": millis(m.firstReceive),
		"SentTimestamp":                    millis(m.sent),
		"SenderId":                         account,
	}
	for _, n := range sysAttrs {
		if n == "All" {
			r.Attributes = all
			break
		}
		if v, ok := all[n]; ok {
			if r.Attributes == nil {
				r.Attributes = map[string]string{}
			}
			r.Attributes[n] = v
		}
	}
	if sel := selectAttributes(m.attrs, msgAttrs); sel != nil {
		r.MessageAttributes = sel
		r.MD5OfMessageAttributes = md5OfAttributes(sel)
	}
	return r
}

// ---- delete and visibility ----

// byReceipt finds the message a receipt handle names. current is false when
// the message is gone or has been received again since.
func (q *queue) byReceipt(h string) (m *message, current bool, e *apiError) {
	id, ok := receiptMessageID(h)
	if !ok {
		return nil, false, errReceiptHandleIsInvalid(h)
	}
	m = q.byID[id]
	return m, m != nil && m.receipt == h, nil
}

func (s *Server) deleteLocked(q *queue, h string) *apiError {
	if h == "" {
		return errMissingParameter("ReceiptHandle")
	}
	m, current, e := q.byReceipt(h)
	if e != nil {
		return e
	}
	// An older handle succeeds without deleting (DeleteMessage reference).
	if current {
		q.remove(m)
		q.stats.Deleted++
	}
	return nil
}

func (s *Server) deleteMessage(body []byte) (any, *apiError) {
	var in struct{ QueueUrl, ReceiptHandle string }
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked("DeleteMessage", in.QueueUrl, 0)
	if e != nil {
		return nil, e
	}
	if e := s.deleteLocked(q, in.ReceiptHandle); e != nil {
		return nil, e
	}
	return struct{}{}, nil
}

type idResult struct{ Id string }

type deleteEntry struct{ Id, ReceiptHandle string }

func (en deleteEntry) entryID() string { return en.Id }

func (s *Server) deleteMessageBatch(body []byte) (any, *apiError) {
	return batch(s, "DeleteMessageBatch", body, nil, nil,
		func(q *queue, en deleteEntry) (idResult, *apiError) {
			return idResult{en.Id}, s.deleteLocked(q, en.ReceiptHandle)
		})
}

func (s *Server) changeVisibilityLocked(q *queue, h string, vt *int64) *apiError {
	if h == "" {
		return errMissingParameter("ReceiptHandle")
	}
	if vt == nil {
		return errMissingParameter("VisibilityTimeout")
	}
	if *vt < 0 || *vt > MaxVisibilityTimeout {
		return errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: VisibilityTimeout must be an integer between 0 and 43200.", *vt)
	}
	m, current, e := q.byReceipt(h)
	if e != nil {
		return e
	}
	if !current {
		return errInvalidParameterValue("Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", h)
	}
	now := s.clock.Now()
	if !m.visibleAt.After(now) {
		// The handle's visibility timeout has run out and the message has not
		// been received since: SQS answers OK and leaves the message visible
		// (checked against AWS in localstack/localstack#9632).
		return nil
	}
	d := time.Duration(*vt) * time.Second
	if now.Sub(m.lastReceive)+d > MaxVisibilityTimeout*time.Second {
		return errInvalidParameterValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", *vt)
	}
	m.visibleAt = now.Add(d)
	if d == 0 {
		q.wake()
	}
	return nil
}

func (s *Server) changeMessageVisibility(body []byte) (any, *apiError) {
	var in struct {
		QueueUrl, ReceiptHandle string
		VisibilityTimeout       *int64
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.lookupLocked("ChangeMessageVisibility", in.QueueUrl, 0)
	if e != nil {
		return nil, e
	}
	s.expireLocked(q, s.clock.Now())
	if e := s.changeVisibilityLocked(q, in.ReceiptHandle, in.VisibilityTimeout); e != nil {
		return nil, e
	}
	return struct{}{}, nil
}

type visibilityEntry struct {
	Id, ReceiptHandle string
	VisibilityTimeout *int64
}

func (en visibilityEntry) entryID() string { return en.Id }

func (s *Server) changeMessageVisibilityBatch(body []byte) (any, *apiError) {
	return batch(s, "ChangeMessageVisibilityBatch", body, nil,
		func(q *queue, _ int) *apiError {
			s.expireLocked(q, s.clock.Now())
			return nil
		},
		func(q *queue, en visibilityEntry) (idResult, *apiError) {
			return idResult{en.Id}, s.changeVisibilityLocked(q, en.ReceiptHandle, en.VisibilityTimeout)
		})
}

// Queues lists the queue names, sorted.
func (s *Server) Queues() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.queues))
	for n := range s.queues {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
