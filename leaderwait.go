package consensus

import (
	"context"
	"errors"
	"time"
)

// A leader change that the cluster makes on purpose (a transfer before a
// graceful stop, a removed leader stepping down) leaves the cluster
// without a known leader for about one round trip, and a leader
// transferring leadership drops proposals. Requests that arrive then wait
// for the new leader, up to one maximum election timeout, instead of
// failing with ErrNoLeader: a rolling restart fails no write for lack of a
// leader.

// awaitLeader returns nil once this node knows a leader, ErrNoLeader if it
// knows none for ElectionTimeoutMax (or until ctx ends), and ErrStopped or
// ErrRemoved as checkServing does.
func (n *Node) awaitLeader(ctx context.Context) error {
	err := n.checkServing()
	if !errors.Is(err, ErrNoLeader) {
		return err
	}
	deadline := time.NewTimer(n.cfg.ElectionTimeoutMax)
	defer deadline.Stop()
	for {
		changed := n.membership.leaderChange()
		if err := n.checkServing(); !errors.Is(err, ErrNoLeader) {
			return err
		}
		select {
		case <-changed:
		case <-deadline.C:
			return ErrNoLeader
		case <-ctx.Done():
			return ErrNoLeader
		case <-n.stopc:
			return ErrStopped
		}
	}
}
