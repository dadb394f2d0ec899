package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Position is a place in the raft log: an entry's index and the term of
// the leader that appended it. Together they name one entry for ever.
type Position struct {
	Index, Term uint64
}

// Applied is the outcome of a proposal that was applied: where its entry
// is in the log and what the state machine's Apply returned for it.
type Applied struct {
	Position
	Result any
}

// ProposeOption changes how Submit proposes a command.
type ProposeOption func(*proposeOptions)

type proposeOptions struct {
	term  uint64
	bound bool
}

// InTerm limits a proposal to this node's leadership in term (see
// Node.Leading): Submit refuses it with ErrNotLeader unless this node
// leads in term at the moment raft takes it, and the node never forwards
// it to another leader nor proposes it again after a leader change. Its
// entry is therefore in the log at term or nowhere: it is applied if this
// leader commits it (or a later leader finds it in its log and commits
// it, as raft does), and its outcome is ErrLeadershipLost once this node
// has applied an entry of a later term without it.
//
// That is the fence a leader needs for work that only the leader of a
// given term may do (expiring leases, say): a deposed leader's proposal
// can never be applied on behalf of a term that has ended.
func InTerm(term uint64) ProposeOption {
	return func(o *proposeOptions) { o.term, o.bound = term, true }
}

// Proposal is a command handed to raft by Submit. It tells where the
// command's entry was appended in this node's log and, once it is
// decided, its outcome. It is safe for concurrent use.
type Proposal struct {
	appended chan struct{} // closed at the first append seen here
	done     chan struct{} // closed once out and err are set

	mu  sync.Mutex
	pos Position // newest position seen appended here; guarded by mu

	out Applied
	err error
}

func newProposal() *Proposal {
	return &Proposal{appended: make(chan struct{}), done: make(chan struct{})}
}

// appendedAt records that the proposal's entry was saved to this node's
// log at pos. Ready loop only.
func (p *Proposal) appendedAt(pos Position) {
	p.mu.Lock()
	first := p.pos == (Position{})
	p.pos = pos
	p.mu.Unlock()
	if first {
		close(p.appended)
	}
}

// Appended returns a channel closed once the proposal's entry has been
// saved to this node's log (on the leader as it appends it, on a follower
// when the leader's copy arrives). A proposal that is never appended here
// (refused, dropped, or decided on other nodes while this one lagged)
// never closes it: select on Done as well.
func (p *Proposal) Appended() <-chan struct{} { return p.appended }

// Position returns where the proposal's entry was last saved to this
// node's log, or the zero Position before Appended is closed. A leader
// change can replace an entry that was not yet committed, and the node
// may propose the command again (not with InTerm), so the position can
// change until the outcome is known; once it is, Wait's Applied.Position
// is the one that counts.
func (p *Proposal) Position() Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos
}

// Done returns a channel closed once the proposal's outcome is known.
func (p *Proposal) Done() <-chan struct{} { return p.done }

// Wait waits for the outcome, or for ctx to end (which ends only this
// wait, not the proposal: that is bounded by the context given to
// Submit). The errors are Propose's, and ErrLeadershipLost for an InTerm
// proposal that was not applied.
func (p *Proposal) Wait(ctx context.Context) (Applied, error) {
	select {
	case <-p.done:
		return p.out, p.err
	case <-ctx.Done():
		return Applied{}, fmt.Errorf("propose: %w: %w", ErrTimeout, ctx.Err())
	}
}

func (p *Proposal) finish(r appliedResult, err error) {
	if err == nil {
		p.out = Applied{Position: r.pos, Result: r.value}
	}
	p.err = err
	close(p.done)
}

// Leading returns the current term and whether this node is its leader.
// A caller that must act only as the leader of one term passes that term
// to InTerm.
func (n *Node) Leading() (term uint64, ok bool) { return n.raft.Leading() }

// Submit hands cmd to raft and returns its handle without waiting for it
// to be applied. Like Propose it may be called on any node, and ErrTooLarge,
// ErrNoLeader (after waiting up to ElectionTimeoutMax for one), ErrStopped
// and ErrRemoved mean the command was not proposed; with InTerm,
// ErrNotLeader means this node does not lead in that term.
//
// ctx bounds the proposal's whole life: when it ends before the outcome
// is known, the outcome is ErrTimeout (unknown: the command may still be
// applied). Until then the node keeps proposing the command to each new
// leader, as Propose does, unless it is bound to a term.
func (n *Node) Submit(ctx context.Context, cmd []byte, opts ...ProposeOption) (*Proposal, error) {
	var o proposeOptions
	for _, opt := range opts {
		opt(&o)
	}
	n.counters.proposals.Add(1)
	p, err := n.submit(ctx, cmd, o)
	if err != nil {
		n.counters.proposalsFailed.Add(1)
	}
	return p, err
}

func (n *Node) submit(ctx context.Context, cmd []byte, o proposeOptions) (*Proposal, error) {
	if len(cmd) > n.cfg.MaxCommandBytes {
		return nil, fmt.Errorf("propose: %d bytes, limit %d: %w", len(cmd), n.cfg.MaxCommandBytes, ErrTooLarge)
	}
	if o.bound {
		if err := n.checkServing(); err != nil && !errors.Is(err, ErrNoLeader) {
			return nil, err
		}
	} else if err := n.awaitLeader(ctx); err != nil {
		return nil, err
	}
	p := newProposal()
	installs := n.snaps.installs.Load()
	seq, ch := n.proposals.register(nil, p)
	data := encodeEntry(n.proposerID, seq, cmd)
	lead := n.leader.current()
	var err error
	if o.bound {
		err = n.raft.ProposeInTerm(data, o.term)
		if errors.Is(err, errNotLeaderInTerm) {
			n.proposals.forget(seq)
			return nil, fmt.Errorf("propose: term %d: %w", o.term, ErrNotLeader)
		}
	} else {
		err = n.proposeEntry(ctx, data)
	}
	if err != nil {
		n.proposals.forget(seq)
		return nil, proposeError(ctx, err)
	}
	go func() {
		var r appliedResult
		var err error
		if o.bound {
			r, err = n.awaitInTerm(ctx, ch, o.term, installs)
		} else {
			r, err = n.awaitResult(ctx, ch, data, lead)
		}
		n.proposals.forget(seq)
		if err != nil {
			n.counters.proposalsFailed.Add(1)
		}
		p.finish(r, err)
	}()
	return p, nil
}

// awaitInTerm waits for the result of a proposal appended by this node as
// the leader of term. Its entry is in the log at term or nowhere, so once
// this node has applied an entry of a later term, which a leader of that
// term commits only after every earlier entry it kept, a result that has
// not come never will; unless this node installed a snapshot since the
// proposal (installs was the count before it), which may hold the entry
// without Apply having seen it here: then the outcome is unknown.
func (n *Node) awaitInTerm(ctx context.Context, ch <-chan appliedResult, term, installs uint64) (appliedResult, error) {
	for {
		var wake <-chan struct{}
		if changed := n.leader.changes(); n.leader.current() == n.id && n.pos.term.Load() == term {
			wake = changed // still leading in term: only a leader change matters
		} else {
			if n.pos.appliedTerm.Load() > term {
				select {
				case r := <-ch: // applied in the same batch
					return n.inTermResult(r)
				default:
				}
				if n.snaps.installs.Load() != installs {
					return appliedResult{}, fmt.Errorf("propose: term %d ended and a snapshot from a later leader replaced this node's log: outcome unknown: %w", term, ErrTimeout)
				}
				return appliedResult{}, fmt.Errorf("propose: not applied: term %d ended first: %w", term, ErrLeadershipLost)
			}
			wake = n.pos.applied.wait(n.pos.applied.index() + 1)
		}
		select {
		case r := <-ch:
			return n.inTermResult(r)
		case <-wake:
		case <-ctx.Done():
			return appliedResult{}, fmt.Errorf("propose: %w: %w", ErrTimeout, ctx.Err())
		case <-n.stopc:
			return appliedResult{}, fmt.Errorf("propose: %w", ErrStopped)
		}
	}
}

func (n *Node) inTermResult(r appliedResult) (appliedResult, error) {
	if _, ok := r.value.(notApplied); ok {
		return appliedResult{}, fmt.Errorf("propose: held up until the dedup window passed it, not applied: %w", ErrTimeout)
	}
	return r, nil
}
