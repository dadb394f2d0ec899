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
	"sort"
	"sync"
	"sync/atomic"

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
	// Set by NewNode and never changed after.
	cfg     Config
	id      uint64
	log     *slog.Logger
	raft    *raftNode
	storage LogStorage
	sm      StateMachine
	// proposerID tags this process's proposals so the loop can hand a
	// committed command's result to the goroutine waiting on it. It is
	// random per process start, so a restarted node never mistakes a
	// replayed entry for one of its new proposals.
	proposerID uint64
	// clusterID identifies the cluster (see ClusterID); 0 if the storage
	// cannot keep one.
	clusterID uint64
	// restarted is set when NewNode found state in storage; recoveredCommit
	// is the commit index stored then (see RecoveredMembers).
	restarted       bool
	recoveredCommit uint64

	// transport is set once, by Start; hasTransport then publishes it to
	// Status, which may be called before Start.
	transport    Transport
	hasTransport atomic.Bool

	// The parts of the node, one concern each. Each type's comment says
	// which goroutines may touch which of its fields.

	// pos is the raft position the Ready loop publishes (ready.go).
	pos position
	// leader is the leader this node knows of (leader.go).
	leader leaderState
	// proposals are proposed commands waiting for their results, and
	// forwarded ones waiting to be stepped again (propose.go).
	proposals proposals
	// reads batches linearizable reads into ReadIndex rounds (read.go).
	reads reads
	// members is the replicated member table (members.go).
	members memberTable
	// membership is the conf change machinery (membership.go).
	membership membership
	// snaps takes, writes and installs snapshots (node_snapshot.go).
	snaps snapshots
	// failover turns the leader's process going away into an election
	// (failover.go).
	failover failover
	// events is the feed of node events (events.go): published by the
	// Ready loop, and by whichever goroutine learns this node was removed.
	events Feed[Event]
	// counters feed Metrics (observe.go).
	counters nodeCounters

	// Lifecycle: Start, Stop and a fatal error (node.go).
	failure   atomic.Pointer[error]
	startOnce sync.Once
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
		failover:   failover{peerDown: make(chan uint64, 1)},
		members: memberTable{
			byID:        make(map[uint64]Member),
			names:       make(map[uint64]string),
			removed:     make(map[uint64]struct{}),
			keepLearner: make(map[uint64]struct{}),
		},
		stopc: make(chan struct{}),
	}
	n.proposals.init()
	n.reads.init()
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
		Storage:                   raftStorage{LogStorage: storage, snaps: &n.snaps},
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
	n.pos.applied.applied = rc.Applied
	// Status reports the stored term and commit index until a Ready
	// changes them (bug B4: a restarted node reported 0 for both).
	n.pos.term.Store(hs.GetTerm())
	n.pos.commit.Store(hs.GetCommit())
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
	// KeepLearner, on a learner's addition, keeps it a learner until it
	// is promoted explicitly (MemberChange.KeepLearner).
	KeepLearner bool `json:"keepLearner,omitempty"`
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
	case <-n.pos.applied.wait(n.recoveredCommit):
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

func (n *Node) checkServing() error {
	select {
	case <-n.stopc:
		return ErrStopped
	default:
	}
	if n.Removed() {
		return ErrRemoved
	}
	if n.storageStalled() {
		return ErrStorageStalled
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
	return n.pos.applied.index()
}

// Ready returns nil if the node is running and knows a leader.
func (n *Node) Ready() error { return n.checkServing() }

// Status returns a snapshot of the node's raft and membership state.
func (n *Node) Status() Status {
	lead, stalled := n.leader.current(), n.storageStalled()
	st := Status{
		NodeID:         n.cfg.ID,
		IsLeader:       lead == n.id && !stalled,
		StorageStalled: stalled,
		LeaderID:       n.nameOf(lead),
		Term:           n.pos.term.Load(),
		CommitIndex:    n.pos.commit.Load(),
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
