package client

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/unrdf/consensus/api"
)

// Error codes a server answers with: api's, whose doc comments say what
// each means.
const (
	CodeBadRequest       = api.CodeBadRequest
	CodeInvalidJSON      = api.CodeInvalidJSON
	CodeInvalidKey       = api.CodeInvalidKey
	CodeNotFound         = api.CodeNotFound
	CodeKeyNotFound      = api.CodeKeyNotFound
	CodeMethodNotAllowed = api.CodeMethodNotAllowed
	CodeTooLarge         = api.CodeTooLarge
	CodeNoLeader         = api.CodeNoLeader
	CodeTimeout          = api.CodeTimeout
	CodeUnavailable      = api.CodeUnavailable
	CodeCanceled         = api.CodeCanceled
	CodeInternal         = api.CodeInternal
	CodeUnauthorized     = api.CodeUnauthorized
	CodeForbidden        = api.CodeForbidden
	CodeRateLimited      = api.CodeRateLimited
	CodeOverloaded       = api.CodeOverloaded

	CodePreconditionFailed = api.CodePreconditionFailed
	CodeStateFull          = api.CodeStateFull
	CodeWorkflowNotFound   = api.CodeWorkflowNotFound
	CodeInvalidTransition  = api.CodeInvalidTransition
	CodeNodeNotFound       = api.CodeNodeNotFound
	CodeRequestExpired     = api.CodeRequestExpired
	CodeLeaseNotFound      = api.CodeLeaseNotFound
	CodeLeaseExists        = api.CodeLeaseExists
	CodeTooManyLeases      = api.CodeTooManyLeases
	CodeInvalidLease       = api.CodeInvalidLease
)

// Sentinel errors of the client, checked with errors.Is (api defines
// them). Errors the server answers also wrap the sentinels of api (which
// kv and the consensus package re-export; see the package documentation).
var (
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("client closed")
	// ErrUnavailable means no endpoint could serve the request: none could
	// be reached, the connection broke, or the server answered
	// unavailable, canceled or internal.
	ErrUnavailable = api.ErrUnavailable
	// ErrOutcomeUnknown means a write was sent and may or may not be
	// applied; it was not retried.
	ErrOutcomeUnknown = api.ErrOutcomeUnknown
	// ErrBadRequest means the server did not understand the request: a
	// client and server that speak different protocol versions, or a bug.
	ErrBadRequest = api.ErrBadRequest
	// ErrUnauthorized means the server wants a valid bearer token
	// (Config.Token).
	ErrUnauthorized = api.ErrUnauthorized
	// ErrForbidden means the token may not do this (a write with a
	// read-only token).
	ErrForbidden = api.ErrForbidden
	// ErrRateLimited means the server refused the request because this
	// client exceeded its rate limit or the node is overloaded; nothing
	// was done and a later retry may succeed.
	ErrRateLimited = api.ErrRateLimited
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
// A consensus server answers it as a JSON bad_request with
// api.HTTPSRequiredMessage; net/http's plain-text answer (any other Go
// server, or an older consensus) is recognised too.
func IsHTTPSAnswer(status int, body []byte) bool {
	if status != http.StatusBadRequest {
		return false
	}
	return bytes.HasPrefix(bytes.TrimSpace(body), []byte(plainToHTTPSBody)) ||
		bytes.Contains(body, []byte(api.HTTPSRequiredMessage))
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

// Unwrap returns the sentinel errors that the code stands for
// (api.Sentinels), so that errors.Is(err, kv.ErrKeyNotFound) and the like
// work, and ErrOutcomeUnknown for an answer to a write that does not say
// the write was refused.
func (e *ServerError) Unwrap() []error {
	errs := api.Sentinels(e.Code)
	if e.outcomeUnknown() {
		errs = append(errs, ErrOutcomeUnknown)
	}
	return errs
}

// outcomeUnknown reports whether the answer leaves a write's outcome
// unknown: every code but those that say the write was refused.
func (e *ServerError) outcomeUnknown() bool { return e.write && !api.Refused(e.Code) }

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
