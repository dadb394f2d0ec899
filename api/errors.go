package api

import "errors"

// HTTPSRequiredMessage is the message of the bad_request a server answers
// to a plain-HTTP request on its TLS port; clients look for it to say
// "use https://" instead of a bare 400. (net/http's own answer, plain text,
// is rewritten into the JSON envelope with this message.)
const HTTPSRequiredMessage = "this endpoint speaks HTTPS: use https:// and trust its certificate (--cacert)"

// Error codes. Every error a server answers carries one: in the JSON body
// of an HTTP answer, {"error":{"code":"...","message":"..."}}, and in a
// /v1/ws error response, [id, 1, [code, message]]. Clients branch on the
// code, never on the message, which is for people. The HTTP status each
// comes with is in parentheses.
const (
	// CodeBadRequest (400) means a malformed request: an unknown
	// consistency, a repeated or badly escaped query parameter, an
	// unreadable body.
	CodeBadRequest = "bad_request"
	// CodeInvalidJSON (400) means the request body is not one valid UTF-8
	// JSON value.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidKey (400) means the key (or id) is empty, too long, or does
	// not percent-decode; or that a key written (or an id) is not valid
	// UTF-8 or holds a control character (see kv.ValidateKey); or that a
	// prefix is too long.
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

// Error codes of the membership routes.
const (
	// CodeMemberNotFound (404) means no member has that id.
	CodeMemberNotFound = "member_not_found"
	// CodeMemberConflict (409) means the change conflicts with the
	// membership: the id was removed before (ids are never reused), it
	// exists at another address, it is a learner where a voter is needed,
	// or no voter would be left.
	CodeMemberConflict = "member_conflict"
	// CodeInvalidMember (400) means the member in the request is
	// malformed (no id, no peer address).
	CodeInvalidMember = "invalid_member"
	// CodeRemoved (503) means this node was removed from the cluster; send
	// the request to a member.
	CodeRemoved = "removed"
)

// Error codes of GET /v1/watch, besides those above.
const (
	// CodeCompacted (410) means the revision asked for is older than the
	// node's watch history. The body's error object also carries
	// "oldestRevision", the oldest revision a watch can start from (also
	// in the X-Consensus-Oldest-Revision header): re-read the state with
	// GET /v1/kv and watch from its revision + 1.
	CodeCompacted = "compacted"
	// CodeTooManyWatches (429) means the client (its token when auth is
	// on, else its IP) has MaxPerClient watches open; retry after
	// Retry-After seconds, or close one.
	CodeTooManyWatches = "too_many_watches"
)

// Sentinel errors of the key-value state machine, checked with errors.Is
// (the kv package re-exports them).
var (
	// ErrKeyNotFound means the key does not exist.
	ErrKeyNotFound = errors.New("key not found")
	// ErrInvalidKey means the key is empty or too long, or, in a write of
	// the HTTP and /v1/ws APIs (ValidateKey), not valid UTF-8 or holds a
	// control character; or that a prefix is too long.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidValue means the value is not a valid JSON value.
	ErrInvalidValue = errors.New("invalid value")
	// ErrValueTooLarge means the value exceeds the value size limit.
	ErrValueTooLarge = errors.New("value too large")
	// ErrConflict means a precondition on a key's revision failed (the
	// key changed, exists when it must not, or is missing when a revision
	// was required). Nothing was changed.
	ErrConflict = errors.New("precondition failed")
	// ErrStateFull means the write would create a key beyond the state's
	// key limit (WithMaxKeys). Nothing was changed; existing keys can still
	// be updated or deleted.
	ErrStateFull = errors.New("state full")
	// ErrWorkflowNotFound means no workflow has this id.
	ErrWorkflowNotFound = errors.New("workflow not found")
	// ErrInvalidTransition means the workflow cannot make this change from
	// its current status (stopping a stopped workflow, starting a running
	// one, updating one that is not running).
	ErrInvalidTransition = errors.New("invalid workflow transition")
	// ErrNodeNotFound means no application node is registered under this
	// id.
	ErrNodeNotFound = errors.New("node not found")
	// ErrRequestExpired means a request carrying (client id, sequence) is
	// older than the session table remembers for that client: it was not
	// applied now, and whether an earlier copy was applied is unknown.
	ErrRequestExpired = errors.New("request expired from the dedup window")
	// ErrInvalidRequestID means a request id's client is empty, too long or
	// not UTF-8, or its sequence is 0.
	ErrInvalidRequestID = errors.New("invalid request id")
	// ErrCompacted means the events a watch needs are no longer kept: the
	// revision asked for is older than the history, the watcher fell that
	// far behind, or the state was replaced by a snapshot. The error is a
	// *CompactedError, which carries the oldest revision still available.
	// The caller re-reads the state (a List) and watches from its
	// revision + 1.
	ErrCompacted = errors.New("revision compacted")
	// ErrInvalidRevision means a negative revision.
	ErrInvalidRevision = errors.New("invalid revision")
	// ErrWatchClosed is a Watcher's Err after its Close.
	ErrWatchClosed = errors.New("watch closed")
)

// Sentinel errors of a node, checked with errors.Is (the module's root
// package re-exports them).
var (
	// ErrNoLeader means the cluster has no known leader right now (an
	// election is under way or a quorum is unreachable). The request was not
	// applied; it is safe to retry after a short wait.
	ErrNoLeader = errors.New("no leader")
	// ErrTimeout means the caller's deadline passed after the proposal was
	// handed to raft. The outcome is unknown: the command may or may not be
	// applied later. This is distinct from a rejection.
	ErrTimeout = errors.New("timed out, outcome unknown")
	// ErrTooLarge means a proposal exceeds the configured command size cap.
	ErrTooLarge = errors.New("command too large")
	// ErrRemoved means this node was removed from the cluster: it takes no
	// further part and serves nothing. Send requests to a member.
	ErrRemoved = errors.New("this node was removed from the cluster")
	// ErrUnknownMember means no member has the given id.
	ErrUnknownMember = errors.New("no such member")
	// ErrMemberConflict means a membership change conflicts with the
	// membership: the id was removed before (ids are never reused), exists
	// at another address, is a learner where a voter is needed, or the
	// change would leave no voter.
	ErrMemberConflict = errors.New("membership conflict")
	// ErrInvalidMember means a membership request is malformed (an empty
	// id, a missing peer address).
	ErrInvalidMember = errors.New("invalid member")
)

// Sentinel errors of a client for the answers no server-side sentinel
// stands for (the client package re-exports them).
var (
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
	// ErrUnauthorized means the server wants a valid bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the token may not do this (a write with a
	// read-only token).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited means the server refused the request because this
	// client exceeded its rate limit or the node is overloaded; nothing
	// was done and a later retry may succeed.
	ErrRateLimited = errors.New("rate limited")
)

// Sentinels returns the sentinel errors an answer with code stands for,
// so that a client's error for it matches them with errors.Is. A code of
// the membership routes, or one this version does not know (from a newer
// server), stands for ErrUnavailable; MemberSentinel maps the former.
func Sentinels(code string) []error {
	switch code {
	case CodeKeyNotFound:
		return []error{ErrKeyNotFound}
	case CodePreconditionFailed:
		return []error{ErrConflict}
	case CodeStateFull:
		return []error{ErrStateFull}
	case CodeWorkflowNotFound:
		return []error{ErrWorkflowNotFound}
	case CodeInvalidTransition:
		return []error{ErrInvalidTransition}
	case CodeNodeNotFound:
		return []error{ErrNodeNotFound}
	case CodeLeaseNotFound:
		return []error{ErrLeaseNotFound}
	case CodeTooManyLeases:
		return []error{ErrTooManyLeases}
	case CodeLeaseExists:
		return []error{ErrLeaseExists}
	case CodeInvalidLease:
		return []error{ErrInvalidLeaseID, ErrInvalidTTL}
	case CodeLocked:
		return []error{ErrLocked}
	case CodeNotHolder:
		return []error{ErrNotHolder}
	case CodeFenced:
		return []error{ErrFenced}
	case CodeTooManyLocks:
		return []error{ErrTooManyLocks}
	case CodeLockNotFound:
		return []error{ErrLockNotFound}
	case CodeStaleEpoch:
		return []error{ErrStaleEpoch}
	case CodeTaskNotFound:
		return []error{ErrTaskNotFound}
	case CodeQueueFull:
		return []error{ErrQueueFull}
	case CodeTaskNotDead:
		return []error{ErrTaskNotDead}
	case CodeScheduleNotFound:
		return []error{ErrScheduleNotFound}
	case CodeRequestExpired:
		return []error{ErrRequestExpired}
	case CodeInvalidKey:
		return []error{ErrInvalidKey}
	case CodeCompacted:
		return []error{ErrCompacted}
	case CodeInvalidJSON:
		return []error{ErrInvalidValue}
	case CodeTooLarge:
		return []error{ErrValueTooLarge, ErrTooLarge}
	case CodeNoLeader:
		return []error{ErrNoLeader}
	case CodeTimeout:
		return []error{ErrTimeout}
	case CodeBadRequest, CodeNotFound, CodeMethodNotAllowed:
		return []error{ErrBadRequest}
	case CodeUnauthorized:
		return []error{ErrUnauthorized}
	case CodeForbidden:
		return []error{ErrForbidden}
	case CodeRateLimited, CodeOverloaded, CodeTooManyWatches:
		return []error{ErrRateLimited}
	}
	return []error{ErrUnavailable}
}

// MemberSentinel returns the sentinel error a code of the membership
// routes stands for, nil for any other code.
func MemberSentinel(code string) error {
	switch code {
	case CodeMemberNotFound:
		return ErrUnknownMember
	case CodeMemberConflict:
		return ErrMemberConflict
	case CodeInvalidMember:
		return ErrInvalidMember
	case CodeRemoved:
		return ErrRemoved
	}
	return nil
}

// Refused reports whether an answer with code to a write says that the
// write was not applied (and will not be). Every other code, including
// timeout and unavailable, leaves a write's outcome unknown.
func Refused(code string) bool {
	switch code {
	case CodeKeyNotFound, CodeInvalidKey, CodeInvalidJSON, CodeTooLarge, CodeNoLeader,
		CodePreconditionFailed, CodeStateFull, CodeWorkflowNotFound, CodeInvalidTransition, CodeNodeNotFound,
		CodeLeaseNotFound, CodeTooManyLeases, CodeLeaseExists, CodeInvalidLease,
		CodeLocked, CodeNotHolder, CodeFenced, CodeTooManyLocks, CodeLockNotFound,
		CodeStaleEpoch, CodeTaskNotFound, CodeQueueFull, CodeTaskNotDead, CodeScheduleNotFound,
		CodeBadRequest, CodeNotFound, CodeMethodNotAllowed,
		CodeUnauthorized, CodeForbidden, CodeRateLimited, CodeOverloaded, CodeTooManyWatches:
		return true
	}
	return false
}
