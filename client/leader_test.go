package client

import (
	"context"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/testwait"
)

// TestCallsMoveToTheLeader lists a follower first: the client's calls move
// to the leader's endpoint, and follow leadership when it moves.
func TestCallsMoveToTheLeader(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	follower := cl.Others(leader)[0]
	c := newClient(t, Config{Endpoints: cl.Endpoints(follower, leader, cl.Others(leader)[1]), LeaderRefresh: 20 * time.Millisecond})
	ctx := context.Background()

	servedBy := func() string {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.NodeID
	}
	if got := servedBy(); got != follower {
		t.Fatalf("first call served by %s, want the first endpoint %s", got, follower)
	}
	testwait.For(t, 10*time.Second, "writes served by the leader "+leader, func() bool {
		if _, err := c.Put(ctx, "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		return servedBy() == leader
	})

	next := cl.Others(leader)[1]
	if got, err := c.TransferLeadership(ctx, next); err != nil || got != next {
		t.Fatalf("transfer to %s: %q, %v", next, got, err)
	}
	testwait.For(t, 10*time.Second, "writes served by the new leader "+next, func() bool {
		if _, err := c.Put(ctx, "k", []byte(`2`)); err != nil {
			t.Fatal(err)
		}
		return servedBy() == next
	})
}

func TestLeaderRoutingCanBeTurnedOff(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	follower := cl.Others(leader)[0]
	c := newClient(t, Config{Endpoints: cl.Endpoints(follower, leader), LeaderRefresh: -1})
	ctx := context.Background()
	for i := range 20 {
		if _, err := c.Put(ctx, "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.NodeID != follower {
			t.Fatalf("call %d served by %s with leader routing off, want %s", i, st.NodeID, follower)
		}
	}
}

func TestEndpointHost(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:9080/v1/ws":    "127.0.0.1:9080",
		"wss://db.example:443/v1/ws":   "db.example:443",
		"ws://127.0.0.1:9080/proxy/ws": "",
	} {
		if got := endpointHost(in); got != want {
			t.Errorf("endpointHost(%q) = %q, want %q", in, got, want)
		}
	}
}
