package consensus

import (
	"errors"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/unrdf/consensus/internal/stages"
)

// raftNode is the etcd raft state machine (a RawNode) a Node drives,
// behind a mutex. The goroutines that feed raft (proposers, the
// transport's readers, the ticker) step it themselves and then wake the
// one loop that handles its Ready (Node.run). raft.Node would instead pass
// every proposal, message and tick to a goroutine of its own and every
// Ready back from it: two more goroutine hand-offs on every hop of a
// write, which on a loaded machine are a large part of one write's
// latency (BENCHMARKS.md).
//
// The lock is held only inside raft: never while saving, sending or
// applying a Ready, so the loop's apply may call back in (a conf change's
// ApplyConfChange, Status). Stepping between Ready and Advance is allowed,
// as raft.Node does the same.
type raftNode struct {
	mu      sync.Mutex
	rn      *raft.RawNode
	stopped bool
	// wake (buffered, 1) tells the loop that raft may have a Ready.
	wake chan struct{}
	// id is this node's raft id; open is the batch new proposals join
	// (Propose), guarded by propMu.
	id     uint64
	propMu sync.Mutex
	open   *proposalBatch
}

func newRaftNode(rc *raft.Config, peers []raft.Peer) (*raftNode, error) {
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, err
	}
	if len(peers) > 0 {
		if err := rn.Bootstrap(peers); err != nil {
			return nil, err
		}
	}
	return &raftNode{rn: rn, id: rc.ID, wake: make(chan struct{}, 1)}, nil
}

// do runs f on the raw node under the lock and wakes the loop; it returns
// raft.ErrStopped once the node has stopped.
func (r *raftNode) do(f func(rn *raft.RawNode) error) error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return raft.ErrStopped
	}
	err := f(r.rn)
	r.mu.Unlock()
	r.poke()
	return err
}

func (r *raftNode) poke() {
	select {
	case r.wake <- struct{}{}:
	default: // already woken
	}
}

// ready returns the next Ready, if raft has one. The caller must hand it
// to advance once it is saved, sent and applied.
func (r *raftNode) ready() (raft.Ready, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || !r.rn.HasReady() {
		return raft.Ready{}, false
	}
	return r.rn.Ready(), true
}

func (r *raftNode) advance(rd raft.Ready) {
	r.mu.Lock()
	r.rn.Advance(rd)
	r.mu.Unlock()
}

// stop makes every later call a no-op that returns raft.ErrStopped.
func (r *raftNode) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

func (r *raftNode) Tick() {
	_ = r.do(func(rn *raft.RawNode) error { rn.Tick(); return nil })
}

// Step steps messages received from peers. As raft.Node does, it ignores
// local message types arriving from the network and responses from nodes
// outside the configuration; it returns the first other error.
func (r *raftNode) Step(msgs ...*raftpb.Message) error {
	return r.do(func(rn *raft.RawNode) error {
		var first error
		for _, m := range msgs {
			err := rn.Step(m)
			if errors.Is(err, raft.ErrStepLocalMsg) || errors.Is(err, raft.ErrStepPeerNotFound) {
				err = nil
			}
			if first == nil {
				first = err
			}
		}
		return first
	})
}

// Propose proposes data; raft.ErrProposalDropped if this node cannot
// (no leader known, a transfer in progress, the uncommitted tail full).
//
// Concurrent proposals are combined: each joins the open batch, and
// whichever proposer takes the raft lock first steps the whole batch as
// one proposal message, so raft appends it and sends it to the followers
// once rather than once per command. Every proposer in a batch gets the
// batch's outcome.
func (r *raftNode) Propose(data []byte) error {
	r.propMu.Lock()
	b := r.open
	if b == nil {
		b = &proposalBatch{}
		r.open = b
	}
	b.ents = append(b.ents, &raftpb.Entry{Data: data})
	r.propMu.Unlock()

	r.mu.Lock()
	if !b.stepped {
		r.propMu.Lock()
		if r.open == b {
			r.open = nil // later proposers start the next batch
		}
		r.propMu.Unlock()
		b.stepped = true
		if r.stopped {
			b.err = raft.ErrStopped
		} else {
			b.err = r.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(r.id), Entries: b.ents})
		}
	}
	err := b.err
	r.mu.Unlock()
	if stages.Enabled {
		stages.Mark("proposed", 0)
	}
	r.poke()
	return err
}

// proposalBatch is commands proposed together (Propose); stepped and err
// are guarded by the raft lock, ents by propMu until it is stepped.
type proposalBatch struct {
	ents    []*raftpb.Entry
	stepped bool
	err     error
}

// errNotLeaderInTerm is ProposeInTerm's refusal.
var errNotLeaderInTerm = errors.New("not the leader in that term")

// ProposeInTerm appends data as one entry if, and only if, this node is
// the leader in term when raft takes it: the check and the append are
// one step under the raft lock, so the entry can only be at term in the
// log. It is never combined with other proposals nor forwarded.
func (r *raftNode) ProposeInTerm(data []byte, term uint64) error {
	return r.do(func(rn *raft.RawNode) error {
		st := rn.BasicStatus()
		if st.RaftState != raft.StateLeader || st.GetTerm() != term {
			return errNotLeaderInTerm
		}
		return rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(r.id), Entries: []*raftpb.Entry{{Data: data}}})
	})
}

// Leading returns the current term and whether this node leads in it.
func (r *raftNode) Leading() (term uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.rn.BasicStatus()
	return st.GetTerm(), st.RaftState == raft.StateLeader
}

func (r *raftNode) ProposeConfChange(cc raftpb.ConfChangeI) error {
	return r.do(func(rn *raft.RawNode) error { return rn.ProposeConfChange(cc) })
}

// ApplyConfChange applies a committed conf change to raft's configuration.
func (r *raftNode) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	var cs *raftpb.ConfState
	_ = r.do(func(rn *raft.RawNode) error { cs = rn.ApplyConfChange(cc); return nil })
	return cs
}

func (r *raftNode) Status() raft.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rn.Status()
}

// TransferLeadership asks the leader (this node, or the one it forwards
// to) to hand leadership to transferee.
func (r *raftNode) TransferLeadership(transferee uint64) {
	_ = r.do(func(rn *raft.RawNode) error { rn.TransferLeader(transferee); return nil })
}

// ReadIndex starts a read-index round; its answer comes in a Ready's
// ReadStates carrying rctx. raft drops it when no leader is known.
func (r *raftNode) ReadIndex(rctx []byte) error {
	return r.do(func(rn *raft.RawNode) error { rn.ReadIndex(rctx); return nil })
}

func (r *raftNode) Campaign() error {
	return r.do(func(rn *raft.RawNode) error { return rn.Campaign() })
}

func (r *raftNode) ForgetLeader() error {
	return r.do(func(rn *raft.RawNode) error { return rn.ForgetLeader() })
}

func (r *raftNode) ReportUnreachable(id uint64) {
	_ = r.do(func(rn *raft.RawNode) error { rn.ReportUnreachable(id); return nil })
}

func (r *raftNode) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	_ = r.do(func(rn *raft.RawNode) error { rn.ReportSnapshot(id, status); return nil })
}
