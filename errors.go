package consensus

import (
	"errors"

	"github.com/unrdf/consensus/api"
)

// Sentinel errors returned by Node. Callers check them with errors.Is; they
// may be wrapped with context about where they happened. Those a server
// answers with an error code are defined in api, so that a client matches
// them without importing this package.
var (
	// ErrNoLeader means the cluster has no known leader right now (an
	// election is under way or a quorum is unreachable). The request was not
	// applied; it is safe to retry after a short wait.
	ErrNoLeader = api.ErrNoLeader

	// ErrTimeout means the caller's deadline passed after the proposal was
	// handed to raft. The outcome is unknown: the command may or may not be
	// applied later. This is distinct from a rejection.
	ErrTimeout = api.ErrTimeout

	// ErrStopped means the node has been stopped.
	ErrStopped = errors.New("node stopped")

	// ErrStorageStalled means this node's storage write has run for longer
	// than Config.StallBound: the node serves nothing until it completes.
	// Nothing was proposed; another member can serve the request.
	ErrStorageStalled = errors.New("storage stalled: a write to this node's disk has not completed; ask another member")

	// ErrTooLarge means a proposal exceeds the configured command size cap.
	ErrTooLarge = api.ErrTooLarge

	// ErrRemoved means this node was removed from the cluster: it takes no
	// further part and serves nothing. Send requests to a member.
	ErrRemoved = api.ErrRemoved

	// ErrUnknownMember means no member has the given id.
	ErrUnknownMember = api.ErrUnknownMember

	// ErrMemberConflict means a membership change conflicts with the
	// membership: the id was removed before (ids are never reused), exists
	// at another address, is a learner where a voter is needed, or the
	// change would leave no voter.
	ErrMemberConflict = api.ErrMemberConflict

	// ErrInvalidMember means a membership request is malformed (an empty
	// id, a missing peer address).
	ErrInvalidMember = api.ErrInvalidMember

	// ErrNotLeader means the request must be made on the leader (a
	// leadership transfer to a third node; see Node.TransferLeadershipTo).
	ErrNotLeader = errors.New("not the leader")

	// ErrLeadershipLost means a proposal bound to a term of this node's
	// leadership (InTerm) was not applied, and never will be: the term
	// ended before its entry was committed.
	ErrLeadershipLost = errors.New("leadership lost before the proposal was committed")
)
