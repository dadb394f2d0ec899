package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
)

// Error codes of the HTTP API. Every non-2xx response carries one in its
// body, {"error":{"code":"...","message":"..."}}; clients branch on the code,
// never on the message, which is for people.
const (
	// CodeBadRequest (400) means a malformed request: an unknown
	// consistency, a repeated or badly escaped query parameter, an
	// unreadable body.
	CodeBadRequest = "bad_request"
	// CodeInvalidJSON (400) means the request body is not one valid UTF-8
	// JSON value.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidKey (400) means the key is empty, not valid UTF-8, too
	// long, or does not percent-decode.
	CodeInvalidKey = "invalid_key"
	// CodeNotFound (404) means no route has this path.
	CodeNotFound = "not_found"
	// CodeKeyNotFound (404) means the key does not exist.
	CodeKeyNotFound = "key_not_found"
	// CodeMethodNotAllowed (405) means the route exists but not for this
	// method; the Allow header lists the methods it has.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeTooLarge (413) means the body or the command it makes exceeds a
	// size limit.
	CodeTooLarge = "too_large"
	// CodeNoLeader (503) means the cluster has no leader right now. Nothing
	// was applied; retry after Retry-After.
	CodeNoLeader = "no_leader"
	// CodeTimeout (503) means the request's deadline passed. For a write
	// the outcome is unknown: it may or may not be applied.
	CodeTimeout = "timeout"
	// CodeUnavailable (503) means the node cannot serve the request: it is
	// stopped, not ready, or failed in a way the API does not classify.
	CodeUnavailable = "unavailable"
	// CodeCanceled (503) means the client went away before the answer was
	// ready; nobody is expected to read it.
	CodeCanceled = "canceled"
	// CodeInternal (503) means the server hit a bug while handling the
	// request (a recovered panic). It is logged and counted.
	CodeInternal = "internal"
)

// apiError is a failure as the HTTP API reports it.
type apiError struct {
	status  int
	code    string
	message string
	// unexpected marks an error outside the API's known classes: a bug or
	// an unclassified backend failure, logged at Error by the caller.
	unexpected bool
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// backendError maps an error returned by a Backend (or by the request's
// context) to its HTTP status and code. It is the only place that decides
// this mapping. Every status it returns is 4xx or 503: the contract says any
// other 5xx is a bug.
func backendError(err error) apiError {
	switch {
	case errors.Is(err, kv.ErrKeyNotFound):
		return apiError{status: http.StatusNotFound, code: CodeKeyNotFound, message: err.Error()}
	case errors.Is(err, kv.ErrInvalidKey):
		return apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: err.Error()}
	case errors.Is(err, kv.ErrInvalidValue):
		return apiError{status: http.StatusBadRequest, code: CodeInvalidJSON, message: err.Error()}
	case errors.Is(err, kv.ErrValueTooLarge), errors.Is(err, consensus.ErrTooLarge):
		return apiError{status: http.StatusRequestEntityTooLarge, code: CodeTooLarge, message: err.Error()}
	case errors.Is(err, consensus.ErrNoLeader):
		return apiError{status: http.StatusServiceUnavailable, code: CodeNoLeader, message: err.Error()}
	case errors.Is(err, consensus.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return apiError{status: http.StatusServiceUnavailable, code: CodeTimeout,
			message: "request timed out; the outcome is unknown (a write may or may not be applied): " + err.Error()}
	case errors.Is(err, consensus.ErrStopped):
		return apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: err.Error()}
	case errors.Is(err, context.Canceled):
		return apiError{status: http.StatusServiceUnavailable, code: CodeCanceled, message: err.Error()}
	default:
		return apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: err.Error(), unexpected: true}
	}
}
