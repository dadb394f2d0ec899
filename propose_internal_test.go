package consensus

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// countingSM counts the commands it applies.
type countingSM struct{ applied int }

func (s *countingSM) Apply(uint64, []byte) any { s.applied++; return s.applied }

// TestProposalBehindDedupWindowFails: a proposal of this process whose
// entry reaches the log only after the dedup window has moved past its
// sequence number (its proposer was held up while more than a window of
// later proposals were applied) is skipped on every node. Its proposer
// must hear that it was not applied, not wait for ever (a benchmark
// proposing with no deadline hung so).
func TestProposalBehindDedupWindowFails(t *testing.T) {
	sm := &countingSM{}
	n := &Node{sm: sm, proposerID: 7, log: slog.New(slog.DiscardHandler)}
	n.proposals.init()
	late, ch := n.proposals.register(nil, nil)
	index := uint64(0)
	apply := func(seq uint64) bool {
		index++
		return n.applyCommand(&raftpb.Entry{Index: &index, Data: encodeEntry(n.proposerID, seq, []byte("c"))})
	}
	// Later proposals, more than a window of them, are applied first.
	for seq := late + 1; seq <= late+dedupWindow+1; seq++ {
		n.proposals.nextSeq.Store(seq)
		if !apply(seq) {
			t.Fatalf("proposal %d skipped", seq)
		}
	}
	if apply(late) {
		t.Fatal("a proposal below the dedup window was applied")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.awaitResult(ctx, ch, nil, 0)
	if !errors.Is(err, ErrTimeout) || ctx.Err() != nil {
		t.Fatalf("awaitResult = %v (ctx %v), want ErrTimeout at once", err, ctx.Err())
	}
	if sm.applied != dedupWindow+1 {
		t.Fatalf("state machine applied %d commands, want %d", sm.applied, dedupWindow+1)
	}
}
