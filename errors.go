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
)
