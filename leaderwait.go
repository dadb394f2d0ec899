package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
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

// proposeEntry hands data to raft, trying again every tick, for at most
// ElectionTimeoutMax, while raft drops it (no leader known, a leadership
// transfer in progress, or the uncommitted tail full). A dropped proposal
// was not appended anywhere, so proposing it again is safe.
func (n *Node) proposeEntry(ctx context.Context, data []byte) error {
	var deadline time.Time
	for {
		err := n.raft.Propose(data)
		if !errors.Is(err, raft.ErrProposalDropped) || ctx.Err() != nil {
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(n.cfg.ElectionTimeoutMax)
		} else if time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(n.cfg.TickInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-n.stopc:
			t.Stop()
			return raft.ErrStopped
		}
	}
}

// stepForwarded steps a proposal a peer forwarded. If raft drops it
// because this leader is handing over, it is stepped again once the
// transfer is over: this node, now a follower, forwards it to the new
// leader. Bounded by one maximum election timeout.
func (n *Node) stepForwarded(m *raftpb.Message) {
	ctx, cancel := context.WithTimeout(n.runCtx, n.cfg.ElectionTimeoutMax)
	defer cancel()
	for {
		err := n.raft.Step(m)
		if !errors.Is(err, raft.ErrProposalDropped) {
			return // stepped, or given up: the proposer's caller times out
		}
		t := time.NewTimer(n.cfg.TickInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// awaitResult waits for the result of the proposal data, proposed while
// lead led, on ch. A proposal in flight when the leader changes may be
// lost (forwarded to a leader that stopped, or dropped as it handed over),
// so it is proposed again whenever a new leader appears: the entry
// carries its proposer id and sequence number, and the loop applies it
// once however many copies reach the log (dedup.go).
func (n *Node) awaitResult(ctx context.Context, ch <-chan any, data []byte, lead uint64) (any, error) {
	for {
		changed := n.membership.leaderChange()
		if now := n.leader.Load(); now != lead && now != raft.None {
			lead = now
			n.log.Debug("leader changed while a proposal was in flight; proposing it again", "leader", n.nameOf(now))
			_ = n.proposeEntry(ctx, data) // if dropped, the wait goes on
		}
		select {
		case r := <-ch:
			return r, nil
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("propose: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			return nil, fmt.Errorf("propose: %w", ErrStopped)
		}
	}
}
