package s3store

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/store"
)

// classify wraps an error from the S3 client with the operation and key
// and marks it temporary or permanent; a missing key becomes
// store.ErrNotFound. The SDK has already retried what it retries (3
// attempts by default), so a temporary error here is worth retrying later,
// not now.
func classify(err error, op, key string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fault.Temporary(fmt.Errorf("s3store: %s %s: %w", op, key, err))
	}
	status := httpStatus(err)
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	temporary, notFound := class(status, code)
	if notFound {
		return fault.Permanent(fmt.Errorf("s3store: %s %s: %w", op, key, store.ErrNotFound))
	}
	err = fmt.Errorf("s3store: %s %s: %w", op, key, err)
	if temporary {
		return fault.Temporary(err)
	}
	return fault.Permanent(err)
}

// httpStatus is the status code of S3's answer, 0 when none arrived.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// class decides what an S3 answer means. status is 0 when no response
// arrived (connection refused or reset, DNS, timeouts).
func class(status int, code string) (temporary, notFound bool) {
	switch {
	case status == 0 && code == "":
		return true, false
	case code == "NoSuchKey" || code == "NotFound" || status == 404 && code == "":
		// HEAD answers carry no body, so HeadObject's 404 has the
		// generic code NotFound, also when the bucket is missing.
		return false, true
	case temporaryCodes[code]:
		return true, false
	case status == 408 || status == 429 || status >= 500:
		return true, false
	}
	return false, false
}

// temporaryCodes are S3 error codes worth retrying whatever their status.
var temporaryCodes = map[string]bool{
	"SlowDown":                       true, // 503
	"Throttling":                     true,
	"ThrottlingException":            true,
	"RequestThrottled":               true,
	"RequestLimitExceeded":           true,
	"TooManyRequestsException":       true,
	"BandwidthLimitExceeded":         true,
	"RequestTimeout":                 true, // 400: the body came too slowly
	"RequestTimeoutException":        true,
	"InternalError":                  true,
	"ServiceUnavailable":             true,
	"OperationAborted":               true, // 409: a conflicting operation is in progress
	"ExpiredToken":                   true, // 400: session credentials rotate
	"ExpiredTokenException":          true,
	"RequestTimeTooSkewed":           true, // 403: the clock is being corrected
	"PriorRequestNotComplete":        true,
	"IDPCommunicationError":          true,
	"EC2ThrottledException":          true,
	"TransactionInProgressException": true,
}

// checkMeta enforces store.Object's metadata rules, which are also what
// survives a round trip through HTTP headers: keys lower-case [a-z0-9-_.],
// values printable ASCII without leading or trailing space (the SDK trims
// them). S3 itself rejects more than 2 KiB in total.
func checkMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" {
			return errors.New("empty metadata key")
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("metadata key %q: want lower-case [a-z0-9-_.]", k)
			}
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c > 0x7e {
				return fmt.Errorf("metadata %q: value is not printable ASCII", k)
			}
		}
		if len(v) > 0 && (v[0] == ' ' || v[len(v)-1] == ' ') {
			return fmt.Errorf("metadata %q: value has leading or trailing space", k)
		}
	}
	return nil
}
