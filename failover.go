package consensus

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

// failover is fast failover (Config.FastFailover): the transport reports
// a peer whose process is gone (PeerDown, on its goroutine); if it led,
// failoverLoop makes this node campaign without waiting out an election
// timeout. peerDown holds at most one pending report; campaigns counts
// the elections failoverLoop started. Only failover.go touches these
// fields.
type failover struct {
	peerDown  chan uint64 // buffered (1): a report while one is pending is dropped
	campaigns atomic.Uint64
}

// PeerDown implements transport.PeerObserver: the transport found nothing
// listening at peer id's address. If id is the leader, the node fails over
// at once (see Config.FastFailover). It never blocks.
func (n *Node) PeerDown(id uint64) {
	if !n.cfg.FastFailover || id != n.leader.current() || id == n.id {
		return
	}
	select {
	case n.failover.peerDown <- id:
	default: // a failover is already pending
	}
}

// FastFailovers returns how many campaigns this node started because the
// leader's process was found gone.
func (n *Node) FastFailovers() uint64 { return n.failover.campaigns.Load() }

// failoverLoop turns PeerDown of the leader into an election: after a
// staggered wait (failoverDelay) it forgets the leader,
// which lets this node grant pre-votes at once and lets its own pre-vote
// through at peers that forgot it too, and campaigns. If the leader is in
// fact alive and reaches a quorum, the pre-vote fails at the peers that
// still hear it (CheckQuorum's lease) and nothing changes: no term bump,
// no disruption.
func (n *Node) failoverLoop() {
	defer n.wg.Done()
	for {
		var dead uint64
		select {
		case dead = <-n.failover.peerDown:
		case <-n.stopc:
			return
		}
		if n.leader.current() != dead {
			continue
		}
		// Forget at once (it only drops the leader's lease here, so this
		// node can grant a survivor's pre-vote without delay), campaign
		// after a staggered wait unless someone else has won by then.
		n.log.Info("leader's process is gone; failing over", "leader", n.nameOf(dead))
		if err := n.raft.ForgetLeader(); err != nil {
			continue
		}
		if d := n.failoverDelay(dead); d > 0 {
			wait := time.NewTimer(d)
			select {
			case <-wait.C:
			case <-n.stopc:
				wait.Stop()
				return
			}
		}
		if lead := n.leader.current(); lead != raft.None && lead != dead {
			continue // another survivor already won
		}
		if err := n.raft.Campaign(); err == nil {
			n.failover.campaigns.Add(1)
		}
	}
}

// failoverDelay staggers the survivors' campaigns so they rarely split the
// vote: every survivor sees the leader's sockets close within the same
// millisecond, and two that campaign together both lose. Survivors take
// turns by raft id (the lowest first), FailoverJitter apart, with a little
// randomness on top.
func (n *Node) failoverDelay(dead uint64) time.Duration {
	rank := 0
	n.members.mu.RLock()
	for id, m := range n.members.byID {
		if m.Voter && id != dead && id < n.id {
			rank++
		}
	}
	n.members.mu.RUnlock()
	if n.cfg.FailoverJitter <= 0 {
		return 0
	}
	return time.Duration(rank)*n.cfg.FailoverJitter + rand.N(n.cfg.FailoverJitter/4+1)
}
