package consensus

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus/internal/stages"
)

// StateMachine is the replicated application state a Node drives. The
// replicated key-value store (package kv) is one implementation.
type StateMachine interface {
	// Apply applies one committed command, in log order, and returns the
	// result handed to the proposer waiting on it (if it is on this node).
	// Apply is called from the raft loop only, never concurrently with
	// itself. It must be deterministic: the same commands in the same order
	// give the same state and results on every node (no clocks, randomness
	// or map order), and it must not fail on bad input other than by
	// returning an error result.
	Apply(index uint64, cmd []byte) any
}

// Node is one member of a raft cluster: it owns the etcd raft node and the
// single loop that drives it, turns proposals into committed commands
// applied to a StateMachine, and serves linearizable reads through
// ReadIndex. It knows neither the transport, nor the storage engine, nor
// the state machine's commands.
type Node struct {
	cfg       Config
	id        uint64
	log       *slog.Logger
	raft      *raftNode
	storage   LogStorage
	sm        StateMachine
	transport Transport

	// proposerID tags this process's proposals so the loop can hand a
	// committed command's result to the goroutine waiting on it. It is
	// random per process start, so a restarted node never mistakes a
	// replayed entry for one of its new proposals.
	proposerID uint64
	// proposals are proposed commands waiting for their results, and
	// forwarded ones waiting to be stepped again (propose.go).
	proposals proposals
	// counters feed Metrics (observe.go).
	counters nodeCounters

	// snaps takes, writes and installs snapshots (node_snapshot.go).
	snaps snapshots
	// failover turns the leader's process going away into an election
	// (failover.go).
	failover failover

	applied appliedWait
	// leader is the leader this node knows of (leader.go).
	leader leaderState
	// events is the feed of node events (events.go): published by the
	// Ready loop, and by whichever goroutine learns this node was removed.
	events      Feed[Event]
	term        atomic.Uint64
	commitIndex atomic.Uint64

	// reads batches linearizable reads into ReadIndex rounds (read.go).
	reads *reads

	// members is the replicated member table (members.go).
	members memberTable

	// clusterID identifies the cluster (see ClusterID); 0 if the storage
	// cannot keep one.
	clusterID uint64
	// restarted is set when NewNode found state in storage; recoveredCommit
	// is the commit index stored then (see RecoveredMembers).
	restarted       bool
	recoveredCommit uint64
	// membership is the conf change machinery (membership.go).
	membership membership

	failure   atomic.Pointer[error]
	startOnce sync.Once
	// hasTransport is set once Start has set transport, so that Status,
	// which may be called before Start, reads it safely.
	hasTransport atomic.Bool
	// closeOnce closes stopc (Stop or a fatal error, whichever is
	// first); stopOnce waits for the loops and stops raft. They are
	// apart so that a loop failing while Stop waits for it never waits
	// on Stop in turn.
	closeOnce sync.Once
	stopOnce  sync.Once
	stopc     chan struct{}
	// runCtx is cancelled when the node stops; it bounds Step calls made
	// on behalf of the transport.
	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
}

// NewNode creates a node over storage and sm. If storage is empty the node
// bootstraps a new cluster from cfg.Peers; otherwise it restarts from the
// stored log, term and vote. The node does not run until Start.
func NewNode(cfg Config, storage LogStorage, sm StateMachine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Peers = maps.Clone(cfg.Peers) // the node reads it while running
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger = logger.With("node", cfg.ID)
	var pid [8]byte
	if _, err := crand.Read(pid[:]); err != nil {
		return nil, fmt.Errorf("node: proposer id: %w", err)
	}
	n := &Node{
		cfg:        cfg,
		id:         RaftID(cfg.ID),
		log:        logger,
		storage:    storage,
		sm:         sm,
		proposerID: binary.BigEndian.Uint64(pid[:]),
		reads:      newReads(),
		failover:   failover{peerDown: make(chan uint64, 1)},
		members: memberTable{
			byID:    make(map[uint64]Member),
			names:   make(map[uint64]string),
			removed: make(map[uint64]struct{}),
		},
		stopc: make(chan struct{}),
	}
	n.proposals.init()
	n.membership.init()
	n.snaps.init(sm, cfg.Snapshots)
	n.runCtx, n.cancelRun = context.WithCancel(context.Background())
	for name := range cfg.Peers {
		n.members.names[RaftID(name)] = name
	}

	hs, cs, err := storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("node: read initial state: %w", err)
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("node: read last index: %w", err)
	}
	snap, err := storage.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("node: read snapshot: %w", err)
	}
	rc := &raft.Config{
		ID:                        n.id,
		ElectionTick:              cfg.electionTicks(),
		HeartbeatTick:             cfg.heartbeatTicks(),
		Storage:                   storage,
		Applied:                   snap.GetMetadata().GetIndex(),
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  cfg.MaxCommittedSizePerReady,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedEntriesSize,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxInflightBytes:          cfg.MaxInflightBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{logger},
	}
	n.applied.applied = rc.Applied
	// Status reports the stored term and commit index until a Ready
	// changes them (bug B4: a restarted node reported 0 for both).
	n.term.Store(hs.GetTerm())
	n.commitIndex.Store(hs.GetCommit())
	n.snaps.confState = proto.Clone(raftpb.EnsureConfState(cs)).(*raftpb.ConfState)
	if !raft.IsEmptySnap(snap) {
		if err := n.installSnapshot(snap.GetMetadata()); err != nil {
			return nil, err
		}
	}

	if raft.IsEmptyHardState(hs) && last == 0 && raft.IsEmptySnap(snap) {
		if cfg.Join {
			return n, n.joinExisting(rc)
		}
		if len(cfg.Peers) == 0 {
			return nil, errors.New("node: empty storage and no peers to bootstrap a cluster from")
		}
		peers, err := bootstrapPeers(cfg.Peers)
		if err != nil {
			return nil, err
		}
		// Without a place to keep it a restarted node could not know the
		// id, so such a node runs without one (0: the check is off).
		if cs, ok := storage.(ClusterIDStore); ok {
			n.clusterID = ClusterID(cfg.Peers)
			if err := cs.SetClusterID(n.clusterID); err != nil {
				return nil, fmt.Errorf("node: store cluster id: %w", err)
			}
		}
		logger.Info("bootstrapping new cluster", "peers", len(peers), "cluster", fmt.Sprintf("%x", n.clusterID))
		if n.raft, err = newRaftNode(rc, peers); err != nil {
			return nil, fmt.Errorf("node: start raft: %w", err)
		}
	} else {
		if cs, ok := storage.(ClusterIDStore); ok {
			if n.clusterID, err = cs.ClusterID(); err != nil {
				return nil, fmt.Errorf("node: read cluster id: %w", err)
			}
		}
		n.restarted, n.recoveredCommit = true, hs.GetCommit()
		logger.Info("restarting from storage", "term", hs.GetTerm(), "commit", hs.GetCommit(), "lastIndex", last)
		if n.raft, err = newRaftNode(rc, nil); err != nil {
			return nil, fmt.Errorf("node: start raft: %w", err)
		}
	}
	return n, nil
}

// memberContext is the metadata carried in a conf change's Context, so
// every node learns a member's name and address from the log itself.
type memberContext struct {
	Name     string `json:"name"`
	PeerAddr string `json:"peerAddr"`
	HTTPAddr string `json:"httpAddr,omitempty"`
}

// bootstrapPeers builds raft's initial peer list. Every node of a new
// cluster must produce identical bootstrap entries, so peers are sorted
// by raft id and their context is a deterministic encoding.
func bootstrapPeers(peers map[string]string) ([]raft.Peer, error) {
	out := make([]raft.Peer, 0, len(peers))
	for name, addr := range peers {
		ctx, err := json.Marshal(memberContext{Name: name, PeerAddr: addr})
		if err != nil {
			return nil, fmt.Errorf("node: encode member %q: %w", name, err)
		}
		out = append(out, raft.Peer{ID: RaftID(name), Context: ctx})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RecoveredMembers returns the members of the cluster a node restarted
// from storage belongs to: it waits (bounded by ctx) until the node has
// applied the committed log it found at NewNode, so the membership that
// log and its snapshot record is in place, then returns Members. ok is
// false, with no wait, for a node that started from empty storage (it
// bootstrapped from Config.Peers or joined). A restarted node ignores
// Config.Peers; callers compare them with these members to tell a user
// whose initial cluster list no longer applies.
func (n *Node) RecoveredMembers(ctx context.Context) (members []Member, ok bool, err error) {
	if !n.restarted {
		return nil, false, nil
	}
	select {
	case <-n.applied.wait(n.recoveredCommit):
		return n.Members(), true, nil
	case <-n.stopc:
		return nil, true, ErrStopped
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// Start connects the node to t and runs its loops. Peers named in the
// configuration are registered with t at once; members learnt from the
// log are added as their entries are applied.
func (n *Node) Start(t Transport) {
	n.startOnce.Do(func() {
		n.transport = t
		n.hasTransport.Store(true) // publishes n.transport to Status
		for name, addr := range n.cfg.Peers {
			if id := RaftID(name); id != n.id {
				t.AddPeer(id, name, addr)
			}
		}
		n.members.mu.RLock()
		for id, m := range n.members.byID {
			if id != n.id && m.PeerAddr != "" {
				t.AddPeer(id, m.ID, m.PeerAddr)
			}
		}
		n.members.mu.RUnlock()
		n.wg.Add(6)
		go n.membershipLoop()
		go n.failoverLoop()
		go n.forwardLoop()
		go n.tickLoop()
		go n.readLoop()
		go n.run()
	})
}

// Stop stops the node's loops and the raft node, and fails waiting
// callers with ErrStopped. It returns once they have stopped, also after
// a fatal error stopped the node. It does not close the transport or
// storage, which the caller owns. Safe to call more than once.
func (n *Node) Stop() {
	n.requestStop()
	n.waitStopped()
}

// requestStop closes stopc, once; it never blocks.
func (n *Node) requestStop() {
	n.closeOnce.Do(func() {
		close(n.stopc)
		n.cancelRun()
	})
}

// waitStopped waits for the loops, then stops raft, once; concurrent
// callers all return when that is done.
func (n *Node) waitStopped() {
	n.stopOnce.Do(func() {
		n.wg.Wait()
		n.raft.stop()
		stages.Dump(n.cfg.ID)
	})
}

// Done returns a channel closed when the node has been asked to stop,
// including after a fatal storage error (see Err).
func (n *Node) Done() <-chan struct{} { return n.stopc }

// Err returns the fatal error that stopped the node, or nil.
func (n *Node) Err() error {
	if p := n.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// tickLoop drives raft's logical clock. It runs apart from the Ready loop
// so a slow disk write never delays ticks: a leader that cannot reach a
// quorum still steps down on time (etcd-io/etcd#13527).
func (n *Node) tickLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.raft.Tick()
		case <-n.stopc:
			return
		}
	}
}

// run is the one loop that handles raft's Ready, in the order etcd raft's
// documentation requires: persist, send, apply, advance. Whoever steps
// raft wakes it (raftnode.go); it then drains every Ready raft has.
func (n *Node) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.raft.wake:
		case <-n.snaps.wake:
			n.snaps.wake = nil
			n.maybeSnapshot()
			continue
		case <-n.stopc:
			return
		}
		for {
			rd, ok := n.raft.ready()
			if !ok {
				break
			}
			if err := n.handleReady(rd); err != nil {
				n.fail(err)
				return
			}
			n.raft.advance(rd)
			select {
			case <-n.stopc:
				return
			default:
			}
		}
	}
}

// fail records a fatal error and stops the node without waiting for the
// loop (which is the caller).
func (n *Node) fail(err error) {
	n.log.Error("node stopping after fatal error", "err", err)
	n.failure.CompareAndSwap(nil, &err)
	n.requestStop()
	// The caller is one of the loops waitStopped waits for: finish the
	// stop from another goroutine (a Stop already under way does it).
	go n.waitStopped()
}

func (n *Node) handleReady(rd raft.Ready) error {
	// A leader that stays leader in the same term may send its appends
	// while it writes them (raft thesis 10.2.1): it counts its own copy
	// only once this Ready is saved, and a crash mid-write loses no vote.
	// Anything else (a role or term change, a follower's acks) must be
	// durable before its messages leave.
	n.markTraceClock()
	if stages.Enabled {
		markEntries("ready", rd.Entries)
		markEntries("commit_ready", rd.CommittedEntries)
	}
	sendFirst := rd.SoftState == nil && n.IsLeader() &&
		(raft.IsEmptyHardState(rd.HardState) || rd.HardState.GetTerm() == n.term.Load())
	if sendFirst && len(rd.Messages) > 0 {
		n.transport.Send(rd.Messages)
		if stages.Enabled {
			markMessages("send", rd.Messages)
		}
		// Let the transport's writers, just woken, put the appends on the
		// wire before this goroutine blocks in fsync. Otherwise they wait
		// in this thread's run queue until the runtime hands it to another
		// thread, which took ~100 us per write (p50, one writer) here;
		// yielding took ~5 us. Without entries to sync (a commit), the
		// loop goes on to apply instead: its answers are the urgent part.
		if len(rd.Entries) > 0 {
			runtime.Gosched()
		}
	}
	saveStart := time.Now()
	if err := n.storage.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return fmt.Errorf("node: save raft state: %w", err)
	}
	if n.cfg.Observer != nil {
		n.cfg.Observer.StorageSaved(time.Since(saveStart))
	}
	if stages.Enabled {
		markEntries("saved", rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.GetTerm())
		n.commitIndex.Store(rd.HardState.GetCommit())
	}
	if rd.SoftState != nil {
		n.observeLeader(rd.SoftState.Lead)
	}
	if !sendFirst && len(rd.Messages) > 0 {
		n.transport.Send(rd.Messages)
		if stages.Enabled {
			markMessages("send", rd.Messages)
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The leader's snapshot replaces the state; its data arrived
		// beside the MsgSnap (ReceiveSnapshot) and is in the store.
		if err := n.installSnapshot(rd.Snapshot.GetMetadata()); err != nil {
			return err
		}
	}
	for _, rs := range rd.ReadStates {
		n.reads.offer(rs)
	}
	if len(rd.CommittedEntries) > 0 {
		if err := n.applyEntries(rd.CommittedEntries); err != nil {
			return err
		}
	}
	// Also without new entries if a member was added: that snapshot may
	// have waited for one in flight to finish.
	if len(rd.CommittedEntries) > 0 || n.snaps.afterAdd {
		n.maybeSnapshot()
	}
	return nil
}

func (n *Node) applyEntries(ents []*raftpb.Entry) error {
	var last, applied uint64
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryNormal:
			if n.applyCommand(e) {
				applied++
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return fmt.Errorf("node: decode conf change at index %d: %w", e.GetIndex(), err)
			}
			n.applyConfChange(cc.AsV2())
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				return fmt.Errorf("node: decode conf change at index %d: %w", e.GetIndex(), err)
			}
			n.applyConfChange(&cc)
		}
		last = e.GetIndex()
		n.snaps.bytes += uint64(len(e.GetData()))
	}
	n.applied.advance(last)
	if stages.Enabled {
		stages.Mark("applied", last)
	}
	n.counters.entriesCommitted.Add(uint64(len(ents)))
	n.counters.entriesApplied.Add(applied)
	return nil
}

// applyCommand applies a committed normal entry and reports whether it
// reached the state machine (not empty, unknown or a duplicate).
func (n *Node) applyCommand(e *raftpb.Entry) bool {
	data := e.GetData()
	if len(data) == 0 {
		return false // a new leader's empty entry
	}
	proposer, seq, cmd, ok := decodeEntry(data)
	if !ok {
		// Every node sees the same bytes and skips them alike.
		n.log.Warn("skipping entry with unknown format", "index", e.GetIndex())
		return false
	}
	if !n.proposals.dedup.firstTime(proposer, seq, e.GetIndex()) {
		n.log.Debug("skipping duplicate proposal", "index", e.GetIndex())
		return false
	}
	var start time.Time
	if n.cfg.Observer != nil {
		start = time.Now()
	}
	result := n.sm.Apply(e.GetIndex(), cmd)
	// Observed before the waiter hears of it: whoever sees a write
	// acknowledged can find its apply in the metrics.
	if n.cfg.Observer != nil {
		n.cfg.Observer.CommandApplied(time.Since(start))
	}
	if proposer == n.proposerID {
		n.proposals.complete(seq, e.GetIndex(), result, n.counters.readyAt)
	}
	return true
}

// applyConfChange applies a committed conf change (see
// applyMembershipChange in membership.go), records the new
// configuration for snapshots and returns it.
func (n *Node) applyConfChange(cc *raftpb.ConfChangeV2) *raftpb.ConfState {
	cs := n.applyMembershipChange(cc)
	n.snaps.confChanged(cs, cc)
	return cs
}

func (n *Node) checkServing() error {
	select {
	case <-n.stopc:
		return ErrStopped
	default:
	}
	if n.membership.selfRemoved.Load() {
		return ErrRemoved
	}
	if n.leader.current() == raft.None {
		return ErrNoLeader
	}
	return nil
}

// Deliver implements MessageHandler: it steps messages received from
// peers into raft. Messages addressed to another node are dropped.
func (n *Node) Deliver(msgs []*raftpb.Message) {
	if stages.Enabled {
		markMessages("recv", msgs)
	}
	step := msgs[:0:0]
	for _, m := range msgs {
		if m.GetTo() != n.id || m.GetFrom() == raft.None || n.ignoreFrom(m) {
			continue
		}
		// raft treats an empty forwarded proposal as an internal bug and
		// panics; from the network it is only garbage.
		if m.GetType() == raftpb.MsgProp {
			if len(m.GetEntries()) == 0 {
				n.log.Warn("dropping empty proposal from peer", "from", n.nameOf(m.GetFrom()))
				continue
			}
			// Stepped here unless raft drops it (a transfer in
			// progress); forwardLoop retries that without holding up
			// this delivery.
			if err := n.raft.Step(m); errors.Is(err, raft.ErrProposalDropped) {
				n.proposals.queueForwarded(m)
			}
			continue
		}
		step = append(step, m)
	}
	if len(step) > 0 {
		_ = n.raft.Step(step...) // fails only once the node has stopped
	}
}

// ReportUnreachable implements MessageHandler.
func (n *Node) ReportUnreachable(id uint64) { n.raft.ReportUnreachable(id) }

// ReportSnapshot implements MessageHandler.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	n.raft.ReportSnapshot(id, status)
}

// ClusterID returns the id of the cluster this node belongs to, or 0 if
// its storage does not keep one.
func (n *Node) ClusterID() uint64 { return n.clusterID }

// AppliedIndex returns the index of the last command applied locally.
func (n *Node) AppliedIndex() uint64 {
	n.applied.mu.Lock()
	defer n.applied.mu.Unlock()
	return n.applied.applied
}

// Ready returns nil if the node is running and knows a leader.
func (n *Node) Ready() error { return n.checkServing() }

// Status returns a snapshot of the node's raft and membership state.
func (n *Node) Status() Status {
	lead := n.leader.current()
	st := Status{
		NodeID:         n.cfg.ID,
		IsLeader:       lead == n.id,
		LeaderID:       n.nameOf(lead),
		Term:           n.term.Load(),
		CommitIndex:    n.commitIndex.Load(),
		AppliedIndex:   n.AppliedIndex(),
		SnapshotIndex:  n.snaps.index.Load(),
		Members:        n.Members(),
		ConnectedPeers: []string{},
		Removed:        n.Removed(),
	}
	if n.hasTransport.Load() {
		for _, id := range n.transport.ConnectedPeers() {
			st.ConnectedPeers = append(st.ConnectedPeers, n.nameOf(id))
		}
		sort.Strings(st.ConnectedPeers)
	}
	return st
}

// markEntries and markMessages record stage marks (internal/stages) for
// entries, and for appends and their acknowledgements by the last index
// they cover: "<prefix>_app" and "<prefix>_resp".
func markEntries(stage string, ents []*raftpb.Entry) {
	for _, e := range ents {
		stages.Mark(stage, e.GetIndex())
	}
}

func markMessages(prefix string, msgs []*raftpb.Message) {
	for _, m := range msgs {
		switch m.GetType() {
		case raftpb.MsgApp:
			if k := len(m.GetEntries()); k > 0 {
				stages.Mark(prefix+"_app", m.GetEntries()[k-1].GetIndex())
			}
		case raftpb.MsgAppResp:
			stages.Mark(prefix+"_resp", m.GetIndex())
		}
	}
}
