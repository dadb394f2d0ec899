package harness_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/kv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustLeader(t *testing.T, c *harness.Cluster, names ...string) string {
	t.Helper()
	leader, err := c.WaitLeader(10*time.Second, names...)
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

func put(t *testing.T, c *harness.Cluster, node, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := c.Client(node).Put(ctx, key, []byte(value))
	if err != nil {
		t.Fatalf("put %s on %s: %v", key, node, err)
	}
	return rev
}

func others(c *harness.Cluster, not ...string) []string {
	return slices.DeleteFunc(c.Names(), func(n string) bool { return slices.Contains(not, n) })
}

func hasItem(s harness.State, key, value string) bool {
	for _, it := range s.Items {
		if it.Key == key {
			return string(it.Value) == value
		}
	}
	return false
}

func TestClusterBasics(t *testing.T) {
	for _, kind := range []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble} {
		t.Run(kind.String(), func(t *testing.T) {
			c := harness.New(t, harness.Options{Nodes: 3, Seed: 1, Storage: kind})
			leader := mustLeader(t, c)
			follower := others(c, leader)[0]
			put(t, c, follower, "a", `"1"`)
			put(t, c, leader, "b", `"2"`)
			s := c.AssertSameState(10 * time.Second)
			if !hasItem(s, "a", `"1"`) || !hasItem(s, "b", `"2"`) || s.Revision != 2 {
				t.Fatalf("state %+v", s)
			}

			// A crashed follower misses writes and catches up on restart,
			// its state rebuilt by replaying its log.
			if err := c.Crash(follower); err != nil {
				t.Fatal(err)
			}
			if c.Running(follower) {
				t.Fatal("crashed node still running")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := c.Client(follower).Put(ctx, "x", []byte("1")); !errors.Is(err, consensus.ErrStopped) {
				t.Fatalf("put on a crashed node: %v, want ErrStopped", err)
			}
			if err := c.Crash(follower); err == nil {
				t.Fatal("crashed a crashed node")
			}
			put(t, c, leader, "c", `"3"`)
			if err := c.Restart(follower); err != nil {
				t.Fatal(err)
			}
			if err := c.Restart(follower); err == nil {
				t.Fatal("restarted a running node")
			}
			s = c.AssertSameState(10 * time.Second)
			if !hasItem(s, "c", `"3"`) || len(s.Items) != 3 {
				t.Fatalf("state after restart %+v", s)
			}

			// The leader crashes: the others elect a new one; it comes back
			// as a follower with everything.
			if err := c.Crash(leader); err != nil {
				t.Fatal(err)
			}
			newLeader := mustLeader(t, c)
			if newLeader == leader {
				t.Fatalf("crashed leader %s still leads", leader)
			}
			put(t, c, newLeader, "d", `"4"`)
			if err := c.Restart(leader); err != nil {
				t.Fatal(err)
			}
			mustLeader(t, c)
			s = c.AssertSameState(10 * time.Second)
			if !hasItem(s, "d", `"4"`) || len(s.Items) != 4 {
				t.Fatalf("state after leader restart %+v", s)
			}
		})
	}
}

func TestPartitionAndIsolate(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 5, Seed: 2})
	leader := mustLeader(t, c)

	// The leader alone on one side: the majority elects another leader
	// and takes writes; the old leader takes none.
	c.Isolate(leader)
	rest := others(c, leader)
	newLeader := mustLeader(t, c, rest...)
	put(t, c, newLeader, "k", `"majority"`)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := c.Client(leader).Put(ctx, "k", []byte(`"minority"`))
	cancel()
	if err == nil {
		t.Fatal("an isolated node acknowledged a write")
	}
	c.Heal()
	mustLeader(t, c)
	s := c.AssertSameState(10 * time.Second)
	if !hasItem(s, "k", `"majority"`) {
		t.Fatalf("state %+v", s)
	}

	// A 2-3 split: the side with three keeps working.
	leader = mustLeader(t, c)
	minority := []string{leader, others(c, leader)[0]}
	majority := others(c, minority...)
	c.Partition(minority, majority)
	l := mustLeader(t, c, majority...)
	put(t, c, l, "k2", `"v"`)
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = c.Client(minority[1]).Get(ctx, "k2", kv.Linearizable)
	cancel()
	if err == nil {
		t.Fatal("the minority served a linearizable read")
	}
	c.Heal()
	s = c.AssertSameState(10 * time.Second)
	if !hasItem(s, "k2", `"v"`) {
		t.Fatalf("state %+v", s)
	}
}

// TestSameStateSeesDivergence checks that AssertSameState's comparison
// would catch nodes that disagree: a write applied to one node's machine
// behind raft's back must make SameState fail.
func TestSameStateSeesDivergence(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 3})
	leader := mustLeader(t, c)
	put(t, c, leader, "a", `"1"`)
	c.AssertSameState(10 * time.Second)
	victim := others(c, leader)[0]
	c.Client(victim).Machine().Apply(1<<40, forgedPut(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.SameState(ctx)
	if err == nil {
		t.Fatal("SameState accepted diverged nodes")
	}
	t.Logf("as expected: %v", err)
}

// forgedPut is the encoding of a put command, made by proposing through a
// recording Raft.
func forgedPut(t *testing.T) []byte {
	t.Helper()
	r := &recordingRaft{}
	_, _ = kv.NewStore(r, kv.NewMachine()).Put(context.Background(), "forged", []byte(`"x"`))
	if r.cmd == nil {
		t.Fatal("no command recorded")
	}
	return r.cmd
}

type recordingRaft struct{ cmd []byte }

func (r *recordingRaft) Propose(_ context.Context, cmd []byte) (any, error) {
	r.cmd = cmd
	return nil, fmt.Errorf("recorded")
}
func (r *recordingRaft) LinearizableRead(context.Context) error { return nil }
func (r *recordingRaft) Status() consensus.Status               { return consensus.Status{} }
func (r *recordingRaft) Ready() error                           { return nil }
