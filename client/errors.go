package client

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
)

// Error codes a server answers with: those of the HTTP JSON API
// (server/errors.go), whose doc comments say what each means.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidKey       = "invalid_key"
	CodeNotFound         = "not_found"
	CodeKeyNotFound      = "key_not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "too_large"
	CodeNoLeader         = "no_leader"
	CodeTimeout          = "timeout"
	CodeUnavailable      = "unavailable"
	CodeCanceled         = "canceled"
	CodeInternal         = "internal"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeRateLimited      = "rate_limited"
	CodeOverloaded       = "overloaded"

	CodePreconditionFailed = "precondition_failed"
	CodeStateFull          = "state_full"
	CodeWorkflowNotFound   = "workflow_not_found"
	CodeInvalidTransition  = "invalid_transition"
	CodeNodeNotFound       = "node_not_found"
	CodeRequestExpired     = "request_expired"
)

// Sentinel errors of the client, checked with errors.Is. Errors the server
// answers also wrap kv's and consensus's sentinels (see the package
// documentation).
var (
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("client closed")
	// ErrUnavailable means no endpoint could serve the request: none could
	// be reached, the connection broke, or the server answered
	// unavailable, canceled or internal.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown means a write was sent and may or may not be
	// applied; it was not retried.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrBadRequest means the server did not understand the request: a
	// client and server that speak different protocol versions, or a bug.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized means the server wants a valid bearer token
	// (Config.Token).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the token may not do this (a write with a
	// read-only token).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited means the server refused the request because this
	// client exceeded its rate limit or the node is overloaded; nothing
	// was done and a later retry may succeed.
	ErrRateLimited = errors.New("rate limited")
	// ErrHTTPSEndpoint means a plain-HTTP request (an http:// endpoint, or
	// one without a scheme) reached a server that speaks only HTTPS;
	// nothing was done. The endpoint needs an https:// URL, and
	// Config.HTTPClient a TLS configuration that trusts the server.
	ErrHTTPSEndpoint = errors.New("the endpoint speaks HTTPS: use an https:// URL")
)

// plainToHTTPSBody is how Go's net/http server, which the consensus
// server runs on, answers a plain-HTTP request on a TLS port: status 400
// and this body, not a JSON error.
const plainToHTTPSBody = "Client sent an HTTP request to an HTTPS server."

// IsHTTPSAnswer reports whether an answer with this status and body (its
// start will do) is an HTTPS server's refusal of a plain-HTTP request: the
// caller used http:// for an https:// endpoint (see ErrHTTPSEndpoint).
func IsHTTPSAnswer(status int, body []byte) bool {
	return status == http.StatusBadRequest && bytes.HasPrefix(bytes.TrimSpace(body), []byte(plainToHTTPSBody))
}

// ServerError is an error answered by a server.
type ServerError struct {
	// Code is one of the Code* constants (or a code from a newer server).
	Code string
	// Message says what went wrong, for people.
	Message string
	// Endpoint is the URL of the server that answered.
	Endpoint string
	// write marks an answer to Put or Delete, for which timeout and
	// unavailable mean the outcome is unknown.
	write bool
}

// Error returns the code and message.
func (e *ServerError) Error() string {
	return fmt.Sprintf("%s: %s (from %s)", e.Code, e.Message, e.Endpoint)
}

// Unwrap returns the sentinel errors that the code stands for, so that
// errors.Is(err, kv.ErrKeyNotFound) and the like work.
func (e *ServerError) Unwrap() []error {
	var errs []error
	switch e.Code {
	case CodeKeyNotFound:
		errs = []error{kv.ErrKeyNotFound}
	case CodePreconditionFailed:
		errs = []error{kv.ErrConflict}
	case CodeStateFull:
		errs = []error{kv.ErrStateFull}
	case CodeWorkflowNotFound:
		errs = []error{kv.ErrWorkflowNotFound}
	case CodeInvalidTransition:
		errs = []error{kv.ErrInvalidTransition}
	case CodeNodeNotFound:
		errs = []error{kv.ErrNodeNotFound}
	case CodeRequestExpired:
		errs = []error{kv.ErrRequestExpired}
	case CodeInvalidKey:
		errs = []error{kv.ErrInvalidKey}
	case CodeInvalidJSON:
		errs = []error{kv.ErrInvalidValue}
	case CodeTooLarge:
		errs = []error{kv.ErrValueTooLarge, consensus.ErrTooLarge}
	case CodeNoLeader:
		errs = []error{consensus.ErrNoLeader}
	case CodeTimeout:
		errs = []error{consensus.ErrTimeout}
	case CodeBadRequest, CodeNotFound, CodeMethodNotAllowed:
		errs = []error{ErrBadRequest}
	case CodeUnauthorized:
		errs = []error{ErrUnauthorized}
	case CodeForbidden:
		errs = []error{ErrForbidden}
	case CodeRateLimited, CodeOverloaded, CodeTooManyWatches:
		errs = []error{ErrRateLimited}
	default:
		errs = []error{ErrUnavailable}
	}
	if e.outcomeUnknown() {
		errs = append(errs, ErrOutcomeUnknown)
	}
	return errs
}

// outcomeUnknown reports whether the answer leaves a write's outcome
// unknown: every code but those that say the write was refused.
func (e *ServerError) outcomeUnknown() bool {
	if !e.write {
		return false
	}
	switch e.Code {
	case CodeKeyNotFound, CodeInvalidKey, CodeInvalidJSON, CodeTooLarge, CodeNoLeader,
		CodePreconditionFailed, CodeStateFull, CodeWorkflowNotFound, CodeInvalidTransition, CodeNodeNotFound,
		CodeBadRequest, CodeNotFound, CodeMethodNotAllowed,
		CodeUnauthorized, CodeForbidden, CodeRateLimited, CodeOverloaded, CodeTooManyWatches:
		return false
	}
	return true
}

// notSentError wraps a failure that happened before the request left this
// process: retrying it cannot apply a write twice.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "request not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// lostError wraps a failure after the request was written: the connection
// broke or the caller stopped waiting, and no answer will come.
type lostError struct{ err error }

func (e *lostError) Error() string { return "no answer to a sent request: " + e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }
