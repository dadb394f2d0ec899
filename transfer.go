package consensus

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
)

// Leadership transfer keeps no state of its own: raft holds the transfer
// in progress (and abandons one its target does not complete within an
// election timeout), so the callers here ask it, and ask again, until
// the leader they wait for is known (leaderState). A leader hands over
// before a graceful stop (TransferLeadership) and before its own removal
// (RemoveMember); an operator moves it on purpose (TransferLeadershipTo).

// TransferLeadership hands leadership to the voter whose log is most
// caught up and waits until another node leads or ctx ends. It is what a
// graceful stop of the leader does first, so the cluster does not wait out
// an election timeout. It returns nil at once on a node that is not the
// leader or has no other voter.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if !n.IsLeader() {
		return nil
	}
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	var asked time.Time
	for n.IsLeader() {
		// Raft abandons a transfer its target does not complete within an
		// election timeout (it may still be catching up): ask again, of
		// whoever is most caught up by then.
		if time.Since(asked) >= n.cfg.ElectionTimeoutMax {
			target := n.transferTarget(n.id)
			if target == 0 {
				return nil
			}
			n.log.Info("transferring leadership", "to", n.nameOf(target))
			n.raft.TransferLeadership(target)
			asked = time.Now()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("transfer leadership: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			return ErrStopped
		}
	}
	// Wait until the new leader is known here too: its messages are
	// flowing, so a stop right after this does not race the other
	// followers hearing of it (one that has not may take the closing
	// sockets for a crash and fail over for nothing).
	for n.leader.current() == raft.None {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil // handed over; only the confirmation is missing
		case <-n.stopc:
			return ErrStopped
		}
	}
	return nil
}

// TransferLeadershipTo hands leadership to the voter named id and waits
// until it leads or ctx ends. An empty id means the most caught-up voter
// (see TransferLeadership) when called on the leader; on a follower it
// means this node. On a follower, id must be "" or this node (raft's
// transfer request then comes from its transferee, as the transport
// requires of every message); otherwise it fails with ErrNotLeader and the
// caller asks the leader. It returns the new leader's name.
func (n *Node) TransferLeadershipTo(ctx context.Context, id string) (string, error) {
	if err := n.checkServing(); err != nil {
		return "", fmt.Errorf("transfer leadership: %w", err)
	}
	var target uint64
	switch {
	case id != "":
		m, err := n.Member(id)
		if err != nil {
			return "", fmt.Errorf("transfer leadership: %w", err)
		}
		if !m.Voter {
			return "", fmt.Errorf("transfer leadership: %q is a learner: %w", id, ErrMemberConflict)
		}
		target = RaftID(id)
		if !n.IsLeader() && target != n.id && n.leader.current() != target {
			return "", fmt.Errorf("transfer leadership to %q: ask the leader %s: %w", id, n.Leader(), ErrNotLeader)
		}
	case n.IsLeader():
		target = n.transferTarget(n.id)
		if target == raft.None {
			return "", fmt.Errorf("transfer leadership: no other voter: %w", ErrMemberConflict)
		}
	default:
		target = n.id
	}
	if err := n.transferTo(ctx, target); err != nil {
		return "", err
	}
	return n.nameOf(target), nil
}

// transferTarget picks a voter other than not to lead: on the leader the
// most caught-up one, elsewhere this node if it votes, else the voter with
// the lowest id.
func (n *Node) transferTarget(not uint64) uint64 {
	if n.IsLeader() {
		st := n.raft.Status()
		var target, best uint64
		for id, pr := range st.Progress {
			if id == not || pr.IsLearner {
				continue
			}
			if target == 0 || pr.Match > best || (pr.Match == best && id < target) {
				target, best = id, pr.Match
			}
		}
		return target
	}
	n.members.mu.RLock()
	defer n.members.mu.RUnlock()
	if m, ok := n.members.byID[n.id]; ok && m.Voter && n.id != not {
		return n.id
	}
	var target uint64
	for id, m := range n.members.byID {
		if m.Voter && id != not && (target == 0 || id < target) {
			target = id
		}
	}
	return target
}

// transferTo asks raft to move leadership to target and waits until target
// leads, retrying the request every election timeout (raft abandons a
// transfer that does not finish within one).
func (n *Node) transferTo(ctx context.Context, target uint64) error {
	if n.leader.current() == target {
		return nil
	}
	n.log.Info("transferring leadership", "to", n.nameOf(target))
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	var asked time.Time
	for n.leader.current() != target {
		if time.Since(asked) > n.cfg.ElectionTimeoutMax {
			if lead := n.leader.current(); lead != raft.None {
				n.raft.TransferLeadership(target)
			}
			asked = time.Now()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("transfer leadership: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			return fmt.Errorf("transfer leadership: %w", ErrStopped)
		}
	}
	return nil
}
