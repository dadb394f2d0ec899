package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
// the member table (members.go), changed only by the Ready loop in log
// order.

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
	// UpdatePeer gives a member a new peer address: the others dial it
	// there from then on. Meant for a member that is stopped and will
	// restart at that address: a running member proposes its own
	// configured address again when the replicated one differs.
	UpdatePeer
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
	case UpdatePeer:
		return "update-peer"
	}
	return fmt.Sprintf("MemberOp(%d)", int(op))
}

// MemberChange is one change of ChangeMembers. For AddLearner, Member
// carries the new member's name and addresses; for UpdatePeer its name
// and new peer address; for Promote and Remove only Member.ID is used.
type MemberChange struct {
	Op     MemberOp
	Member Member
	// KeepLearner, for AddLearner, keeps the member a learner until a
	// Promote (etcd's learners): the leader does not promote it when it
	// catches up (Config.AutoPromote). It is replicated with the change.
	KeepLearner bool
}

// membership is the node's own membership machinery, apart from the
// replicated member table (memberTable): serialising and waiting for the
// conf changes this node proposes, knowing it was removed, advertising
// its addresses. Only membership.go and removal.go touch these fields
// (and Removed reads selfRemoved).
type membership struct {
	// proposing (buffered, 1) serialises this node's conf change
	// proposals: raft refuses a conf change while another is pending, so
	// proposing them one at a time avoids refusing our own.
	proposing chan struct{}

	// waiters are the proposers of conf changes by request id; the
	// Ready loop wakes one when its change is applied.
	waitMu  sync.Mutex
	waiters map[string]chan struct{}
	nextReq atomic.Uint64

	// selfRemoved is set when this node applies its own removal, or is
	// told of it; never cleared.
	selfRemoved atomic.Bool
	// nextAdvertise (membershipLoop only) is when this node may next
	// propose its own metadata.
	nextAdvertise time.Time
	// noticed rate-limits removal notices, by removed peer.
	noticeMu sync.Mutex
	noticed  map[uint64]time.Time
}

func (ms *membership) init() {
	ms.proposing = make(chan struct{}, 1)
	ms.waiters = make(map[string]chan struct{})
	ms.noticed = make(map[uint64]time.Time)
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
		case c.Op != AddLearner && c.Op != Promote && c.Op != Remove && c.Op != UpdatePeer:
			return fmt.Errorf("member %q: unknown change %v: %w", id, c.Op, ErrInvalidMember)
		case (c.Op == AddLearner || c.Op == UpdatePeer) && c.Member.PeerAddr == "":
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
	n.members.mu.RLock()
	defer n.members.mu.RUnlock()
	var pending []MemberChange
	voters := 0
	for _, m := range n.members.byID {
		if m.Voter {
			voters++
		}
	}
	for _, c := range changes {
		id := RaftID(c.Member.ID)
		_, removed := n.members.removed[id]
		cur, exists := n.members.byID[id]
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
		case UpdatePeer:
			switch {
			case !exists:
				return nil, fmt.Errorf("member %q: %w", c.Member.ID, ErrUnknownMember)
			case cur.PeerAddr != c.Member.PeerAddr:
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
			ctx.Members = append(ctx.Members, memberContext{Name: c.Member.ID, PeerAddr: c.Member.PeerAddr, HTTPAddr: c.Member.HTTPAddr, KeepLearner: c.KeepLearner})
		case Promote:
			typ = raftpb.ConfChangeAddNode
		case Remove:
			typ = raftpb.ConfChangeRemoveNode
		case UpdatePeer:
			typ = raftpb.ConfChangeUpdateNode
			ctx.Members = append(ctx.Members, memberContext{Name: c.Member.ID, PeerAddr: c.Member.PeerAddr})
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

	n.members.mu.RLock()
	voters := map[uint64]bool{}
	learners := map[uint64]bool{}
	for id, m := range n.members.byID {
		if m.Voter {
			voters[id] = true
		} else {
			learners[id] = true
		}
	}
	var kept []*raftpb.ConfChangeSingle
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		_, removed := n.members.removed[id]
		_, exists := n.members.byID[id]
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
			n.log.Warn("ignoring refused membership change", "change", ch.GetType().String(), "member", n.members.names[id])
		}
	}
	n.members.mu.RUnlock()

	var apply raftpb.ConfChangeI = cc
	switch {
	case len(cc.GetChanges()) == 0:
		// Leaving a joint configuration: nothing to check.
	case len(kept) == 0 || (len(voters) == 0 && len(n.members.byID) > 0):
		// Every change refused (or the change would leave no voter): a
		// change of node 0 is raft's no-op.
		kept = nil
		apply = &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(0))}}}
	case len(kept) < len(cc.GetChanges()):
		apply = &raftpb.ConfChangeV2{Transition: cc.Transition, Changes: kept, Context: cc.Context}
	}
	cs := n.raft.ApplyConfChange(apply)

	var events []Event
	n.members.mu.Lock()
	for _, ch := range kept {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
			m, existed := n.members.byID[id]
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
				m.ID = n.members.names[id]
			}
			if m.ID == "" {
				m.ID = fmt.Sprintf("%x", id)
			}
			n.members.byID[id] = m
			n.members.names[id] = m.ID
			if mc, ok := meta[id]; ok && mc.KeepLearner && ch.GetType() == raftpb.ConfChangeAddLearnerNode && !existed {
				n.members.keepLearner[id] = struct{}{}
			} else if ch.GetType() == raftpb.ConfChangeAddNode {
				delete(n.members.keepLearner, id)
			}
			if id != n.id && m.PeerAddr != "" && n.transport != nil {
				n.transport.AddPeer(id, m.ID, m.PeerAddr)
			}
			if !existed {
				mm := m
				events = append(events, Event{Type: EventNodeJoined, NodeID: m.ID, Member: &mm})
			}
		case raftpb.ConfChangeRemoveNode:
			name := n.members.names[id]
			delete(n.members.byID, id)
			delete(n.members.keepLearner, id)
			n.members.removed[id] = struct{}{}
			events = append(events, Event{Type: EventNodeLeft, NodeID: name})
			if id == n.id {
				defer n.markSelfRemoved("applied its removal")
			} else if n.transport != nil {
				n.removePeerLater(id)
			}
		}
	}
	for id, m := range n.members.byID {
		voter := slices.Contains(cs.GetVoters(), id)
		if voter && learners[id] {
			mm := m
			mm.Voter = true
			events = append(events, Event{Type: EventNodePromoted, NodeID: m.ID, Member: &mm})
		}
		m.Voter = voter
		n.members.byID[id] = m
	}
	n.members.mu.Unlock()

	if ctx.Request != "" {
		ms := &n.membership
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
// within PromoteLag entries of the leader's and that is recently active,
// but those added to stay learners (MemberChange.KeepLearner).
func (n *Node) promoteCaughtUp() {
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader || st.Progress == nil {
		return
	}
	last := st.Progress[n.id].Match
	n.members.mu.RLock()
	keep := maps.Clone(n.members.keepLearner)
	n.members.mu.RUnlock()
	var changes []MemberChange
	for id, pr := range st.Progress {
		if _, kept := keep[id]; kept || !pr.IsLearner || !pr.RecentActive || pr.Match == 0 || pr.Match+n.cfg.PromoteLag < last {
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
	n.members.mu.RLock()
	m, ok := n.members.byID[n.id]
	n.members.mu.RUnlock()
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
