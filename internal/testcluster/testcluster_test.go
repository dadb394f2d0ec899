package testcluster_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A crashed leader hands nothing over: it sees no other node elected
// before it is gone (a graceful Stop would: server.Close transfers
// leadership first), and the survivors elect a leader of their own.
func TestCrashedLeaderHandsNothingOver(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	events := c.Servers[leader].Node().Events().Subscribe(64)
	c.Crash(t, leader)
	events.Close()
	for e := range events.C() {
		if e.Type == consensus.EventLeaderElected && e.LeaderID != leader && e.LeaderID != "" {
			t.Fatalf("the crashed leader %s saw %s elected before it stopped: a hand-over, not a crash", leader, e.LeaderID)
		}
	}
	if _, ok := c.Servers[leader]; ok {
		t.Fatalf("%s still listed as running after Crash", leader)
	}
	next := c.WaitLeader(t, 10*time.Second)
	if next == leader {
		t.Fatalf("%s, crashed, is still the leader", leader)
	}
}

// A stopped or crashed node restarts on its addresses with its data:
// it has every write acknowledged before it went down, and one made
// while it was down.
func TestRestartKeepsAddressesAndData(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, down := range []struct {
		name string
		stop func(testing.TB, string)
	}{{"stopped", c.Stop}, {"crashed", c.Crash}} {
		id := c.Others(leader)[0]
		before := c.Servers[id].Store()
		if _, err := before.Put(ctx, "before/"+down.name, []byte(`1`)); err != nil {
			t.Fatalf("put before %s: %v", down.name, err)
		}
		peer, http := c.Servers[id].PeerAddr(), c.Servers[id].HTTPAddr()
		down.stop(t, id)
		leader = c.WaitLeader(t, 10*time.Second)
		if _, err := c.Servers[leader].Store().Put(ctx, "while/"+down.name, []byte(`2`)); err != nil {
			t.Fatalf("put while %s %s: %v", id, down.name, err)
		}
		c.Restart(t, id)
		srv := c.Servers[id]
		if srv.PeerAddr() != peer || srv.HTTPAddr() != http || c.HTTP[id] != http {
			t.Fatalf("%s restarted on %s/%s, was %s/%s", id, srv.PeerAddr(), srv.HTTPAddr(), peer, http)
		}
		c.WaitLeader(t, 10*time.Second)
		for _, key := range []string{"before/" + down.name, "while/" + down.name} {
			var it kv.Item
			testwait.For(t, 10*time.Second, id+" has "+key+" locally", func() bool {
				var err error
				it, err = srv.Store().Get(ctx, key, kv.Local)
				return err == nil
			})
			if it.Key != key {
				t.Fatalf("%s: got %+v for %s", id, it, key)
			}
		}
	}
}
