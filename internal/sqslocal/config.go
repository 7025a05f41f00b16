package sqslocal

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Documented quotas (Amazon SQS Developer Guide, "Amazon SQS message quotas"
// and the CreateQueue/SendMessage/SendMessageBatch API reference as of the
// 2025 raise of the message size to 1 MiB).
const (
	// MaxMessageSize is the largest message, and the largest sum of the
	// messages of one SendMessageBatch: 1 MiB. It is also the default of a
	// queue's MaximumMessageSize.
	MaxMessageSize = 1 << 20
	// MinMessageSize is the smallest MaximumMessageSize a queue can have.
	MinMessageSize = 1024
	// MaxBatchEntries is the most entries a batch action takes.
	MaxBatchEntries = 10
	// MaxVisibilityTimeout is 12 hours, in seconds: the largest visibility
	// timeout, and the longest a message can stay invisible after a receive.
	MaxVisibilityTimeout = 43200
	// MaxMessageAttributes is the most message attributes a message has.
	MaxMessageAttributes = 10
)

// queueConfig is a queue's attributes, in seconds and bytes like the API.
type queueConfig struct {
	VisibilityTimeout             int
	MessageRetentionPeriod        int
	MaximumMessageSize            int
	DelaySeconds                  int
	ReceiveMessageWaitTimeSeconds int
	Redrive                       *redrivePolicy
}

type redrivePolicy struct {
	DeadLetterTargetArn string
	MaxReceiveCount     int
}

func defaultConfig() queueConfig {
	return queueConfig{
		VisibilityTimeout:      30,
		MessageRetentionPeriod: 345600,
		MaximumMessageSize:     MaxMessageSize,
	}
}

var queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// intRanges are the valid values of the integer attributes (CreateQueue API
// reference).
var intRanges = map[string][2]int{
	"VisibilityTimeout":             {0, MaxVisibilityTimeout},
	"MessageRetentionPeriod":        {60, 1209600},
	"MaximumMessageSize":            {MinMessageSize, MaxMessageSize},
	"DelaySeconds":                  {0, 900},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
}

// ignoredAttributes are accepted and not modelled (encryption, access policy).
var ignoredAttributes = map[string]bool{
	"Policy": true, "KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true,
	"SqsManagedSseEnabled": true, "RedriveAllowPolicy": true,
}

// parseConfig applies attrs to base. lookupARN reports whether a queue with
// that ARN exists (a RedrivePolicy's target must).
func parseConfig(base queueConfig, attrs map[string]string, lookupARN func(string) bool) (queueConfig, *apiError) {
	c := base
	for name, v := range attrs {
		if r, ok := intRanges[name]; ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < r[0] || n > r[1] {
				return c, errInvalidAttributeValue(name, fmt.Sprintf("must be an integer from %d to %d, got %q", r[0], r[1], v))
			}
			switch name {
			case "VisibilityTimeout":
				c.VisibilityTimeout = n
			case "MessageRetentionPeriod":
				c.MessageRetentionPeriod = n
			case "MaximumMessageSize":
				c.MaximumMessageSize = n
			case "DelaySeconds":
				c.DelaySeconds = n
			case "ReceiveMessageWaitTimeSeconds":
				c.ReceiveMessageWaitTimeSeconds = n
			}
			continue
		}
		switch {
		case name == "RedrivePolicy":
			if v == "" {
				c.Redrive = nil
				continue
			}
			rp, e := parseRedrivePolicy(v, lookupARN)
			if e != nil {
				return c, e
			}
			c.Redrive = rp
		case name == "FifoQueue":
			if v != "false" {
				return c, errInvalidAttributeValue(name, "FIFO queues are not modelled by this stand-in")
			}
		case ignoredAttributes[name]:
		default:
			return c, errInvalidAttributeName(name)
		}
	}
	return c, nil
}

// parseRedrivePolicy reads {"deadLetterTargetArn": ARN, "maxReceiveCount": N}
// where N may be a number or a string, as SQS accepts both.
func parseRedrivePolicy(v string, lookupARN func(string) bool) (*redrivePolicy, *apiError) {
	var raw struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for the parameter RedrivePolicy: %v", v, err)
	}
	if raw.DeadLetterTargetArn == "" || len(raw.MaxReceiveCount) == 0 {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: deadLetterTargetArn and maxReceiveCount.", v)
	}
	n, err := strconv.Atoi(strings.Trim(string(raw.MaxReceiveCount), `"`))
	if err != nil || n < 1 || n > 1000 {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %s, valid values are from 1 to 1000 both inclusive.", v, raw.MaxReceiveCount)
	}
	if !lookupARN(raw.DeadLetterTargetArn) {
		return nil, errInvalidParameterValue("Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", v)
	}
	return &redrivePolicy{DeadLetterTargetArn: raw.DeadLetterTargetArn, MaxReceiveCount: n}, nil
}

// attributes renders the configuration as GetQueueAttributes returns it.
func (c queueConfig) attributes() map[string]string {
	m := map[string]string{
		"VisibilityTimeout":             strconv.Itoa(c.VisibilityTimeout),
		"MessageRetentionPeriod":        strconv.Itoa(c.MessageRetentionPeriod),
		"MaximumMessageSize":            strconv.Itoa(c.MaximumMessageSize),
		"DelaySeconds":                  strconv.Itoa(c.DelaySeconds),
		"ReceiveMessageWaitTimeSeconds": strconv.Itoa(c.ReceiveMessageWaitTimeSeconds),
	}
	if c.Redrive != nil {
		b, _ := json.Marshal(map[string]any{
			"deadLetterTargetArn": c.Redrive.DeadLetterTargetArn,
			"maxReceiveCount":     c.Redrive.MaxReceiveCount,
		})
		m["RedrivePolicy"] = string(b)
	}
	return m
}

func (c queueConfig) equal(o queueConfig) bool {
	if c.Redrive == nil || o.Redrive == nil {
		cr, or := c.Redrive, o.Redrive
		c.Redrive, o.Redrive = nil, nil
		return c == o && cr == nil && or == nil
	}
	cr, or := *c.Redrive, *o.Redrive
	c.Redrive, o.Redrive = nil, nil
	return c == o && cr == or
}
