package awsstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
)

// Invoker runs one invocation of a function.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (lambdalocal.Result, error)
}

// Poller is an SQS event source mapping, following Lambda's documented
// behaviour (Using Lambda with Amazon SQS): it long-polls the queue, gathers
// up to BatchSize messages for at most MaximumBatchingWindowInSeconds (or
// 6 MB of payload), invokes the function synchronously with an
// events.SQSEvent, and on success deletes the batch. With
// ReportBatchItemFailures the items the response names stay on the queue
// (they come back when their visibility timeout ends) and the others are
// deleted; a response naming an item not in the batch, or a function error,
// fails the whole batch: nothing is deleted.
type Poller struct {
	Spec     SQSEventSpec
	QueueURL string
	SQS      *sqs.Client
	Function Invoker
	Region   string
	// Invoked, when set, is told about every invocation.
	Invoked func(Invocation)
	Log     io.Writer

	stop chan struct{}
	wg   sync.WaitGroup
}

// Invocation is one batch's outcome.
type Invocation struct {
	Mapping string
	Records int
	Payload int
	Result  lambdalocal.Result
	Err     error
	Failed  int // items reported failed (all, on an error)
	Deleted int
	// Bodies are the records' bodies, for tests that follow a message.
	Bodies []string
}

// maxPayload is Lambda's limit on a synchronous invocation's payload.
const maxPayload = 6 << 20

// Start runs the poller until Stop.
func (p *Poller) Start(ctx context.Context) {
	p.stop = make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-p.stop
		cancel()
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for ctx.Err() == nil {
			if batch := p.gather(ctx); len(batch) > 0 {
				p.invoke(ctx, batch)
			}
		}
	}()
}

// Once polls as Start does until it has a batch, invokes the function
// once and returns the outcome: for tests that drive the mapping a batch
// at a time instead of running it.
func (p *Poller) Once(ctx context.Context) (Invocation, error) {
	for {
		if batch := p.gather(ctx); len(batch) > 0 {
			return p.invoke(ctx, batch), nil
		}
		if err := ctx.Err(); err != nil {
			return Invocation{}, err
		}
	}
}

// Stop ends the poller; a batch in flight is abandoned to its visibility
// timeout, as when Lambda scales a poller down.
func (p *Poller) Stop() {
	close(p.stop)
	p.wg.Wait()
}

func (p *Poller) gather(ctx context.Context) []sqstypes.Message {
	var (
		batch    []sqstypes.Message
		size     int
		deadline time.Time
	)
	for ctx.Err() == nil && len(batch) < p.Spec.BatchSize {
		wait := int32(20)
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			wait = int32((left + time.Second - 1) / time.Second)
		}
		n := min(p.Spec.BatchSize-len(batch), 10)
		rctx := ctx
		var cancel context.CancelFunc = func() {}
		if !deadline.IsZero() {
			rctx, cancel = context.WithDeadline(ctx, deadline)
		}
		out, err := p.SQS.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(p.QueueURL),
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             wait,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintf(p.log(), "poller %s: receive: %v\n", p.Spec.Name, err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			if len(batch) > 0 && !deadline.IsZero() && time.Now().After(deadline) {
				break
			}
			continue
		}
		for _, m := range out.Messages {
			batch = append(batch, m)
			size += len(aws.ToString(m.Body))
		}
		if len(batch) > 0 && deadline.IsZero() {
			if p.Spec.Window <= 0 {
				break
			}
			deadline = time.Now().Add(p.Spec.Window)
		}
		if size >= maxPayload*3/4 {
			break
		}
	}
	return batch
}

func (p *Poller) log() io.Writer {
	if p.Log == nil {
		return io.Discard
	}
	return p.Log
}

// Event builds the events.SQSEvent Lambda sends for messages.
func (p *Poller) Event(msgs []sqstypes.Message) events.SQSEvent {
	var ev events.SQSEvent
	for _, m := range msgs {
		rec := events.SQSMessage{
			MessageId:              aws.ToString(m.MessageId),
			ReceiptHandle:          aws.ToString(m.ReceiptHandle),
			Body:                   aws.ToString(m.Body),
			Md5OfBody:              aws.ToString(m.MD5OfBody),
			Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
			Attributes:             map[string]string{},
			MessageAttributes:      map[string]events.SQSMessageAttribute{},
			EventSourceARN:         p.Spec.QueueARN,
			EventSource:            "aws:sqs",
			AWSRegion:              p.Region,
		}
		for k, v := range m.Attributes {
			rec.Attributes[k] = v
		}
		for k, v := range m.MessageAttributes {
			rec.MessageAttributes[k] = events.SQSMessageAttribute{
				StringValue:      v.StringValue,
				BinaryValue:      v.BinaryValue,
				StringListValues: v.StringListValues,
				BinaryListValues: v.BinaryListValues,
				DataType:         aws.ToString(v.DataType),
			}
		}
		ev.Records = append(ev.Records, rec)
	}
	return ev
}

func (p *Poller) invoke(ctx context.Context, batch []sqstypes.Message) Invocation {
	payload, err := json.Marshal(p.Event(batch))
	if err != nil {
		panic(err) // the event is built from strings and maps
	}
	for _, m := range batch {
		fmt.Fprintf(p.log(), "poller %s: record %s receive %s\n", p.Spec.Name, aws.ToString(m.MessageId), m.Attributes["ApproximateReceiveCount"])
	}
	res, err := p.Function.Invoke(ctx, payload)
	inv := Invocation{Mapping: p.Spec.Name, Records: len(batch), Payload: len(payload), Result: res, Err: err}
	for _, m := range batch {
		inv.Bodies = append(inv.Bodies, aws.ToString(m.Body))
	}
	keep := map[string]bool{}
	if err == nil && p.Spec.ReportFailures {
		var resp events.SQSEventResponse
		if jerr := json.Unmarshal(res.Payload, &resp); jerr != nil && len(res.Payload) > 0 && string(res.Payload) != "null" {
			inv.Err = fmt.Errorf("response is not an SQSEventResponse: %v", jerr)
		}
		ids := map[string]bool{}
		for _, m := range batch {
			ids[aws.ToString(m.MessageId)] = true
		}
		for _, f := range resp.BatchItemFailures {
			if !ids[f.ItemIdentifier] {
				// Lambda treats an unknown or empty identifier as a
				// failure of the whole batch.
				inv.Err = fmt.Errorf("batchItemFailures names %q, not in the batch", f.ItemIdentifier)
				break
			}
			keep[f.ItemIdentifier] = true
		}
	}
	if inv.Err != nil {
		inv.Failed = len(batch)
		fmt.Fprintf(p.log(), "poller %s: batch of %d failed: %v\n", p.Spec.Name, len(batch), inv.Err)
	} else {
		inv.Failed = len(keep)
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range batch {
			if keep[aws.ToString(m.MessageId)] {
				continue
			}
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(entries) > 0 {
			// Deleting is the poller's own business: it must not be cut
			// short by the poller stopping.
			out, derr := p.SQS.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.QueueURL), Entries: entries})
			switch {
			case derr != nil:
				fmt.Fprintf(p.log(), "poller %s: delete: %v\n", p.Spec.Name, derr)
			default:
				inv.Deleted = len(out.Successful)
				for _, f := range out.Failed {
					fmt.Fprintf(p.log(), "poller %s: delete %s: %s\n", p.Spec.Name, aws.ToString(f.Id), aws.ToString(f.Message))
				}
			}
		}
	}
	if p.Invoked != nil {
		p.Invoked(inv)
	}
	return inv
}
