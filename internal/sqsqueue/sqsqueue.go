// Package sqsqueue is the delivery queue on Amazon SQS: the thin adapter
// between delivery.Queue and the SQS API (SendMessageBatch,
// ChangeMessageVisibility, SendMessage to the dead-letter queue).
//
// SQS cannot run on a developer machine, so this seam is kept as small as
// possible and tested against an HTTP server that checks the requests the
// real SDK sends; everything above it runs on localqueue in tests.
package sqsqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// API is the part of the SQS client the queue uses.
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Queue is a delivery.Queue on SQS.
type Queue struct {
	API API
	// URL is the delivery queue; DeadLetterURL its dead-letter queue.
	URL, DeadLetterURL string
}

var _ delivery.Queue = (*Queue)(nil)

// Send enqueues jobs with SendMessageBatch, in batches that keep SQS's two
// limits: at most ten entries, and at most delivery.MaxQueueMessage bytes
// of message bodies in all ("the sum of the individual lengths of all of
// the batched messages", SQS API Reference, SendMessageBatch). A job alone
// over the limit is refused as permanent: ingest moves the parsed message
// out of jobs that would not fit, so it is a bug.
func (q *Queue) Send(ctx context.Context, jobs []delivery.Job) error {
	var (
		entries []types.SendMessageBatchRequestEntry
		size    int
	)
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		out, err := q.API.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL), Entries: entries})
		n := len(entries)
		entries, size = nil, 0
		if err != nil {
			return fault.Temporary(fmt.Errorf("sqs: send jobs: %w", err))
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			return fault.Temporary(fmt.Errorf("sqs: %d of %d jobs not sent: %s %s", len(out.Failed), n, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
		return nil
	}
	for _, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			return fault.Permanent(err)
		}
		n := len(b)
		if j.Traceparent != "" {
			n += traceparentAttrLen
		}
		if n > delivery.MaxQueueMessage {
			return fault.Permanentf("sqs: job %s is %d bytes, over the queue's %d", j.ID, n, delivery.MaxQueueMessage)
		}
		if len(entries) == maxBatchEntries || size+n > delivery.MaxQueueMessage {
			if err := flush(); err != nil {
				return err
			}
		}
		e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(entries))), MessageBody: aws.String(string(b))}
		if j.Traceparent != "" {
			// The W3C trace context as SQS carries it: a message attribute
			// (it is in the body too, which a dead letter keeps).
			e.MessageAttributes = map[string]types.MessageAttributeValue{
				telemetry.HeaderTraceparent: {DataType: aws.String("String"), StringValue: aws.String(j.Traceparent)},
			}
		}
		entries = append(entries, e)
		size += n
	}
	return flush()
}

// traceparentAttrLen is what the traceparent attribute adds to a
// message's size as SQS counts it: its name, type and 55-byte value.
const traceparentAttrLen = len(telemetry.HeaderTraceparent) + len("String") + 55

// maxBatchEntries is SQS's limit on the entries of one batch request.
const maxBatchEntries = 10

// Retry hides a received job for delay (at most 12 hours, SQS's limit).
func (q *Queue) Retry(ctx context.Context, receipt string, delay time.Duration) error {
	secs := int32(min(max(delay, time.Second), delivery.MaxDelay) / time.Second)
	_, err := q.API.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(q.URL), ReceiptHandle: aws.String(receipt), VisibilityTimeout: secs,
	})
	if err != nil {
		return fault.Temporary(fmt.Errorf("sqs: change visibility: %w", err))
	}
	return nil
}

// DeadLetter sends the whole job to the dead-letter queue, for redrive.
func (q *Queue) DeadLetter(ctx context.Context, j delivery.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fault.Permanent(err)
	}
	if len(b) > delivery.MaxQueueBody {
		j.Message = nil // its MessageKey or the raw message remain
		b, _ = json.Marshal(j)
	}
	_, err = q.API.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.DeadLetterURL), MessageBody: aws.String(string(b))})
	if err != nil {
		return fault.Temporary(fmt.Errorf("sqs: dead-letter: %w", err))
	}
	return nil
}
