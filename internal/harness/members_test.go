package harness_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
)

// memberOf returns name as node sees it in the replicated membership.
func memberOf(c *harness.Cluster, node, name string) (consensus.Member, bool) {
	m, err := c.Node(node).Member(name)
	return m, err == nil
}

// waitVoter waits until every running node in on sees name as a voter.
func waitVoter(t *testing.T, c *harness.Cluster, name string, on ...string) {
	t.Helper()
	testwait.For(t, 20*time.Second, name+" promoted to voter on "+fmt.Sprint(on), func() bool {
		for _, n := range on {
			if m, ok := memberOf(c, n, name); !ok || !m.Voter {
				return false
			}
		}
		return true
	})
}

func memberCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writers runs writes through the given nodes until stopped, recording
// acknowledged writes and failures. A failure other than "no leader" or
// "timed out" (both a retryable 503 over HTTP) fails the test.
type writers struct {
	t      *testing.T
	c      *harness.Cluster
	via    []string
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  map[string]string
	failed atomic.Int64
}

func startWriters(t *testing.T, c *harness.Cluster, seed uint64, n int, via ...string) *writers {
	w := &writers{t: t, c: c, via: via, stop: make(chan struct{}), acked: map[string]string{}}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for k := 0; ; k++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d/%d", i, k), fmt.Sprintf("%d", k)
				node := via[rng.IntN(len(via))]
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Client(node).Put(ctx, key, []byte(val))
				cancel()
				switch {
				case err == nil:
					w.mu.Lock()
					w.acked[key] = val
					w.mu.Unlock()
				case errors.Is(err, consensus.ErrNoLeader) || errors.Is(err, consensus.ErrTimeout):
					w.failed.Add(1)
					time.Sleep(5 * time.Millisecond)
				default:
					t.Errorf("write %s via %s: %v (not a retryable error)", key, node, err)
					return
				}
			}
		}()
	}
	return w
}

// finish stops the writers and checks that every acknowledged write is in
// the converged state.
func (w *writers) finish() {
	w.t.Helper()
	close(w.stop)
	w.wg.Wait()
	s := w.c.AssertSameState(20 * time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		w.t.Fatal("no write was acknowledged")
	}
	for k, v := range w.acked {
		if !hasItem(s, k, v) {
			w.t.Errorf("acknowledged write %s=%s lost", k, v)
		}
	}
	w.t.Logf("%d writes acknowledged, %d failed retryably", len(w.acked), w.failed.Load())
}

func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return seed
}

// TestGrowAndShrinkUnderWrites grows a 3-node cluster to 5 (each new node
// joins as a learner, catches up and is promoted by the leader) and
// shrinks it back to 3 by removing both new nodes at once (joint
// consensus), while clients write continuously. No acknowledged write is
// lost and no write fails but retryably.
func TestGrowAndShrinkUnderWrites(t *testing.T) {
	seed := testSeed(t)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed})
	mustLeader(t, c)
	founders := c.Names()
	w := startWriters(t, c, seed, 4, founders...)
	ctx := memberCtx(t)

	for _, name := range []string{"n4", "n5"} {
		if err := c.Join(ctx, founders[0], name); err != nil {
			t.Fatal(err)
		}
		waitVoter(t, c, name, append(founders, name)...)
	}
	for _, n := range c.Names() {
		if got := len(c.Node(n).Members()); got != 5 {
			t.Fatalf("%s sees %d members, want 5: %+v", n, got, c.Node(n).Members())
		}
	}
	// The new nodes serve writes too.
	put(t, c, "n5", "via-n5", `"x"`)

	// Remove both at once: joint consensus.
	err := c.Node(founders[1]).ChangeMembers(ctx,
		consensus.MemberChange{Op: consensus.Remove, Member: consensus.Member{ID: "n4"}},
		consensus.MemberChange{Op: consensus.Remove, Member: consensus.Member{ID: "n5"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n4", "n5"} {
		testwait.For(t, 10*time.Second, name+" learns it was removed", func() bool {
			return c.Node(name).Removed() && c.Node(name).Status().Removed
		})
		if _, err := c.Client(name).Put(ctx, "k", []byte("1")); !errors.Is(err, consensus.ErrRemoved) {
			t.Fatalf("write on removed %s: %v, want ErrRemoved", name, err)
		}
	}
	// Removed ids are never reused.
	if _, err := c.Node(founders[0]).AddMember(ctx, consensus.Member{ID: "n4", PeerAddr: "memnet:n4"}); !errors.Is(err, consensus.ErrMemberConflict) {
		t.Fatalf("re-adding removed n4: %v, want ErrMemberConflict", err)
	}
	for _, name := range []string{"n4", "n5"} {
		if err := c.Crash(name); err != nil {
			t.Fatal(err)
		}
	}
	w.finish()
	for _, n := range founders {
		if got := len(c.Node(n).Members()); got != 3 {
			t.Fatalf("%s sees %d members after shrinking: %+v", n, got, c.Node(n).Members())
		}
	}
}

// TestRemoveLeader removes the leader: it hands leadership over first,
// the rest keep taking writes, and the removed node says so and cannot
// disturb them.
func TestRemoveLeader(t *testing.T) {
	seed := testSeed(t)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed})
	leader := mustLeader(t, c)
	rest := others(c, leader)
	ctx := memberCtx(t)
	termBefore := c.Node(rest[0]).Status().Term
	if err := c.Node(leader).RemoveMember(ctx, leader); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "removed leader knows", func() bool { return c.Node(leader).Removed() })
	newLeader := mustLeader(t, c, rest...)
	if newLeader == leader {
		t.Fatal("removed node still leads")
	}
	put(t, c, rest[1], "after", `"1"`)
	if err := c.Node(leader).Ready(); !errors.Is(err, consensus.ErrRemoved) {
		t.Fatalf("removed node Ready: %v", err)
	}
	// The removed node keeps running; its messages are ignored, so the
	// term does not move while it stays around.
	term := c.Node(newLeader).Status().Term
	if term <= termBefore {
		t.Fatalf("term %d after transfer, was %d", term, termBefore)
	}
	put(t, c, newLeader, "later", `"2"`)
	if got := c.Node(newLeader).Status().Term; got != term {
		t.Fatalf("term moved from %d to %d with the removed node around", term, got)
	}
	if err := c.Crash(leader); err != nil {
		t.Fatal(err)
	}
	s := c.AssertSameState(10 * time.Second)
	if !hasItem(s, "after", `"1"`) || !hasItem(s, "later", `"2"`) {
		t.Fatalf("state %+v", s)
	}
}

// TestReplaceNode removes a node and adds a new id at the removed node's
// address; the old id cannot come back.
func TestReplaceNode(t *testing.T) {
	seed := testSeed(t)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed, Storage: harness.CrashablePebble})
	leader := mustLeader(t, c)
	victim := others(c, leader)[0]
	ctx := memberCtx(t)
	put(t, c, leader, "before", `"1"`)
	if err := c.Node(leader).RemoveMember(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.Crash(victim); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(leader).AddMember(ctx, consensus.Member{ID: "n9", PeerAddr: "memnet:" + victim}); err != nil {
		t.Fatal(err)
	}
	if err := c.StartJoining("n9"); err != nil {
		t.Fatal(err)
	}
	waitVoter(t, c, "n9", c.RunningNames()...)
	put(t, c, "n9", "after", `"2"`)
	s := c.AssertSameState(10 * time.Second)
	if !hasItem(s, "before", `"1"`) || !hasItem(s, "after", `"2"`) {
		t.Fatalf("state %+v", s)
	}
	if _, err := c.Node(leader).AddMember(ctx, consensus.Member{ID: victim, PeerAddr: "memnet:" + victim}); !errors.Is(err, consensus.ErrMemberConflict) {
		t.Fatalf("re-adding removed %s: %v", victim, err)
	}
}

// TestConfChangeWithMinorityPartitioned adds and removes members while two
// of five nodes are cut off; after healing, the minority learns the new
// membership and everyone converges.
func TestConfChangeWithMinorityPartitioned(t *testing.T) {
	seed := testSeed(t)
	c := harness.New(t, harness.Options{Nodes: 5, Seed: seed})
	leader := mustLeader(t, c)
	minority := others(c, leader)[:2]
	majority := others(c, minority...)
	c.Partition(minority, majority)
	leader = mustLeader(t, c, majority...)
	ctx := memberCtx(t)
	if err := c.AddMember(ctx, leader, "n6"); err != nil {
		t.Fatal(err)
	}
	// n6 is on the majority's side of the cut.
	c.Partition(minority, append(majority, "n6"))
	if err := c.StartJoining("n6"); err != nil {
		t.Fatal(err)
	}
	waitVoter(t, c, "n6", append(majority, "n6")...)
	if err := c.Node(leader).RemoveMember(ctx, minority[0]); err != nil {
		t.Fatal(err)
	}
	put(t, c, leader, "during", `"1"`)
	c.Heal()
	testwait.For(t, 10*time.Second, minority[0]+" learns it was removed", func() bool { return c.Node(minority[0]).Removed() })
	if err := c.Crash(minority[0]); err != nil {
		t.Fatal(err)
	}
	waitVoter(t, c, "n6", c.RunningNames()...)
	s := c.AssertSameState(15 * time.Second)
	if !hasItem(s, "during", `"1"`) {
		t.Fatalf("state %+v", s)
	}
	for _, n := range c.RunningNames() {
		if got := len(c.Node(n).Members()); got != 5 {
			t.Fatalf("%s sees %d members: %+v", n, got, c.Node(n).Members())
		}
	}
}

// TestLearnerDoesNotCountTowardQuorum: with voters {a, b} and a caught-up
// learner, losing b stops writes (were the learner counted, two of three
// would commit); promoting the learner by hand then makes it count.
func TestLearnerDoesNotCountTowardQuorum(t *testing.T) {
	seed := testSeed(t)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed,
		Configure: func(cfg *consensus.Config) { cfg.AutoPromote = false }})
	leader := mustLeader(t, c)
	ctx := memberCtx(t)
	third := others(c, leader)[1]
	if err := c.Node(leader).RemoveMember(ctx, third); err != nil {
		t.Fatal(err)
	}
	if err := c.Crash(third); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, leader, "n4"); err != nil {
		t.Fatal(err)
	}
	put(t, c, leader, "k", `"1"`)
	testwait.For(t, 10*time.Second, "learner catches up", func() bool {
		return c.Node("n4").AppliedIndex() >= c.Node(leader).AppliedIndex()
	})
	if m, _ := memberOf(c, leader, "n4"); m.Voter {
		t.Fatal("learner promoted without AutoPromote")
	}
	leader = mustLeader(t, c)
	voter := others(c, leader, third, "n4")[0]
	if err := c.Crash(voter); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := c.Client(leader).Put(wctx, "k", []byte(`"2"`))
	cancel()
	if err == nil {
		t.Fatal("a write committed with one voter of two and a learner")
	}
	if err := c.Restart(voter); err != nil {
		t.Fatal(err)
	}
	leader = mustLeader(t, c, leader, voter, "n4")
	if err := c.Node(leader).PromoteMember(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	waitVoter(t, c, "n4", leader, voter, "n4")
	// Now {leader, voter, n4} vote: losing one still leaves a quorum.
	if err := c.Crash(voter); err != nil {
		t.Fatal(err)
	}
	leader = mustLeader(t, c, leader, "n4")
	put(t, c, leader, "k", `"3"`)
}
