package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/raft/v3"
)

// maxPendingReads bounds the linearizable reads waiting for a ReadIndex
// round, so a stalled cluster cannot accumulate unbounded waiters.
const maxPendingReads = 1 << 16

// reads batches linearizable reads onto shared ReadIndex rounds (the
// part etcd raft's read_only.go plays inside raft, here on the node's
// side). LinearizableRead callers append to pending under mu and signal
// readLoop; readLoop alone takes the batch, asks raft for a read index
// and waits for its ReadState, which the Ready loop hands over on states
// without ever blocking. Only read.go touches these fields.
type reads struct {
	mu sync.Mutex
	// pending are the callers waiting for the next round, at most
	// maxPendingReads; each channel is buffered (1) and gets one answer.
	pending []chan error
	// signal (buffered, 1) wakes readLoop when pending grew.
	signal chan struct{}
	// states (buffered) carries ReadStates from the Ready loop to
	// readLoop; one that does not fit is dropped and its round retried.
	states chan raft.ReadState
}

func (r *reads) init() {
	r.signal = make(chan struct{}, 1)
	r.states = make(chan raft.ReadState, 64)
}

// add queues ch for the next round and wakes readLoop; it reports false
// when maxPendingReads are already waiting.
func (r *reads) add(ch chan error) bool {
	r.mu.Lock()
	if len(r.pending) >= maxPendingReads {
		r.mu.Unlock()
		return false
	}
	r.pending = append(r.pending, ch)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
	return true
}

// take returns the waiting reads and starts a new batch.
func (r *reads) take() []chan error {
	r.mu.Lock()
	defer r.mu.Unlock()
	batch := r.pending
	r.pending = nil
	return batch
}

// offer hands rs to readLoop. Called by the Ready loop; never blocks.
func (r *reads) offer(rs raft.ReadState) {
	select {
	case r.states <- rs:
	default: // the read loop has moved on; it retries with a fresh context
	}
}

// LinearizableRead returns once this node's state machine reflects every
// command committed before the call: a read of local state after it
// returns is linearizable. Concurrent callers share one ReadIndex round.
func (n *Node) LinearizableRead(ctx context.Context) error {
	if err := n.awaitLeader(ctx); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	ch := make(chan error, 1)
	if !n.reads.add(ch) {
		return fmt.Errorf("read index: too many pending reads: %w", ErrTimeout)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("read index: %w: %w", ErrTimeout, ctx.Err())
	case <-n.stopc:
		return fmt.Errorf("read index: %w", ErrStopped)
	}
}

// readLoop serves pending linearizable reads in batches: every read
// waiting when a round starts shares that round's ReadIndex. Each attempt
// uses a fresh request context, so a late answer to an earlier attempt can
// never release a later read (etcd-io/etcd#20418).
func (n *Node) readLoop() {
	defer n.wg.Done()
	var rctxSeq uint64
	for {
		select {
		case <-n.reads.signal:
		case <-n.stopc:
			return
		}
		batch := n.reads.take()
		if len(batch) == 0 {
			continue
		}
		index, err := n.readIndexRound(&rctxSeq)
		if err != nil {
			for _, ch := range batch {
				ch <- err
			}
			continue
		}
		applied := n.pos.applied.wait(index)
		go func() {
			select {
			case <-applied:
				for _, ch := range batch {
					ch <- nil
				}
			case <-n.stopc:
			}
		}()
	}
}

// readIndexRound asks raft for a read index until it gets one, the
// cluster has no leader, or the node stops.
func (n *Node) readIndexRound(seq *uint64) (uint64, error) {
	for {
		if err := n.checkServing(); err != nil {
			return 0, fmt.Errorf("read index: %w", err)
		}
		*seq++
		rctx := make([]byte, 16)
		binary.BigEndian.PutUint64(rctx[:8], n.proposerID)
		binary.BigEndian.PutUint64(rctx[8:], *seq)
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ReadIndexTimeout)
		if err := n.raft.ReadIndex(rctx); err != nil {
			cancel()
			if errors.Is(err, raft.ErrStopped) {
				return 0, fmt.Errorf("read index: %w", ErrStopped)
			}
			continue
		}
		index, ok := n.awaitReadState(ctx, rctx)
		cancel()
		if ok {
			return index, nil
		}
	}
}

func (n *Node) awaitReadState(ctx context.Context, rctx []byte) (uint64, bool) {
	for {
		select {
		case rs := <-n.reads.states:
			if string(rs.RequestCtx) == string(rctx) {
				return rs.Index, true
			}
			// An answer to an abandoned attempt: ignore it.
		case <-ctx.Done():
			return 0, false
		case <-n.stopc:
			return 0, false
		}
	}
}
