package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/unrdf/consensus/internal/stages"
)

// entryHeaderLen is the size of the header the node puts in front of each
// proposed command: a format byte, the proposer id and a sequence number.
const entryHeaderLen = 17

const entryFormatV1 = 1

// maxForwardedProposals bounds proposals from peers waiting to be stepped.
const maxForwardedProposals = 1024

// proposals are commands on their way through raft: this process's own,
// each waiting for its result, and those peers forwarded here that raft
// dropped and forwardLoop retries.
//
// Proposers (any goroutine) take a sequence number and add and remove
// their waiter under mu; the Ready loop completes a waiter when its entry
// is applied (complete). dedup is replicated state, used only by the
// Ready loop (applying entries, taking and installing snapshots) and by
// NewNode before the loop runs, through its methods in dedup.go. Apart
// from dedup, only propose.go touches these fields.
type proposals struct {
	nextSeq atomic.Uint64
	mu      sync.Mutex
	waiters map[uint64]proposalWait // by sequence number
	// handles counts waiters with a Proposal handle, which want to hear
	// where their entry was appended (noteAppended): the Ready loop looks
	// at the entries it saves only while it is above zero.
	handles atomic.Int64
	// forwarded carries proposals forwarded by peers to forwardLoop, so
	// that stepping one (which waits while raft knows no leader) never
	// stalls the transport that delivered it.
	forwarded chan *raftpb.Message
	// dedup makes applying a proposal idempotent (dedup.go).
	dedup proposalDedup
}

func (p *proposals) init() {
	p.waiters = make(map[uint64]proposalWait)
	p.forwarded = make(chan *raftpb.Message, maxForwardedProposals)
}

// proposalWait is what the node keeps for a proposal of this process
// until the raft loop applies it: the channel its result goes to, its
// handle if it was submitted (Submit) and, for a traced proposal, where
// the loop writes when the entry was committed and applied. The times
// never enter the replicated entry.
type proposalWait struct {
	ch     chan appliedResult
	handle *Proposal
	trace  *proposalTrace
}

// appliedResult is what the Ready loop hands a waiter: where its entry
// was applied and what Apply returned (notApplied if it was skipped).
type appliedResult struct {
	pos   Position
	value any
}

// register takes the next sequence number and a waiter for it.
func (p *proposals) register(tr *proposalTrace, h *Proposal) (seq uint64, ch chan appliedResult) {
	seq = p.nextSeq.Add(1)
	ch = make(chan appliedResult, 1)
	p.mu.Lock()
	p.waiters[seq] = proposalWait{ch: ch, handle: h, trace: tr}
	p.mu.Unlock()
	if h != nil {
		p.handles.Add(1)
	}
	return seq, ch
}

// forget drops the waiter of seq, if still there.
func (p *proposals) forget(seq uint64) {
	p.mu.Lock()
	w, ok := p.waiters[seq]
	delete(p.waiters, seq)
	p.mu.Unlock()
	if ok && w.handle != nil {
		p.handles.Add(-1)
	}
}

// complete hands result, of the entry at pos, to the waiter of seq if it
// still waits, and records the times of a traced proposal (committedAt is
// when its Ready arrived). Called by the Ready loop; never blocks.
func (p *proposals) complete(seq uint64, pos Position, result any, committedAt time.Time) {
	p.mu.Lock()
	w, ok := p.waiters[seq]
	delete(p.waiters, seq)
	p.mu.Unlock()
	if ok {
		if tr := w.trace; tr != nil {
			tr.index, tr.committedAt, tr.appliedAt = pos.Index, committedAt, time.Now()
		}
		if w.handle != nil {
			p.handles.Add(-1)
		}
		w.ch <- appliedResult{pos, result} // buffered: never blocks the loop
	}
}

// noteAppended tells the handles of this process's proposals among ents,
// just saved to the log, where their entries are. Ready loop only, and
// only while handles is above zero.
func (p *proposals) noteAppended(proposer uint64, ents []*raftpb.Entry) {
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			continue
		}
		from, seq, _, ok := decodeEntry(e.GetData())
		if !ok || from != proposer {
			continue
		}
		p.mu.Lock()
		w := p.waiters[seq]
		p.mu.Unlock()
		if w.handle != nil {
			w.handle.appendedAt(Position{Index: e.GetIndex(), Term: e.GetTerm()})
		}
	}
}

// notApplied is the result a waiter gets when its entry was skipped
// because the dedup window had moved past its sequence number (see
// proposalDedup): every node skips it alike, so it was not applied.
type notApplied struct{}

// queueForwarded hands a forwarded proposal raft dropped to forwardLoop;
// it never blocks (when the queue is full the proposer's caller sees a
// timeout).
func (p *proposals) queueForwarded(m *raftpb.Message) {
	select {
	case p.forwarded <- m:
	default:
	}
}

// encodeEntry returns cmd behind the entry header of (proposer, seq).
func encodeEntry(proposer, seq uint64, cmd []byte) []byte {
	data := make([]byte, entryHeaderLen+len(cmd))
	data[0] = entryFormatV1
	binary.BigEndian.PutUint64(data[1:9], proposer)
	binary.BigEndian.PutUint64(data[9:17], seq)
	copy(data[entryHeaderLen:], cmd)
	return data
}

// decodeEntry splits an entry encoded by encodeEntry; ok is false for
// data of another format.
func decodeEntry(data []byte) (proposer, seq uint64, cmd []byte, ok bool) {
	if len(data) < entryHeaderLen || data[0] != entryFormatV1 {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint64(data[1:9]), binary.BigEndian.Uint64(data[9:17]), data[entryHeaderLen:], true
}

// Propose replicates cmd through raft and returns the state machine's
// result once it is applied on this node. It may be called on any node: a
// follower's proposal is forwarded to the leader by raft.
//
// ctx bounds only the wait. Errors: ErrTooLarge and ErrNoLeader mean the
// command was not proposed; ErrTimeout means it was proposed and its
// outcome is unknown (it is also what a proposal held up until the dedup
// window passed it gets: such a one was not applied); ErrStopped means the
// node stopped.
//
// With Config.Tracer set, a proposal is traced: a span that is a child of
// ctx's, with events when the entry was committed and applied.
//
// Propose is Submit followed by Wait, minus the handle: use Submit for the
// entry's index and term, or to bind the proposal to a term of this
// node's leadership (InTerm).
func (n *Node) Propose(ctx context.Context, cmd []byte) (result any, err error) {
	n.counters.proposals.Add(1)
	if n.cfg.Tracer != nil {
		result, err = n.proposeTraced(ctx, cmd)
	} else {
		result, err = n.propose(ctx, cmd, nil)
	}
	if err != nil {
		n.counters.proposalsFailed.Add(1)
	}
	return result, err
}

// propose is Propose; tr, if not nil, receives the entry's index and when
// it was committed and applied.
func (n *Node) propose(ctx context.Context, cmd []byte, tr *proposalTrace) (any, error) {
	if len(cmd) > n.cfg.MaxCommandBytes {
		return nil, fmt.Errorf("propose: %d bytes, limit %d: %w", len(cmd), n.cfg.MaxCommandBytes, ErrTooLarge)
	}
	if err := n.awaitLeader(ctx); err != nil {
		return nil, err
	}
	seq, ch := n.proposals.register(tr, nil)
	defer n.proposals.forget(seq)
	data := encodeEntry(n.proposerID, seq, cmd)

	lead := n.leader.current()
	if err := n.proposeEntry(ctx, data); err != nil {
		return nil, proposeError(ctx, err)
	}
	r, err := n.awaitResult(ctx, ch, data, lead)
	if stages.Enabled {
		stages.Mark("woken", r.pos.Index)
	}
	return r.value, err
}

// proposeError maps the error of handing a proposal to raft to the
// node's errors.
func proposeError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrProposalDropped):
		return fmt.Errorf("propose: %w", ErrNoLeader)
	case errors.Is(err, raft.ErrStopped):
		return fmt.Errorf("propose: %w", ErrStopped)
	case ctx.Err() != nil:
		return fmt.Errorf("propose: %w: %w", ErrTimeout, ctx.Err())
	default:
		return fmt.Errorf("propose: %w", err)
	}
}

// A leader change that the cluster makes on purpose (a transfer before a
// graceful stop, a removed leader stepping down) leaves the cluster
// without a known leader for about one round trip, and a leader
// transferring leadership drops proposals. Proposals that arrive then wait
// for the new leader (awaitLeader), up to one maximum election timeout,
// and are proposed again while raft drops them, instead of failing with
// ErrNoLeader: a rolling restart fails no write for lack of a leader.

// proposeEntry hands data to raft, trying again every tick, for at most
// ElectionTimeoutMax, while raft drops it (no leader known, a leadership
// transfer in progress, or the uncommitted tail full). A dropped proposal
// was not appended anywhere, so proposing it again is safe.
func (n *Node) proposeEntry(ctx context.Context, data []byte) error {
	var deadline time.Time
	for {
		err := n.raft.Propose(data)
		if !errors.Is(err, raft.ErrProposalDropped) || ctx.Err() != nil {
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(n.cfg.ElectionTimeoutMax)
		} else if time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(n.cfg.TickInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-n.stopc:
			t.Stop()
			return raft.ErrStopped
		}
	}
}

// awaitResult waits for the result of the proposal data, proposed while
// lead led, on ch. A proposal in flight when the leader changes may be
// lost (forwarded to a leader that stopped, or dropped as it handed over),
// so it is proposed again whenever a new leader appears: the entry
// carries its proposer id and sequence number, and the loop applies it
// once however many copies reach the log (dedup.go).
func (n *Node) awaitResult(ctx context.Context, ch <-chan appliedResult, data []byte, lead uint64) (appliedResult, error) {
	for {
		changed := n.leader.changes()
		if now := n.leader.current(); now != lead && now != raft.None {
			lead = now
			n.log.Debug("leader changed while a proposal was in flight; proposing it again", "leader", n.nameOf(now))
			_ = n.proposeEntry(ctx, data) // if dropped, the wait goes on
		}
		select {
		case r := <-ch:
			if _, ok := r.value.(notApplied); ok {
				// Not applied anywhere, but ErrTimeout's "outcome
				// unknown" is what callers already retry on.
				return appliedResult{}, fmt.Errorf("propose: held up until the dedup window passed it, not applied: %w", ErrTimeout)
			}
			return r, nil
		case <-changed:
		case <-ctx.Done():
			return appliedResult{}, fmt.Errorf("propose: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			return appliedResult{}, fmt.Errorf("propose: %w", ErrStopped)
		}
	}
}

// forwardLoop steps again proposals that peers forwarded to this node and
// raft dropped (no leader known, a transfer in progress). It retries them
// here, bounded by one maximum election timeout, instead of in the
// transport's delivery goroutine, which must keep delivering the messages
// that elect a leader (votes, heartbeats).
func (n *Node) forwardLoop() {
	defer n.wg.Done()
	for {
		select {
		case m := <-n.proposals.forwarded:
			n.stepForwarded(m)
		case <-n.stopc:
			return
		}
	}
}

// stepForwarded steps a proposal a peer forwarded. If raft drops it
// because this leader is handing over, it is stepped again once the
// transfer is over: this node, now a follower, forwards it to the new
// leader. Bounded by one maximum election timeout.
func (n *Node) stepForwarded(m *raftpb.Message) {
	ctx, cancel := context.WithTimeout(n.runCtx, n.cfg.ElectionTimeoutMax)
	defer cancel()
	for {
		err := n.raft.Step(m)
		if !errors.Is(err, raft.ErrProposalDropped) {
			return // stepped, or given up: the proposer's caller times out
		}
		t := time.NewTimer(n.cfg.TickInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
