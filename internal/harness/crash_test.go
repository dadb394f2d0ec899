package harness_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"go.etcd.io/raft/v3/raftpb"
)

// TestClusterCrashDurability: a 3-node cluster on crash-able Pebble
// storage takes writes from concurrent clients while nodes crash at
// random moments, losing whatever they had not synced (the leader too,
// and finally all three at once), and restart. Every acknowledged write
// must be on every node afterwards, with its value.
func TestClusterCrashDurability(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			testClusterCrashDurability(t, seed)
		})
	}
}

// ackedWrites records the writes clients saw acknowledged.
type ackedWrites struct {
	mu    sync.Mutex
	vals  map[string]string
	count atomic.Int64
}

func (a *ackedWrites) add(key, value string) {
	a.mu.Lock()
	a.vals[key] = value
	a.mu.Unlock()
	a.count.Add(1)
}

// waitAcks waits until n more writes are acknowledged after from.
func (a *ackedWrites) waitAcks(t *testing.T, seed uint64, from int64, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for a.count.Load() < from+int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: %d writes acknowledged in 20s, waiting for %d", seed, a.count.Load()-from, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testClusterCrashDurability(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x637261))
	t.Logf("seed %d (replay: go test -race -run 'TestClusterCrashDurability/seed=%d' ./internal/harness/)", seed, seed)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed, Storage: harness.CrashablePebble})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	acked := &ackedWrites{vals: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				running := c.RunningNames()
				if len(running) == 0 {
					backOff()
					continue
				}
				node := running[wrng.IntN(len(running))]
				key, value := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`"v%d-%d"`, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := c.Client(node).Put(ctx, key, []byte(value))
				cancel()
				if err == nil {
					acked.add(key, value)
				} else {
					backOff()
				}
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	crashes := 0
	crash := func(name string) {
		t.Helper()
		if err := c.Crash(name); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		crashes++
	}
	restart := func(name string) {
		t.Helper()
		if err := c.Restart(name); err != nil {
			t.Fatalf("seed %d: restart %s after its crash: %v", seed, name, err)
		}
	}
	names := c.Names()
	for round := range 4 {
		acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(60))
		victim := names[rng.IntN(len(names))]
		if round%2 == 1 {
			if l := c.Leader(); l != "" {
				victim = l
			}
		}
		crash(victim)
		acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(40))
		restart(victim)
	}
	// Then all of them, while writes are in flight.
	acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(60))
	for _, name := range names {
		crash(name)
	}
	for _, name := range names {
		restart(name)
	}
	acked.waitAcks(t, seed, acked.count.Load(), 10)
	close(stop)
	wg.Wait()

	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	s := c.AssertSameState(20 * time.Second)
	have := map[string]string{}
	for _, it := range s.Items {
		have[it.Key] = string(it.Value)
	}
	acked.mu.Lock()
	defer acked.mu.Unlock()
	lost := 0
	for k, v := range acked.vals {
		if have[k] != v {
			lost++
			if lost <= 5 {
				t.Errorf("seed %d: acknowledged write %s=%s is %q on every node", seed, k, v, have[k])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("seed %d: %d of %d acknowledged writes lost after %d crashes", seed, lost, len(acked.vals), crashes)
	}
	t.Logf("seed %d: %d acknowledged writes (%d keys stored) all present on every node after %d crashes", seed, len(acked.vals), len(s.Items), crashes)
}

// saveWatch is a WrapStorage wrapper that records each node's last saved
// entry index and can hold one node's next Save of a command.
type saveWatch struct {
	consensus.LogStorage
	name string
	w    *saveWatches
}

type saveWatches struct {
	mu sync.Mutex
	// saved is the highest entry index each node's Save returned for.
	saved map[string]uint64
	// delivered is the network's delivered count read right after it.
	delivered map[string]uint64
	// hold names the node whose next Save of a command blocks: it sends
	// that Save's last index on held, then waits for release.
	hold    string
	held    chan uint64
	release chan struct{}
	// net reads the network's delivered count (nil until the cluster
	// exists).
	net func() uint64
}

func (s *saveWatch) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) error {
	w := s.w
	if n := len(entries); n > 0 && len(entries[n-1].GetData()) > 0 {
		w.mu.Lock()
		hold := w.hold == s.name
		if hold {
			w.hold = ""
		}
		w.mu.Unlock()
		if hold {
			w.held <- entries[n-1].GetIndex()
			<-w.release
		}
	}
	err := s.LogStorage.Save(hs, entries, snap)
	if n := len(entries); n > 0 && err == nil {
		w.mu.Lock()
		var d uint64
		if w.net != nil {
			d = w.net()
		}
		w.saved[s.name] = max(w.saved[s.name], entries[n-1].GetIndex())
		w.delivered[s.name] = d
		w.mu.Unlock()
	}
	return err
}

// TestCrashIsAtomic is the regression test for the one failure of
// TestClusterCrashDurability (issue 13: 2 of 438 acknowledged writes
// lost). It builds, deterministically, the interleaving that produced
// it: the leader has sent an entry to one follower, which saved it and
// acknowledged it, and the leader's own Save of it is still in flight when
// the crash copies its disk. The copy need not hold the leader's copy of
// the entry, so the entry may be on one node of three, and a restarted
// cluster can elect a leader without it. The leader must therefore never
// acknowledge that write. Before the harness's crash gate, the Save
// finished on the discarded file system after the copy, raft counted the
// leader's own vote, committed the entry with the follower's, and the Put
// returned success: an acknowledged write no real power loss could
// produce, which the durability check then reported as lost.
func TestCrashIsAtomic(t *testing.T) {
	const seed = 7
	t.Logf("seed %d", seed)
	w := &saveWatches{saved: map[string]uint64{}, delivered: map[string]uint64{}, held: make(chan uint64, 1), release: make(chan struct{})}
	put := make(chan error, 1)
	var putErr error
	var c *harness.Cluster
	c = harness.New(t, harness.Options{
		Nodes: 3, Seed: seed, Storage: harness.CrashablePebble,
		WrapStorage: func(name string, st consensus.LogStorage) consensus.LogStorage {
			return &saveWatch{LogStorage: st, name: name, w: w}
		},
		// The copy is taken: let the leader's Save finish, as a disk
		// would a moment after the power went, and let the node run on
		// until it either acknowledges the write or stops.
		OnCrash: func(name string) {
			close(w.release)
			select {
			case putErr = <-put:
			case <-c.Node(name).Done():
				putErr = <-put
			}
		},
	})
	w.mu.Lock()
	w.net = func() uint64 { return c.Network().Stats().Delivered }
	w.mu.Unlock()
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(leader).Put(ctx, "before", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	c.AssertSameState(10 * time.Second)
	var follower, cutOff string
	for _, n := range c.Names() {
		switch {
		case n == leader:
		case follower == "":
			follower = n
		default:
			cutOff = n
		}
	}
	// Only the follower gets the entry; the other hears nothing.
	c.Isolate(cutOff)
	w.mu.Lock()
	w.hold = leader
	w.mu.Unlock()

	go func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer pcancel()
		_, err := c.Client(leader).Put(pctx, "k", []byte(`"v"`))
		put <- err
	}()
	var index uint64
	select {
	case index = <-w.held:
	case <-ctx.Done():
		t.Fatal("the leader's Save of the write never started")
	}
	// The follower saved the entry and its acknowledgement was delivered
	// to the leader (the only message delivered since: the leader's loop
	// is held, the third node cut off); Crash's cut of the leader's wire
	// waits for that delivery to be stepped.
	for {
		w.mu.Lock()
		saved, d0 := w.saved[follower], w.delivered[follower]
		w.mu.Unlock()
		if saved >= index && c.Network().Stats().Delivered > d0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("follower %s never saved and acknowledged index %d (saved %d)", follower, index, saved)
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Crash(leader); err != nil {
		t.Fatal(err)
	}
	if putErr == nil {
		t.Fatalf("the crashed leader acknowledged index %d after the crash instant; only %s holds it for sure", index, follower)
	}
	t.Logf("the write at index %d was not acknowledged: %v", index, putErr)
}
