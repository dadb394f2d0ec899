package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
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
// sentinel wins; an error that matches none is api.CodeUnavailable and
// unexpected. Every status is 4xx or 503: the contract says any other 5xx
// is a bug.
var errorClasses = []errorClass{
	{sentinels: []error{kv.ErrKeyNotFound}, status: http.StatusNotFound, code: api.CodeKeyNotFound},
	{sentinels: []error{kv.ErrConflict}, status: http.StatusPreconditionFailed, code: api.CodePreconditionFailed},
	{sentinels: []error{kv.ErrStateFull}, status: http.StatusUnprocessableEntity, code: api.CodeStateFull},
	{sentinels: []error{kv.ErrWorkflowNotFound}, status: http.StatusNotFound, code: api.CodeWorkflowNotFound},
	{sentinels: []error{kv.ErrInvalidTransition}, status: http.StatusConflict, code: api.CodeInvalidTransition},
	{sentinels: []error{kv.ErrNodeNotFound}, status: http.StatusNotFound, code: api.CodeNodeNotFound},
	{sentinels: []error{kv.ErrRequestExpired}, status: http.StatusConflict, code: api.CodeRequestExpired},
	{sentinels: []error{kv.ErrLeaseNotFound}, status: http.StatusNotFound, code: api.CodeLeaseNotFound},
	{sentinels: []error{kv.ErrTooManyLeases}, status: http.StatusUnprocessableEntity, code: api.CodeTooManyLeases},
	{sentinels: []error{kv.ErrLeaseExists}, status: http.StatusConflict, code: api.CodeLeaseExists},
	{sentinels: []error{kv.ErrInvalidTTL, api.ErrInvalidLeaseID}, status: http.StatusBadRequest, code: api.CodeInvalidLease},
	{sentinels: []error{kv.ErrFenced}, status: http.StatusPreconditionFailed, code: api.CodeFenced},
	{sentinels: []error{kv.ErrLocked}, status: http.StatusConflict, code: api.CodeLocked},
	{sentinels: []error{kv.ErrNotHolder}, status: http.StatusConflict, code: api.CodeNotHolder},
	{sentinels: []error{kv.ErrTooManyLocks}, status: http.StatusUnprocessableEntity, code: api.CodeTooManyLocks},
	{sentinels: []error{kv.ErrLockNotFound}, status: http.StatusNotFound, code: api.CodeLockNotFound},
	{sentinels: []error{kv.ErrStaleEpoch}, status: http.StatusConflict, code: api.CodeStaleEpoch},
	{sentinels: []error{kv.ErrTaskNotFound}, status: http.StatusNotFound, code: api.CodeTaskNotFound},
	{sentinels: []error{kv.ErrQueueFull}, status: http.StatusUnprocessableEntity, code: api.CodeQueueFull},
	{sentinels: []error{kv.ErrTaskNotDead}, status: http.StatusConflict, code: api.CodeTaskNotDead},
	{sentinels: []error{kv.ErrScheduleNotFound}, status: http.StatusNotFound, code: api.CodeScheduleNotFound},
	{sentinels: []error{kv.ErrInvalidBatch, kv.ErrInvalidRequestID, kv.ErrBadCommand}, status: http.StatusBadRequest, code: api.CodeBadRequest},
	{sentinels: []error{kv.ErrInvalidKey}, status: http.StatusBadRequest, code: api.CodeInvalidKey},
	{sentinels: []error{kv.ErrCompacted}, status: http.StatusGone, code: api.CodeCompacted},
	{sentinels: []error{kv.ErrInvalidRevision}, status: http.StatusBadRequest, code: api.CodeBadRequest},
	{sentinels: []error{kv.ErrInvalidValue}, status: http.StatusBadRequest, code: api.CodeInvalidJSON},
	{sentinels: []error{kv.ErrValueTooLarge, consensus.ErrTooLarge}, status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge},
	{sentinels: []error{consensus.ErrNoLeader}, status: http.StatusServiceUnavailable, code: api.CodeNoLeader},
	{sentinels: []error{consensus.ErrRemoved}, status: http.StatusServiceUnavailable, code: api.CodeRemoved,
		prefix: "send requests to a member: "},
	{sentinels: []error{consensus.ErrUnknownMember}, status: http.StatusNotFound, code: api.CodeMemberNotFound},
	{sentinels: []error{consensus.ErrMemberConflict}, status: http.StatusConflict, code: api.CodeMemberConflict},
	{sentinels: []error{consensus.ErrInvalidMember}, status: http.StatusBadRequest, code: api.CodeInvalidMember},
	{sentinels: []error{consensus.ErrTimeout, context.DeadlineExceeded}, status: http.StatusServiceUnavailable, code: api.CodeTimeout,
		prefix: "request timed out; the outcome is unknown (a write may or may not be applied): "},
	{sentinels: []error{consensus.ErrStopped}, status: http.StatusServiceUnavailable, code: api.CodeUnavailable},
	{sentinels: []error{consensus.ErrStorageStalled}, status: http.StatusServiceUnavailable, code: api.CodeUnavailable},
	{sentinels: []error{kv.ErrDiverged}, status: http.StatusServiceUnavailable, code: api.CodeUnavailable},
	{sentinels: []error{context.Canceled}, status: http.StatusServiceUnavailable, code: api.CodeCanceled},
}

// backendError maps an error returned by a Backend (or by the request's
// context) to its HTTP status and code through errorClasses. It is the
// only place that decides this mapping.
// statusOfCode returns the HTTP status of an error code of the table
// (503 for a code it does not hold): for answers relayed by code alone.
func statusOfCode(code string) int {
	for _, c := range errorClasses {
		if c.code == code {
			return c.status
		}
	}
	return http.StatusServiceUnavailable
}

func backendError(err error) apiError {
	for _, class := range errorClasses {
		for _, sentinel := range class.sentinels {
			if errors.Is(err, sentinel) {
				return apiError{status: class.status, code: class.code, message: class.prefix + err.Error()}
			}
		}
	}
	return apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: err.Error(), unexpected: true}
}

// requestError is backendError for a request whose caller's context is
// callerCtx: a cancellation the caller did not cause is the backend's own,
// so it is reported as api.CodeUnavailable and marked unexpected.
func requestError(callerCtx context.Context, err error) apiError {
	e := backendError(err)
	if e.code == api.CodeCanceled && callerCtx.Err() == nil {
		e.code, e.unexpected = api.CodeUnavailable, true
	}
	return e
}
