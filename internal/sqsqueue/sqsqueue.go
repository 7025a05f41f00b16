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

// Send enqueues jobs, ten per SendMessageBatch call (SQS's limit).
func (q *Queue) Send(ctx context.Context, jobs []delivery.Job) error {
	for start := 0; start < len(jobs); start += 10 {
		batch := jobs[start:min(start+10, len(jobs))]
		entries := make([]types.SendMessageBatchRequestEntry, len(batch))
		for i, j := range batch {
			b, err := json.Marshal(j)
			if err != nil {
				return fault.Permanent(err)
			}
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(b))}
		}
		out, err := q.API.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL), Entries: entries})
		if err != nil {
			return fault.Temporary(fmt.Errorf("sqs: send jobs: %w", err))
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			return fault.Temporary(fmt.Errorf("sqs: %d of %d jobs not sent: %s %s", len(out.Failed), len(batch), aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	return nil
}

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
