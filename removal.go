package consensus

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// A removed member takes no further part: a node that applies its own
// removal, or is told of it, stops serving and drops every raft message
// (membership.selfRemoved), and members drop messages from removed ids
// (memberTable.removed) and tell their sender it was removed.

// Removed reports whether this node has applied its own removal from the
// cluster. A removed node serves nothing (ErrRemoved) and never campaigns.
func (n *Node) Removed() bool { return n.membership.selfRemoved.Load() }

// removedPeerGrace is how long the transport keeps a removed peer, so that
// a removed node that missed its removal (it was cut off when it was
// applied) and speaks up is told (see noticeRemoved).
const removedPeerGrace = 10 * time.Second

// removedNotice is the Context of the message that tells a node it was
// removed. It travels as a MsgUnreachable, a type raft ignores when it
// comes from the network, so a node that does not know the notice drops
// it.
const removedNotice = "consensus:removed"

// removePeerLater forgets a removed peer after removedPeerGrace.
func (n *Node) removePeerLater(id uint64) {
	t := n.transport
	time.AfterFunc(removedPeerGrace, func() {
		select {
		case <-n.stopc:
		default:
			t.RemovePeer(id)
		}
	})
}

// ignoreFrom reports whether the raft message m must be dropped: its
// sender was removed from the cluster (which is then told so, see
// noticeRemoved), or this node was. It also consumes removal notices.
func (n *Node) ignoreFrom(m *raftpb.Message) bool {
	if n.membership.selfRemoved.Load() {
		return true
	}
	from := m.GetFrom()
	n.members.mu.RLock()
	_, removed := n.members.removed[from]
	_, member := n.members.byID[from]
	n.members.mu.RUnlock()
	if removed {
		n.noticeRemoved(from)
		return true
	}
	if m.GetType() == raftpb.MsgUnreachable {
		// Never stepped: raft ignores local message types from peers.
		if string(m.GetContext()) == removedNotice && member {
			n.markSelfRemoved(fmt.Sprintf("told by %s", n.nameOf(from)))
		}
		return true
	}
	return false
}

// noticeRemoved tells the removed peer id, at most once per election
// timeout, that it was removed: it may have missed the entry (cut off when
// it committed), and nothing else would ever tell it.
func (n *Node) noticeRemoved(id uint64) {
	ms := &n.membership
	ms.noticeMu.Lock()
	last, ok := ms.noticed[id]
	now := time.Now()
	if ok && now.Sub(last) < n.cfg.ElectionTimeoutMax {
		ms.noticeMu.Unlock()
		return
	}
	ms.noticed[id] = now
	ms.noticeMu.Unlock()
	if n.transport != nil {
		n.transport.Send([]*raftpb.Message{{Type: raftpb.MsgUnreachable.Enum(), From: new(n.id), To: new(id), Context: []byte(removedNotice)}})
	}
}

// markSelfRemoved makes this node stop taking part: it serves nothing,
// drops every raft message and, being outside the configuration, never
// campaigns. It is local state; the replicated removal is in the log.
func (n *Node) markSelfRemoved(why string) {
	if n.membership.selfRemoved.Swap(true) {
		return
	}
	n.log.Warn("this node was removed from the cluster; it no longer takes part and serves nothing", "how", why)
	n.events.Publish(Event{Type: EventRemoved, NodeID: n.cfg.ID})
}
