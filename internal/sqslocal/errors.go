package sqslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is an SQS error reply in the JSON protocol: the shape name goes in
// the body's __type ("com.amazonaws.sqs#QueueDoesNotExist"), the Query
// protocol's code in the x-amzn-query-error header
// ("AWS.SimpleQueueService.NonExistentQueue;Sender"), which the SDK reports as
// the error's ErrorCode() because the service is awsQueryCompatible. See
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-json-api-responses.html
// and the codes in
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/CommonErrors.html
// and each action's "Errors" section of the API reference.
type apiError struct {
	status int
	shape  string // Smithy shape name, the body's __type after '#'
	code   string // Query protocol code, the x-amzn-query-error header
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

// The shape names, Query codes and HTTP statuses below are those of the SQS
// Smithy model (as generated into aws-sdk-go-v2/service/sqs/schemas).
func errQueueDoesNotExist() *apiError {
	return &apiError{400, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."}
}

func errQueueNameExists(name string) *apiError {
	return &apiError{400, "QueueNameExists", "QueueAlreadyExists", fmt.Sprintf("A queue already exists with the same name and a different value for attribute(s): %s", name)}
}

func errTooManyEntries(n int) *apiError {
	return &apiError{400, "TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", fmt.Sprintf("Maximum number of entries per request are 10. You have sent %d.", n)}
}

func errEmptyBatch() *apiError {
	return &apiError{400, "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", "There should be at least one entry in the request."}
}

func errIDsNotDistinct(id string) *apiError {
	return &apiError{400, "BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", fmt.Sprintf("Id %s repeated.", id)}
}

func errInvalidBatchEntryID(id string) *apiError {
	return &apiError{400, "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", fmt.Sprintf("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long. Got %q.", id)}
}

func errBatchTooLong(n int) *apiError {
	return &apiError{400, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", fmt.Sprintf("Batch requests cannot be longer than %d bytes. You have sent %d bytes.", MaxMessageSize, n)}
}

func errReceiptHandleIsInvalid(h string) *apiError {
	return &apiError{404, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", fmt.Sprintf("The input receipt handle %q is not a valid receipt handle.", h)}
}

func errInvalidMessageContents() *apiError {
	return &apiError{400, "InvalidMessageContents", "InvalidMessageContents", "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"}
}

func errInvalidAttributeName(name string) *apiError {
	return &apiError{400, "InvalidAttributeName", "InvalidAttributeName", fmt.Sprintf("Unknown Attribute %s.", name)}
}

func errInvalidAttributeValue(name, why string) *apiError {
	return &apiError{400, "InvalidAttributeValue", "InvalidAttributeValue", fmt.Sprintf("Invalid value for the parameter %s. Reason: %s", name, why)}
}

// InvalidParameterValue and MissingParameter are common errors, not modelled
// shapes; the SDK reports them as a smithy.GenericAPIError whose code comes
// from the x-amzn-query-error header.
func errInvalidParameterValue(format string, args ...any) *apiError {
	return &apiError{400, "InvalidParameterValue", "InvalidParameterValue", fmt.Sprintf(format, args...)}
}

func errMissingParameter(name string) *apiError {
	return &apiError{400, "MissingParameter", "MissingParameter", fmt.Sprintf("The request must contain the parameter %s.", name)}
}

func errUnknownOperation(target string) *apiError {
	return &apiError{400, "UnknownOperationException", "InvalidAction", fmt.Sprintf("The action %q is not valid for this endpoint.", target)}
}

func errMalformed(err error) *apiError {
	return &apiError{400, "SerializationException", "MalformedInput", "Malformed request body: " + err.Error()}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("x-amzn-query-error", e.code+";Sender")
	w.Header().Set("x-amzn-RequestId", newID())
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{
		"__type":  "com.amazonaws.sqs#" + e.shape,
		"message": e.msg,
	})
}
