package consensus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

// leaderState is the leader this node knows of, as the Ready loop last
// learnt it from raft's SoftState. Any goroutine reads it; only the Ready
// loop sets it (observeLeader). changed is closed and replaced at each
// change, so goroutines waiting for a leader (awaitLeader, a proposal's
// retry) need no polling. Only leader.go touches these fields.
type leaderState struct {
	lead    atomic.Uint64 // raft.None when no leader is known
	mu      sync.Mutex
	changed chan struct{} // nil until someone waits
}

// current returns the known leader's raft id, or raft.None.
func (l *leaderState) current() uint64 { return l.lead.Load() }

// changes returns a channel closed at the next change of the known
// leader.
func (l *leaderState) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// set records lead as the leader and wakes the goroutines waiting for a
// change; it returns the previous leader. Ready loop only.
func (l *leaderState) set(lead uint64) (prev uint64) {
	if prev = l.lead.Swap(lead); prev != lead {
		l.mu.Lock()
		if l.changed != nil {
			close(l.changed)
			l.changed = nil
		}
		l.mu.Unlock()
	}
	return prev
}

// observeLeader records the leader of a Ready's SoftState; on a change it
// counts it, logs it and publishes its events. Ready loop only.
func (n *Node) observeLeader(lead uint64) {
	if prev := n.leader.set(lead); prev != lead {
		if lead != raft.None {
			n.counters.leaderChanges.Add(1)
		}
		n.log.Info("leader changed", "leader", n.nameOf(lead), "term", n.pos.term.Load())
		n.publishLeader(prev, lead)
	}
}

// IsLeader reports whether this node currently leads.
func (n *Node) IsLeader() bool { return n.leader.current() == n.id && !n.storageStalled() }

// Leader returns the current leader's name, or "" if none is known.
func (n *Node) Leader() string { return n.nameOf(n.leader.current()) }

// A leader change that the cluster makes on purpose (a transfer before a
// graceful stop, a removed leader stepping down) leaves the cluster
// without a known leader for about one round trip, and a leader
// transferring leadership drops proposals. Requests that arrive then wait
// for the new leader, up to one maximum election timeout, instead of
// failing with ErrNoLeader: a rolling restart fails no write for lack of a
// leader. (Proposals also retry what raft drops then: propose.go.)

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
		changed := n.leader.changes()
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
