package consensus

import "errors"

// Sentinel errors returned by Node. Callers check them with errors.Is; they
// may be wrapped with context about where they happened.
var (
	// ErrNoLeader means the cluster has no known leader right now (an
	// election is under way or a quorum is unreachable). The request was not
	// applied; it is safe to retry after a short wait.
	ErrNoLeader = errors.New("no leader")

	// ErrTimeout means the caller's deadline passed after the proposal was
	// handed to raft. The outcome is unknown: the command may or may not be
	// applied later. This is distinct from a rejection.
	ErrTimeout = errors.New("timed out, outcome unknown")

	// ErrStopped means the node has been stopped.
	ErrStopped = errors.New("node stopped")

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

	// ErrNotLeader means the request must be made on the leader (a
	// leadership transfer to a third node; see Node.TransferLeadershipTo).
	ErrNotLeader = errors.New("not the leader")
)
