package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Membership changes go through raft conf changes (ConfChangeV2): a new
// node is added as a learner, the leader promotes it to voter once its log
// is within Config.PromoteLag entries of the leader's, and several changes
// proposed together use joint consensus. Each change carries the members'
// metadata (name, peer address, HTTP address) in its context, so every
// node learns it from the log itself. The replicated membership state is
// Node.members, Node.names and Node.removed, changed only by the raft loop
// in log order.

// MemberOp is the kind of one membership change.
type MemberOp int

const (
	// AddLearner adds a new member as a learner: it receives the log but
	// does not vote or count toward quorum.
	AddLearner MemberOp = iota + 1
	// Promote makes a learner a voter.
	Promote
	// Remove removes a member for good; its id can never join again.
	Remove
)

// String names the op.
func (op MemberOp) String() string {
	switch op {
	case AddLearner:
		return "add-learner"
	case Promote:
		return "promote"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("MemberOp(%d)", int(op))
}

// MemberChange is one change of ChangeMembers. For AddLearner, Member
// carries the new member's name and addresses; for Promote and Remove only
// Member.ID is used.
type MemberChange struct {
	Op     MemberOp
	Member Member
}

// membershipState is the node's non-replicated membership machinery: conf
// change waiters and whether this node was removed.
type membershipState struct {
	// proposing serialises this node's conf change proposals: raft
	// refuses a conf change while another is pending, so proposing them
	// one at a time avoids refusing our own.
	proposing chan struct{}
	once      sync.Once

	waitMu  sync.Mutex
	waiters map[string]chan struct{}
	nextReq atomic.Uint64

	// selfRemoved is set when this node applies its own removal.
	selfRemoved atomic.Bool
	// nextAdvertise is when this node may next propose its own metadata.
	nextAdvertise time.Time
	// noticed rate-limits removal notices, by removed peer.
	noticeMu sync.Mutex
	noticed  map[uint64]time.Time
}

func (ms *membershipState) init() {
	ms.once.Do(func() {
		ms.proposing = make(chan struct{}, 1)
		ms.waiters = make(map[string]chan struct{})
	})
}

// confChangeContext is the Context of the conf changes this node proposes:
// a request id (so the proposer can wait for it to be applied) and the
// metadata of the members it adds or updates. Bootstrap entries carry a
// single memberContext instead.
type confChangeContext struct {
	Request string          `json:"req,omitempty"`
	Members []memberContext `json:"members,omitempty"`
}

// decodeConfContext reads either form of a conf change's context.
func decodeConfContext(b []byte) confChangeContext {
	var cc confChangeContext
	if len(b) == 0 {
		return cc
	}
	if err := json.Unmarshal(b, &cc); err == nil && (cc.Request != "" || len(cc.Members) > 0) {
		return cc
	}
	var mc memberContext
	if err := json.Unmarshal(b, &mc); err == nil && mc.Name != "" {
		cc.Members = []memberContext{mc}
	}
	return cc
}

// Removed reports whether this node has applied its own removal from the
// cluster. A removed node serves nothing (ErrRemoved) and never campaigns.
func (n *Node) Removed() bool { return n.membership.selfRemoved.Load() }

// Members returns the cluster's members as this node has applied them,
// sorted by name.
func (n *Node) Members() []Member {
	n.membersMu.RLock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m)
	}
	n.membersMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns the named member, or ErrUnknownMember.
func (n *Node) Member(id string) (Member, error) {
	n.membersMu.RLock()
	defer n.membersMu.RUnlock()
	if m, ok := n.members[RaftID(id)]; ok && m.ID == id {
		return m, nil
	}
	return Member{}, fmt.Errorf("member %q: %w", id, ErrUnknownMember)
}

// AddMember adds m as a learner and returns once the change is applied on
// this node. The leader promotes it to voter by itself once it has caught
// up (see Config.PromoteLag). Adding a member that already exists at the
// same peer address succeeds without change, so a joining node may retry.
//
// Errors: ErrMemberConflict if the id was removed before (ids are never
// reused) or exists at another address; ErrInvalidMember for a missing id
// or peer address; ErrNoLeader, ErrTimeout and ErrStopped as for Propose.
// ctx bounds only the wait.
func (n *Node) AddMember(ctx context.Context, m Member) (Member, error) {
	m.Voter = false
	if err := n.ChangeMembers(ctx, MemberChange{Op: AddLearner, Member: m}); err != nil {
		return Member{}, err
	}
	return n.Member(m.ID)
}

// PromoteMember makes the learner id a voter. Promoting a voter succeeds
// without change.
func (n *Node) PromoteMember(ctx context.Context, id string) error {
	return n.ChangeMembers(ctx, MemberChange{Op: Promote, Member: Member{ID: id}})
}

// RemoveMember removes id from the cluster for good. If id leads, it first
// hands leadership to another voter so the cluster does not wait out an
// election. Removing a member that was already removed succeeds.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if id != "" && n.Leader() == id {
		if target := n.transferTarget(RaftID(id)); target != raft.None {
			tctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeoutMax)
			_ = n.transferTo(tctx, target) // best effort: removal steps a leader down anyway
			cancel()
		}
	}
	return n.ChangeMembers(ctx, MemberChange{Op: Remove, Member: Member{ID: id}})
}

// ChangeMembers applies changes as one raft conf change: a single change
// directly, several at once through joint consensus. It returns once
// every change is in effect on this node. Changes already in effect (a
// member already added at the same address, a voter promoted, a member
// already removed) are skipped, so a caller may retry.
//
// ctx bounds only the wait: a change proposed before ctx ends may still be
// applied (ErrTimeout, outcome unknown).
func (n *Node) ChangeMembers(ctx context.Context, changes ...MemberChange) error {
	if len(changes) == 0 {
		return nil
	}
	if err := validateChanges(changes); err != nil {
		return err
	}
	if err := n.checkServing(); err != nil {
		return fmt.Errorf("change members: %w", err)
	}
	ms := &n.membership
	ms.init()
	select {
	case ms.proposing <- struct{}{}:
		defer func() { <-ms.proposing }()
	case <-ctx.Done():
		return fmt.Errorf("change members: %w: %w", ErrTimeout, ctx.Err())
	case <-n.stopc:
		return fmt.Errorf("change members: %w", ErrStopped)
	}
	// A conf change raft refuses (another is pending, or the cluster is
	// in a joint configuration) is turned into an empty entry and never
	// applied; so each attempt waits a bounded time, then re-checks what
	// is in effect and proposes what is not.
	attemptTimeout := max(500*time.Millisecond, 3*n.cfg.ElectionTimeoutMax)
	for {
		// Decide on the membership as of every committed change, not on
		// what this node happens to have applied.
		// (A node that removed itself has nothing left to read from.)
		if err := n.LinearizableRead(ctx); err != nil && !n.Removed() {
			return fmt.Errorf("change members: %w", err)
		}
		pending, err := n.pendingChanges(changes)
		if err != nil {
			return err
		}
		if len(pending) > 0 && n.Removed() {
			return fmt.Errorf("change members: %w", ErrRemoved)
		}
		if len(pending) == 0 {
			return nil
		}
		cc, req, err := n.buildConfChange(pending)
		if err != nil {
			return err
		}
		ch := make(chan struct{}, 1)
		ms.waitMu.Lock()
		ms.waiters[req] = ch
		ms.waitMu.Unlock()
		err = n.proposeConfChange(ctx, cc)
		if err == nil {
			t := time.NewTimer(attemptTimeout)
			select {
			case <-ch:
			case <-t.C:
			case <-ctx.Done():
				err = fmt.Errorf("change members: %w: %w", ErrTimeout, ctx.Err())
			case <-n.stopc:
				err = fmt.Errorf("change members: %w", ErrStopped)
			}
			t.Stop()
		}
		ms.waitMu.Lock()
		delete(ms.waiters, req)
		ms.waitMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// proposeConfChange hands cc to raft, waiting out a moment without a
// leader (a transfer in progress drops proposals) until ctx ends.
func (n *Node) proposeConfChange(ctx context.Context, cc *raftpb.ConfChangeV2) error {
	for {
		if err := n.checkServing(); err != nil && !errors.Is(err, ErrNoLeader) {
			return fmt.Errorf("change members: %w", err)
		}
		err := n.raft.ProposeConfChange(cc)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, raft.ErrStopped):
			return fmt.Errorf("change members: %w", ErrStopped)
		case ctx.Err() != nil:
			if n.leader.current() == raft.None {
				return fmt.Errorf("change members: %w", ErrNoLeader)
			}
			return fmt.Errorf("change members: %w: %w", ErrTimeout, ctx.Err())
		case !errors.Is(err, raft.ErrProposalDropped):
			return fmt.Errorf("change members: %w", err)
		}
		t := time.NewTimer(n.cfg.HeartbeatInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if n.leader.current() == raft.None {
				return fmt.Errorf("change members: %w", ErrNoLeader)
			}
			return fmt.Errorf("change members: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			t.Stop()
			return fmt.Errorf("change members: %w", ErrStopped)
		}
	}
}

func validateChanges(changes []MemberChange) error {
	seen := map[uint64]bool{}
	for _, c := range changes {
		id := c.Member.ID
		switch {
		case id == "":
			return fmt.Errorf("member id is empty: %w", ErrInvalidMember)
		case len(id) > 256:
			return fmt.Errorf("member id is longer than 256 bytes: %w", ErrInvalidMember)
		case c.Op != AddLearner && c.Op != Promote && c.Op != Remove:
			return fmt.Errorf("member %q: unknown change %v: %w", id, c.Op, ErrInvalidMember)
		case c.Op == AddLearner && c.Member.PeerAddr == "":
			return fmt.Errorf("member %q: peer address is required: %w", id, ErrInvalidMember)
		case seen[RaftID(id)]:
			return fmt.Errorf("member %q is changed twice in one request: %w", id, ErrInvalidMember)
		}
		seen[RaftID(id)] = true
	}
	return nil
}

// pendingChanges returns the changes not yet in effect, or why one cannot
// be made.
func (n *Node) pendingChanges(changes []MemberChange) ([]MemberChange, error) {
	n.membersMu.RLock()
	defer n.membersMu.RUnlock()
	var pending []MemberChange
	voters := 0
	for _, m := range n.members {
		if m.Voter {
			voters++
		}
	}
	for _, c := range changes {
		id := RaftID(c.Member.ID)
		_, removed := n.removed[id]
		cur, exists := n.members[id]
		if exists && cur.ID != c.Member.ID {
			return nil, fmt.Errorf("member %q: its raft id is taken by %q: %w", c.Member.ID, cur.ID, ErrMemberConflict)
		}
		switch c.Op {
		case AddLearner:
			switch {
			case removed:
				return nil, fmt.Errorf("member %q was removed and its id can never join again: %w", c.Member.ID, ErrMemberConflict)
			case exists && cur.PeerAddr != c.Member.PeerAddr:
				return nil, fmt.Errorf("member %q already exists at peer address %s: %w", c.Member.ID, cur.PeerAddr, ErrMemberConflict)
			case !exists:
				pending = append(pending, c)
			}
		case Promote:
			switch {
			case !exists:
				return nil, fmt.Errorf("member %q: %w", c.Member.ID, ErrUnknownMember)
			case !cur.Voter:
				pending = append(pending, c)
			}
		case Remove:
			switch {
			case removed:
			case !exists:
				return nil, fmt.Errorf("member %q: %w", c.Member.ID, ErrUnknownMember)
			default:
				if cur.Voter {
					voters--
				}
				pending = append(pending, c)
			}
		}
	}
	if voters <= 0 && len(pending) > 0 {
		return nil, fmt.Errorf("the change would remove every voter: %w", ErrMemberConflict)
	}
	return pending, nil
}

// buildConfChange encodes changes as one ConfChangeV2 whose context names
// a fresh request id and carries the added members' metadata.
func (n *Node) buildConfChange(changes []MemberChange) (*raftpb.ConfChangeV2, string, error) {
	req := fmt.Sprintf("%x-%d", n.proposerID, n.membership.nextReq.Add(1))
	ctx := confChangeContext{Request: req}
	cc := &raftpb.ConfChangeV2{}
	for _, c := range changes {
		var typ raftpb.ConfChangeType
		switch c.Op {
		case AddLearner:
			typ = raftpb.ConfChangeAddLearnerNode
			ctx.Members = append(ctx.Members, memberContext{Name: c.Member.ID, PeerAddr: c.Member.PeerAddr, HTTPAddr: c.Member.HTTPAddr})
		case Promote:
			typ = raftpb.ConfChangeAddNode
		case Remove:
			typ = raftpb.ConfChangeRemoveNode
		}
		cc.Changes = append(cc.Changes, &raftpb.ConfChangeSingle{Type: typ.Enum(), NodeId: new(RaftID(c.Member.ID))})
	}
	b, err := json.Marshal(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("change members: encode context: %w", err)
	}
	cc.Context = b
	return cc, req, nil
}

// applyMembershipChange applies one committed conf change: it drops the
// single changes the replicated membership refuses (an id removed before,
// a demotion of a voter, the removal of a non-member or of every voter),
// applies the rest to raft, updates the member table and the transport,
// wakes the proposer and publishes events. It runs on the raft loop, and
// decides only from replicated state, so every node decides alike.
func (n *Node) applyMembershipChange(cc *raftpb.ConfChangeV2) *raftpb.ConfState {
	ctx := decodeConfContext(cc.GetContext())
	meta := make(map[uint64]memberContext, len(ctx.Members))
	for _, mc := range ctx.Members {
		meta[RaftID(mc.Name)] = mc
	}

	n.membersMu.RLock()
	voters := map[uint64]bool{}
	learners := map[uint64]bool{}
	for id, m := range n.members {
		if m.Voter {
			voters[id] = true
		} else {
			learners[id] = true
		}
	}
	var kept []*raftpb.ConfChangeSingle
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		_, removed := n.removed[id]
		_, exists := n.members[id]
		ok := id != raft.None && !removed
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode:
			voters[id] = ok || voters[id]
		case raftpb.ConfChangeAddLearnerNode:
			ok = ok && !voters[id]
		case raftpb.ConfChangeRemoveNode:
			ok = ok && exists
			if ok {
				delete(voters, id)
			}
		case raftpb.ConfChangeUpdateNode:
			ok = ok && exists
		}
		if ok {
			kept = append(kept, ch)
		} else if id != raft.None {
			n.log.Warn("ignoring refused membership change", "change", ch.GetType().String(), "member", n.names[id])
		}
	}
	n.membersMu.RUnlock()

	var apply raftpb.ConfChangeI = cc
	switch {
	case len(cc.GetChanges()) == 0:
		// Leaving a joint configuration: nothing to check.
	case len(kept) == 0 || (len(voters) == 0 && len(n.members) > 0):
		// Every change refused (or the change would leave no voter): a
		// change of node 0 is raft's no-op.
		kept = nil
		apply = &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(0))}}}
	case len(kept) < len(cc.GetChanges()):
		apply = &raftpb.ConfChangeV2{Transition: cc.Transition, Changes: kept, Context: cc.Context}
	}
	cs := n.raft.ApplyConfChange(apply)

	var events []Event
	n.membersMu.Lock()
	for _, ch := range kept {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
			m, existed := n.members[id]
			if mc, ok := meta[id]; ok {
				m.ID = mc.Name
				if mc.PeerAddr != "" {
					m.PeerAddr = mc.PeerAddr
				}
				if mc.HTTPAddr != "" {
					m.HTTPAddr = mc.HTTPAddr
				}
			}
			if m.ID == "" {
				m.ID = n.names[id]
			}
			if m.ID == "" {
				m.ID = fmt.Sprintf("%x", id)
			}
			n.members[id] = m
			n.names[id] = m.ID
			if id != n.id && m.PeerAddr != "" && n.transport != nil {
				n.transport.AddPeer(id, m.ID, m.PeerAddr)
			}
			if !existed {
				mm := m
				events = append(events, Event{Type: EventNodeJoined, NodeID: m.ID, Member: &mm})
			}
		case raftpb.ConfChangeRemoveNode:
			name := n.names[id]
			delete(n.members, id)
			n.removed[id] = struct{}{}
			events = append(events, Event{Type: EventNodeLeft, NodeID: name})
			if id == n.id {
				defer n.markSelfRemoved("applied its removal")
			} else if n.transport != nil {
				n.removePeerLater(id)
			}
		}
	}
	for id, m := range n.members {
		voter := slices.Contains(cs.GetVoters(), id)
		if voter && learners[id] {
			mm := m
			mm.Voter = true
			events = append(events, Event{Type: EventNodePromoted, NodeID: m.ID, Member: &mm})
		}
		m.Voter = voter
		n.members[id] = m
	}
	n.membersMu.Unlock()

	if ctx.Request != "" {
		ms := &n.membership
		ms.init()
		ms.waitMu.Lock()
		ch := ms.waiters[ctx.Request]
		delete(ms.waiters, ctx.Request)
		ms.waitMu.Unlock()
		if ch != nil {
			ch <- struct{}{} // buffered: never blocks the loop
		}
	}
	for _, e := range events {
		n.log.Info("membership changed", "event", string(e.Type), "member", e.NodeID)
		n.events.Publish(e)
	}
	return cs
}

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
	n.membersMu.RLock()
	_, removed := n.removed[from]
	_, member := n.members[from]
	n.membersMu.RUnlock()
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
	if ms.noticed == nil {
		ms.noticed = make(map[uint64]time.Time)
	}
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

// joinExisting starts raft for a node joining a running cluster with empty
// storage: no bootstrap entries; the leader replicates the log to it, as
// in etcd's raftexample.
func (n *Node) joinExisting(rc *raft.Config) error {
	if cs, ok := n.storage.(ClusterIDStore); ok && n.cfg.ClusterID != 0 {
		if err := cs.SetClusterID(n.cfg.ClusterID); err != nil {
			return fmt.Errorf("node: store cluster id: %w", err)
		}
	}
	n.clusterID = n.cfg.ClusterID
	n.log.Info("joining running cluster", "members", len(n.cfg.Peers)-1, "cluster", fmt.Sprintf("%x", n.clusterID))
	var err error
	if n.raft, err = newRaftNode(rc, nil); err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	return nil
}

// membershipLoop runs the membership chores: on the leader, promote
// learners that have caught up; on every node, make sure the replicated
// metadata has this node's current addresses (members refresh their peer
// addresses from it: the auto-discovery of the seed).
func (n *Node) membershipLoop() {
	defer n.wg.Done()
	t := time.NewTicker(2 * n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-n.stopc:
			return
		}
		if n.Removed() || n.leader.current() == raft.None {
			continue
		}
		if n.cfg.AutoPromote && n.IsLeader() {
			n.promoteCaughtUp()
		}
		n.advertiseSelf()
	}
}

// promoteCaughtUp promotes, in one conf change, every learner whose log is
// within PromoteLag entries of the leader's and that is recently active.
func (n *Node) promoteCaughtUp() {
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader || st.Progress == nil {
		return
	}
	last := st.Progress[n.id].Match
	var changes []MemberChange
	for id, pr := range st.Progress {
		if !pr.IsLearner || !pr.RecentActive || pr.Match == 0 || pr.Match+n.cfg.PromoteLag < last {
			continue
		}
		name := n.nameOf(id)
		if _, err := n.Member(name); err != nil {
			continue
		}
		changes = append(changes, MemberChange{Op: Promote, Member: Member{ID: name}})
	}
	if len(changes) == 0 {
		return
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Member.ID < changes[j].Member.ID })
	ctx, cancel := context.WithTimeout(n.runCtx, 5*n.cfg.ElectionTimeoutMax)
	defer cancel()
	if err := n.ChangeMembers(ctx, changes...); err != nil {
		n.log.Debug("promoting caught-up learners", "err", err)
		return
	}
	n.log.Info("promoted caught-up learners", "count", len(changes))
}

// advertiseSelf proposes an update of this node's metadata when the
// replicated one lacks or differs from its configured addresses. It does
// not wait; it tries again at most once a second.
func (n *Node) advertiseSelf() {
	peerAddr, httpAddr := n.cfg.Peers[n.cfg.ID], n.cfg.HTTPAddr
	n.membersMu.RLock()
	m, ok := n.members[n.id]
	n.membersMu.RUnlock()
	if !ok || ((peerAddr == "" || m.PeerAddr == peerAddr) && (httpAddr == "" || m.HTTPAddr == httpAddr)) {
		return
	}
	ms := &n.membership
	if time.Now().Before(ms.nextAdvertise) {
		return
	}
	// Members advertise at the same moment after a cluster starts, and
	// raft refuses all but one pending conf change: spread the retries.
	ms.nextAdvertise = time.Now().Add(time.Second + rand.N(time.Second))
	if peerAddr == "" {
		peerAddr = m.PeerAddr
	}
	b, err := json.Marshal(confChangeContext{Members: []memberContext{{Name: n.cfg.ID, PeerAddr: peerAddr, HTTPAddr: httpAddr}}})
	if err != nil {
		return
	}
	cc := &raftpb.ConfChangeV2{
		Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeUpdateNode.Enum(), NodeId: new(n.id)}},
		Context: b,
	}
	_ = n.raft.ProposeConfChange(cc) // retried on the next tick if refused
}
