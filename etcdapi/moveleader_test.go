package etcdapi_test

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
)

// TestMoveLeader moves leadership with etcd's MoveLeader, asked of the
// leader, and checks etcd's refusals: asked of a follower, or to a member
// that does not exist.
func TestMoveLeader(t *testing.T) {
	c, eps := startCluster(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	target := c.Others(leader)[0]
	ctx := ctxT(t)

	if _, err := newClient(t, eps[target]).MoveLeader(ctx, consensus.RaftID(leader)); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Fatalf("asked of a follower: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	cli := newClient(t, eps[leader])
	if _, err := cli.MoveLeader(ctx, 12345); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Fatalf("to an unknown member: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}
	if _, err := cli.MoveLeader(ctx, consensus.RaftID(leader)); err != nil {
		t.Fatalf("to the leader itself: %v", err)
	}
	if _, err := cli.MoveLeader(ctx, consensus.RaftID(target)); err != nil {
		t.Fatalf("to %s: %v", target, err)
	}
	// The answer comes once the target leads; every member agrees soon.
	for _, id := range c.IDs {
		s := c.Servers[id]
		testwait.For(t, 10*time.Second, id+" sees "+target+" lead", func() bool { return s.Store().Status().LeaderID == target })
	}
	st, err := cli.Status(ctx, eps[target])
	if err != nil || st.Leader != consensus.RaftID(target) {
		t.Fatalf("status after the move: %+v %v", st, err)
	}
}
