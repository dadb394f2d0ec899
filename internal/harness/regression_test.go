package harness_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/memnet"
	"github.com/unrdf/consensus/internal/testwait"
)

// nopHandler is the MessageHandler of a fake sender on the network.
type nopHandler struct{}

func (nopHandler) Deliver([]*raftpb.Message)                  {}
func (nopHandler) ReportUnreachable(uint64)                   {}
func (nopHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// TestDeliverDoesNotBlockOnProposalWithoutLeader: Node.Deliver steps a
// forwarded proposal (MsgProp) with the node's run context, and raft's
// Step waits until the node knows a leader before it takes a proposal. A
// proposal that reaches a node which has just lost its leader therefore
// blocks Deliver, and the transport goroutine calling it, until the node
// learns a leader some other way. If every message to the node comes
// through that goroutine (memnet; with WebSocket, the stream of the peer
// that forwarded it, which may be the new leader) it never does: the node
// stays leaderless for good.
func TestDeliverDoesNotBlockOnProposalWithoutLeader(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 11})
	leader := mustLeader(t, c)
	followers := others(c, leader)
	for _, f := range followers {
		if err := c.Crash(f); err != nil {
			t.Fatal(err)
		}
	}
	// Check-quorum makes the lone leader step down.
	deadline := time.Now().Add(5 * time.Second)
	for c.Node(leader).Leader() != "" {
		if time.Now().After(deadline) {
			t.Fatal("the lone leader did not step down")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A proposal forwarded to it now, from some peer.
	fake, err := c.Network().Attach(99, nopHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	fake.Send([]*raftpb.Message{{
		Type:    raftpb.MsgProp.Enum(),
		From:    proto.Uint64(99),
		To:      proto.Uint64(c.ID(leader)),
		Entries: []*raftpb.Entry{{Data: []byte("x")}},
	}})

	// The followers come back and elect a leader; the old one must
	// follow it.
	for _, f := range followers {
		if err := c.Restart(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("B1: %v", err)
	}
}

// TestDuplicatedProposalAppliedOnce: a proposal that reaches the
// leader twice is appended, and applied, twice: there is no
// deduplication by the request id the node already puts in every entry
// (proposer id and sequence). A put then gets two revisions and its
// version grows by two, and a put applied again after a later write
// silently undoes it. WebSocket streams do not duplicate messages today,
// but raft assumes a network that may, and any retry of a proposal (the
// planned exactly-once retries) meets the same hole.
func TestDuplicatedProposalAppliedOnce(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 12})
	leader := mustLeader(t, c)
	follower := others(c, leader)[0]
	// Every message from the follower to the leader arrives twice.
	if err := c.Network().SetRule(c.ID(follower), c.ID(leader), memnet.Rule{Duplicate: 1, DuplicateProposals: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := c.Client(follower).Put(ctx, "k", []byte(`"v"`))
	if err != nil {
		t.Fatal(err)
	}
	c.Network().ClearRules()
	s := c.AssertSameState(10 * time.Second)
	if len(s.Items) != 1 || s.Items[0].Version != 1 || s.Items[0].Revision != rev || s.Revision != rev {
		t.Fatalf("B2: one put, acknowledged at revision %d, left revision %d and items %+v", rev, s.Revision, s.Items)
	}
}

// TestJoinAfterLogCompaction (bug B3): a node that joins a cluster whose
// leader has compacted its log needs a snapshot, and the leader sends its
// newest. Every snapshot taken so far predates the conf change that added
// the node, so its ConfState does not list it, and raft on the new node
// refuses it ("attempted to restore snapshot but it is not in the
// ConfState"). The leader sends the same snapshot again and again until a
// later one is taken, SnapshotThreshold entries on: an idle cluster never
// takes one, and the new node never catches up.
func TestJoinAfterLogCompaction(t *testing.T) {
	for _, kind := range []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble} {
		t.Run(kind.String(), func(t *testing.T) {
			c := harness.New(t, harness.Options{Nodes: 3, Seed: 1, Storage: kind, Configure: func(cfg *consensus.Config) {
				cfg.SnapshotThreshold = 40
				cfg.SnapshotCatchUpEntries = 5
			}})
			leader := mustLeader(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i := range 200 {
				if _, err := c.Client(leader).Put(ctx, fmt.Sprintf("k%d", i), []byte("1")); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Join(ctx, leader, "n4"); err != nil {
				t.Fatal(err)
			}
			// No more writes: the cluster is idle from here on.
			c.AssertSameState(10 * time.Second)
		})
	}
}

// TestRestartedNodeReportsTermAndCommit (bug B4): Status().Term and
// CommitIndex were set only from a Ready's hard state, never from the one
// in storage, so a restarted node reported term 0 and commit index 0
// until its hard state next changed: on an idle cluster, for good (and
// GET /v1/status said so).
func TestRestartedNodeReportsTermAndCommit(t *testing.T) {
	for _, kind := range []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble} {
		t.Run(kind.String(), func(t *testing.T) {
			c := harness.New(t, harness.Options{Nodes: 3, Seed: 2, Storage: kind})
			leader := mustLeader(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Client(leader).Put(ctx, "k", []byte("1")); err != nil {
				t.Fatal(err)
			}
			c.AssertSameState(10 * time.Second)
			follower := others(c, leader)[0]
			if err := c.Crash(follower); err != nil {
				t.Fatal(err)
			}
			if err := c.Restart(follower); err != nil {
				t.Fatal(err)
			}
			want := c.Node(leader).Status()
			mustLeader(t, c)
			c.AssertSameState(10 * time.Second)
			testwait.For(t, 5*time.Second, follower+" reports the leader's term and commit index", func() bool {
				st := c.Node(follower).Status()
				return st.Term == want.Term && st.CommitIndex >= want.CommitIndex
			})
		})
	}
}
