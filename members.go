package consensus

import (
	"fmt"
	"sort"
	"sync"

	"go.etcd.io/raft/v3"
)

// memberTable is the replicated membership: every member by raft id, the
// names of members past and present, and the ids removed for good. It
// changes only in log order, on the Ready loop (applyMembershipChange,
// and restoreMembers when a snapshot is installed; NewNode fills it
// before the loop runs), under mu's write lock; any goroutine reads it under mu's read lock. It is kept in
// snapshots (encodeNodeState).
type memberTable struct {
	mu   sync.RWMutex
	byID map[uint64]Member
	// names keeps the name of every raft id seen, so a removed member
	// still has one in logs and events.
	names map[uint64]string
	// removed holds the raft ids of members removed from the cluster:
	// they are never reused, and messages from them are ignored.
	removed map[uint64]struct{}
	// keepLearner holds the raft ids of learners added to stay learners
	// until PromoteMember (MemberChange.KeepLearner): the leader does not
	// promote them when they catch up.
	keepLearner map[uint64]struct{}
}

// Members returns the cluster's members as this node has applied them,
// sorted by name.
func (n *Node) Members() []Member {
	n.members.mu.RLock()
	out := make([]Member, 0, len(n.members.byID))
	for _, m := range n.members.byID {
		out = append(out, m)
	}
	n.members.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns the named member, or ErrUnknownMember.
func (n *Node) Member(id string) (Member, error) {
	n.members.mu.RLock()
	defer n.members.mu.RUnlock()
	if m, ok := n.members.byID[RaftID(id)]; ok && m.ID == id {
		return m, nil
	}
	return Member{}, fmt.Errorf("member %q: %w", id, ErrUnknownMember)
}

// nameOf returns the name of the raft id id, its hex form if the id was
// never a member, or "" for raft.None.
func (n *Node) nameOf(id uint64) string {
	if id == raft.None {
		return ""
	}
	n.members.mu.RLock()
	defer n.members.mu.RUnlock()
	if name, ok := n.members.names[id]; ok {
		return name
	}
	return fmt.Sprintf("%x", id)
}
