package consensus

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus/internal/stages"
)

// The Ready loop (run) is the only code that persists, sends and applies:
// it takes each Ready raft has and, in the order etcd raft documents,
// saves it, sends its messages, hands its ReadStates to the read loop,
// applies its committed entries and advances. Everything that waits on
// it (proposers, readers, event subscribers) is woken without blocking
// it. The parts it calls into (proposals.complete, reads.offer,
// snapshots, the member table, leaderState.set, events) say what of
// theirs it owns.

// position is where this node's raft stands, as the Ready loop last
// published it: term and commit from the hard state it saved, applied
// from the entries (or snapshot) it applied. Any goroutine reads it; only
// the Ready loop writes it (NewNode sets it before the loop runs).
type position struct {
	term, commit atomic.Uint64
	// appliedTerm is the term of the last applied entry (or installed
	// snapshot); it is stored before applied advances past it.
	appliedTerm atomic.Uint64
	applied     appliedWait
	// savingSince is when the storage write under way started (Unix
	// nanoseconds), 0 when none is (StorageStall).
	savingSince atomic.Int64
}

// StorageStall returns how long the storage write under way has been
// running, 0 if none is. A leader whose write hangs cannot commit or
// answer reads; its lease clock (kv.Lessor) stops counting meanwhile.
func (n *Node) StorageStall() time.Duration {
	since := n.pos.savingSince.Load()
	if since == 0 {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - since)
}

// storageStalled reports whether the storage write under way has run
// longer than Config.StallBound.
func (n *Node) storageStalled() bool {
	bound := n.cfg.StallBound
	if bound < 0 {
		return false
	}
	if bound == 0 {
		bound = 5 * n.cfg.ElectionTimeoutMax
	}
	return n.StorageStall() > bound
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
		case req := <-n.snaps.requests:
			n.snaps.pending = append(n.snaps.pending, req)
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
		(raft.IsEmptyHardState(rd.HardState) || rd.HardState.GetTerm() == n.pos.term.Load())
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
	if stages.Enabled {
		markEntries("saving", rd.Entries)
	}
	saveStart := time.Now()
	n.pos.savingSince.Store(saveStart.UnixNano())
	err := n.storage.Save(rd.HardState, rd.Entries, rd.Snapshot)
	n.pos.savingSince.Store(0)
	if err != nil {
		return fmt.Errorf("node: save raft state: %w", err)
	}
	if n.cfg.Observer != nil {
		d := time.Since(saveStart)
		n.cfg.Observer.StorageSaved(d)
		if so, ok := n.cfg.Observer.(SyncObserver); ok && rd.MustSync {
			so.StorageSynced(d)
		}
	}
	if stages.Enabled {
		markEntries("saved", rd.Entries)
	}
	if len(rd.Entries) > 0 && n.proposals.handles.Load() > 0 {
		n.proposals.noteAppended(n.proposerID, rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.pos.term.Store(rd.HardState.GetTerm())
		n.pos.commit.Store(rd.HardState.GetCommit())
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
		if stages.Enabled {
			markEntries("applying", rd.CommittedEntries)
		}
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
	var last, lastTerm, applied uint64
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
		last, lastTerm = e.GetIndex(), e.GetTerm()
		n.snaps.bytes += uint64(len(e.GetData()))
	}
	n.pos.appliedTerm.Store(lastTerm)
	n.pos.applied.advance(last)
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
		if proposer == n.proposerID {
			// A waiter left means no copy was applied: this one came
			// after the window had passed its sequence number.
			n.proposals.complete(seq, Position{e.GetIndex(), e.GetTerm()}, notApplied{}, n.counters.readyAt)
		}
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
		n.proposals.complete(seq, Position{e.GetIndex(), e.GetTerm()}, result, n.counters.readyAt)
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
