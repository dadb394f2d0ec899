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
	// CodeInvalidKey (400) means the key (or id) is empty, not valid
	// UTF-8, too long, holds a control character (kv.ValidateKey), or does
	// not percent-decode; or that a prefix is not valid UTF-8, too long or
	// holds a control character.
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
	// CodeUnauthorized (401) means the request carries no valid bearer
	// token.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden (403) means the token may not do this (a write with a
	// read-only token).
	CodeForbidden = "forbidden"
	// CodeRateLimited (429) means the client exceeded its request rate;
	// retry after Retry-After seconds.
	CodeRateLimited = "rate_limited"
	// CodeOverloaded (503) means the node has too many requests in flight.
	// Nothing was done; retry after Retry-After.
	CodeOverloaded = "overloaded"
	// CodePreconditionFailed (412) means an If-Match or If-None-Match
	// header, or a batch operation's ifRevision, did not hold: the key is
	// at another revision, exists, or is missing. Nothing was changed.
	CodePreconditionFailed = "precondition_failed"
	// CodeStateFull (422) means the write would create a key beyond the
	// state's key limit (100000 by default). Nothing was changed; existing
	// keys can still be updated and deleted.
	CodeStateFull = "state_full"
	// CodeWorkflowNotFound (404) means no workflow has this id.
	CodeWorkflowNotFound = "workflow_not_found"
	// CodeInvalidTransition (409) means the workflow cannot make this
	// change from its status: starting a running workflow, stopping or
	// updating one that is not running.
	CodeInvalidTransition = "invalid_transition"
	// CodeNodeNotFound (404) means no application node has this id.
	CodeNodeNotFound = "node_not_found"
	// CodeRequestExpired (409) means the request's X-Request-Seq is older
	// than the dedup window remembers for its X-Client-Id: it was not
	// applied now, and whether an earlier attempt was is unknown.
	CodeRequestExpired = "request_expired"
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

// errorClass is one row of the table that maps backend errors to the API.
type errorClass struct {
	// sentinels are matched with errors.Is, in order.
	sentinels []error
	status    int
	code      string
	// prefix, when set, comes before the error's text in the message.
	prefix string
}

// errorClasses is the one table from backend errors to status and code,
// shared by the JSON API and /v1/ws. The first row with a matching
// sentinel wins; an error that matches none is CodeUnavailable and
// unexpected. Every status is 4xx or 503: the contract says any other 5xx
// is a bug.
var errorClasses = []errorClass{
	{sentinels: []error{kv.ErrKeyNotFound}, status: http.StatusNotFound, code: CodeKeyNotFound},
	{sentinels: []error{kv.ErrConflict}, status: http.StatusPreconditionFailed, code: CodePreconditionFailed},
	{sentinels: []error{kv.ErrStateFull}, status: http.StatusUnprocessableEntity, code: CodeStateFull},
	{sentinels: []error{kv.ErrWorkflowNotFound}, status: http.StatusNotFound, code: CodeWorkflowNotFound},
	{sentinels: []error{kv.ErrInvalidTransition}, status: http.StatusConflict, code: CodeInvalidTransition},
	{sentinels: []error{kv.ErrNodeNotFound}, status: http.StatusNotFound, code: CodeNodeNotFound},
	{sentinels: []error{kv.ErrRequestExpired}, status: http.StatusConflict, code: CodeRequestExpired},
	{sentinels: []error{kv.ErrInvalidBatch, kv.ErrInvalidRequestID, kv.ErrBadCommand}, status: http.StatusBadRequest, code: CodeBadRequest},
	{sentinels: []error{kv.ErrInvalidKey}, status: http.StatusBadRequest, code: CodeInvalidKey},
	{sentinels: []error{kv.ErrInvalidValue}, status: http.StatusBadRequest, code: CodeInvalidJSON},
	{sentinels: []error{kv.ErrValueTooLarge, consensus.ErrTooLarge}, status: http.StatusRequestEntityTooLarge, code: CodeTooLarge},
	{sentinels: []error{consensus.ErrNoLeader}, status: http.StatusServiceUnavailable, code: CodeNoLeader},
	{sentinels: []error{consensus.ErrRemoved}, status: http.StatusServiceUnavailable, code: CodeRemoved,
		prefix: "send requests to a member: "},
	{sentinels: []error{consensus.ErrUnknownMember}, status: http.StatusNotFound, code: CodeMemberNotFound},
	{sentinels: []error{consensus.ErrMemberConflict}, status: http.StatusConflict, code: CodeMemberConflict},
	{sentinels: []error{consensus.ErrInvalidMember}, status: http.StatusBadRequest, code: CodeInvalidMember},
	{sentinels: []error{consensus.ErrTimeout, context.DeadlineExceeded}, status: http.StatusServiceUnavailable, code: CodeTimeout,
		prefix: "request timed out; the outcome is unknown (a write may or may not be applied): "},
	{sentinels: []error{consensus.ErrStopped}, status: http.StatusServiceUnavailable, code: CodeUnavailable},
	{sentinels: []error{context.Canceled}, status: http.StatusServiceUnavailable, code: CodeCanceled},
}

// backendError maps an error returned by a Backend (or by the request's
// context) to its HTTP status and code through errorClasses. It is the
// only place that decides this mapping.
func backendError(err error) apiError {
	for _, class := range errorClasses {
		for _, sentinel := range class.sentinels {
			if errors.Is(err, sentinel) {
				return apiError{status: class.status, code: class.code, message: class.prefix + err.Error()}
			}
		}
	}
	return apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: err.Error(), unexpected: true}
}

// requestError is backendError for a request whose caller's context is
// callerCtx: a cancellation the caller did not cause is the backend's own,
// so it is reported as CodeUnavailable and marked unexpected.
func requestError(callerCtx context.Context, err error) apiError {
	e := backendError(err)
	if e.code == CodeCanceled && callerCtx.Err() == nil {
		e.code, e.unexpected = CodeUnavailable, true
	}
	return e
}
