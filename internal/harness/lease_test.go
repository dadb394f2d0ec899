package harness_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
	"go.etcd.io/raft/v3/raftpb"
)

// holder keeps a lease alive the way a client does: a keepalive every
// period to whichever running node takes it (only the leader does),
// among the nodes targets allows.
type holder struct {
	c       *harness.Cluster
	id      kv.LeaseID
	targets func() []string

	ok   atomic.Uint64 // keepalives answered
	lost atomic.Bool   // a keepalive answered lease_not_found
	stop chan struct{}
	done sync.WaitGroup
}

func startHolder(c *harness.Cluster, id kv.LeaseID, period time.Duration, targets func() []string) *holder {
	h := &holder{c: c, id: id, targets: targets, stop: make(chan struct{})}
	if h.targets == nil {
		h.targets = c.RunningNames
	}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			h.keepAlive(period)
			select {
			case <-t.C:
			case <-h.stop:
				return
			}
		}
	}()
	return h
}

func (h *holder) keepAlive(timeout time.Duration) {
	for _, name := range h.targets() {
		if !h.c.Running(name) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err := h.c.Client(name).KeepAlive(ctx, h.id)
		cancel()
		switch {
		case err == nil:
			h.ok.Add(1)
			return
		case errors.Is(err, kv.ErrLeaseNotFound):
			h.lost.Store(true)
			return
		}
	}
}

// die stops the keepalives.
func (h *holder) die() {
	close(h.stop)
	h.done.Wait()
}

// waitKeepAlives waits until n more keepalives than now were answered.
func (h *holder) waitKeepAlives(t *testing.T, n uint64, timeout time.Duration) {
	t.Helper()
	want := h.ok.Load() + n
	testwait.For(t, timeout, "keepalives to be answered", func() bool { return h.ok.Load() >= want || h.lost.Load() })
	if h.lost.Load() {
		t.Fatal("a keepalive was answered lease_not_found: the lease expired while kept alive")
	}
}

func newLeaseCluster(t *testing.T, seed uint64, configure func(*consensus.Config)) (*harness.Cluster, string) {
	t.Helper()
	t.Logf("seed %d", seed)
	c := harness.New(t, harness.Options{Seed: seed, Leases: &kv.LessorConfig{}, Configure: configure})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, leader
}

// grantWithKey grants a lease of ttl on the leader and attaches key to it.
func grantWithKey(t *testing.T, c *harness.Cluster, leader string, ttl time.Duration, key string) kv.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Client(leader).Grant(ctx, ttl, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(leader).PutWith(ctx, key, []byte(`1`), kv.PutOptions{Lease: l.ID}); err != nil {
		t.Fatal(err)
	}
	return l.ID
}

// keyEverywhere reports whether every running node's state holds key.
func keyEverywhere(c *harness.Cluster, key string) bool {
	for _, name := range c.RunningNames() {
		if _, err := c.Client(name).Get(context.Background(), key, kv.Local); err != nil {
			return false
		}
	}
	return true
}

// Leases do not expire early across 20 leader kills with keepalives
// running: each new leader starts every countdown afresh.
func TestLeasesSurviveLeaderKills(t *testing.T) {
	c, leader := newLeaseCluster(t, 14, nil)
	const ttl = 1500 * time.Millisecond
	id := grantWithKey(t, c, leader, ttl, "held")
	h := startHolder(c, id, ttl/10, nil)
	defer h.die()
	h.waitKeepAlives(t, 2, 10*time.Second)
	const kills = 20
	for i := range kills {
		leader, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Crash(leader); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitLeader(10 * time.Second); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		if err := c.Restart(leader); err != nil {
			t.Fatal(err)
		}
		// The new leader serves a keepalive before the next kill.
		h.waitKeepAlives(t, 1, 10*time.Second)
		if !keyEverywhere(c, "held") && !h.lost.Load() {
			// A restarted node may still be replaying; the others must
			// hold it.
			testwait.For(t, 10*time.Second, "the key on every node", func() bool { return keyEverywhere(c, "held") })
		}
	}
	h.waitKeepAlives(t, 3, 10*time.Second)
	if !keyEverywhere(c, "held") {
		t.Fatal("the key of a lease kept alive is gone")
	}
	t.Logf("%d leader kills, %d keepalives answered, lease and key intact", kills, h.ok.Load())
}

// A lease whose holder dies as the leader is killed still expires: within
// its time to live and about one election of the kill.
func TestLeaseExpiresWhenHolderDiesDuringLeaderChange(t *testing.T) {
	c, leader := newLeaseCluster(t, 15, nil)
	const ttl = time.Second
	id := grantWithKey(t, c, leader, ttl, "held")
	h := startHolder(c, id, 100*time.Millisecond, nil)
	h.waitKeepAlives(t, 3, 10*time.Second)
	h.die()
	start := time.Now()
	if err := c.Crash(leader); err != nil {
		t.Fatal(err)
	}
	var gone time.Duration
	testwait.For(t, 10*time.Second, "the lease's key to go", func() bool {
		for _, name := range c.RunningNames() {
			if _, err := c.Client(name).Get(context.Background(), "held", kv.Local); errors.Is(err, kv.ErrKeyNotFound) {
				gone = time.Since(start)
				return true
			}
		}
		return false
	})
	// The new leader counts the full time to live from its start, after
	// the kill: never earlier than ttl after it.
	if gone < ttl {
		t.Fatalf("the lease expired %v after the kill, before its time to live %v", gone, ttl)
	}
	bound := ttl + consensus.DefaultConfig("x").ElectionTimeoutMax + time.Second
	if gone > bound {
		t.Fatalf("the lease expired %v after its holder died, want within %v", gone, bound)
	}
	t.Logf("lease of %v expired %v after its holder died with the leader (%v past its time to live)", ttl, gone.Round(time.Millisecond), (gone - ttl).Round(time.Millisecond))
}

// A leader cut off from the others keeps counting, finds a lease
// expired, and proposes the expiry; it must never be applied: the others
// elect a new leader, keep the lease alive, and when the old leader comes
// back its proposal is gone, not carried to the new leader.
func TestPartitionedLeaderExpiresNothing(t *testing.T) {
	// Slow elections: the cut-off leader believes it leads (check quorum)
	// for two seconds or more, past the lease's time to live (the least
	// a lease is granted, 1 s).
	slow := func(cfg *consensus.Config) {
		cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = 2*time.Second, 4*time.Second
	}
	c, old := newLeaseCluster(t, 16, slow)
	const ttl = time.Second
	id := grantWithKey(t, c, old, ttl, "held")
	var cut atomic.Bool
	h := startHolder(c, id, 100*time.Millisecond, func() []string {
		names := c.RunningNames()
		if cut.Load() {
			names = slices.DeleteFunc(names, func(n string) bool { return n == old })
		}
		return names
	})
	defer h.die()
	h.waitKeepAlives(t, 3, 10*time.Second)
	cut.Store(true)
	c.Isolate(old)
	oldLessor := func() kv.LessorStats { return c.Lessor(old).Stats() }
	testwait.For(t, 10*time.Second, "the cut-off leader to propose the expiry", func() bool { return oldLessor().ExpiriesProposed > 0 })
	var others []string
	for _, n := range c.RunningNames() {
		if n != old {
			others = append(others, n)
		}
	}
	if _, err := c.WaitLeader(20*time.Second, others...); err != nil {
		t.Fatal(err)
	}
	h.waitKeepAlives(t, 3, 20*time.Second)
	c.Heal()
	if _, err := c.WaitLeader(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The old leader catches up, and keepalives go on past several times
	// to live: the lease and its key stay everywhere.
	h.waitKeepAlives(t, 10, 20*time.Second)
	testwait.For(t, 10*time.Second, "the key on every node", func() bool { return keyEverywhere(c, "held") })
	testwait.For(t, 10*time.Second, "the cut-off leader's expiry to fail", func() bool { return oldLessor().ExpiriesNotApplied > 0 })
	st := oldLessor()
	t.Logf("the cut-off leader proposed %d expiries, %d not applied; the lease lived on", st.ExpiriesProposed, st.ExpiriesNotApplied)
}

// stallable holds a node's Saves while stalled is set.
type stallable struct {
	consensus.LogStorage
	mu      sync.Mutex
	stalled bool
	resumed *sync.Cond
}

func newStallable(st consensus.LogStorage) *stallable {
	s := &stallable{LogStorage: st}
	s.resumed = sync.NewCond(&s.mu)
	return s
}

func (s *stallable) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	s.mu.Lock()
	for s.stalled {
		s.resumed.Wait()
	}
	s.mu.Unlock()
	return s.LogStorage.Save(hs, ents, snap)
}

func (s *stallable) stall(on bool) {
	s.mu.Lock()
	s.stalled = on
	s.mu.Unlock()
	s.resumed.Broadcast()
}

// A leader whose storage write hangs for longer than its leases' time to
// live (so keepalives cannot be served) expires nothing: once its disk is
// back, every countdown starts again and the holder's keepalives keep the
// lease (etcd-io/etcd#15247). One node, so no other leader takes over.
func TestStalledLeaderExpiresNothing(t *testing.T) {
	var disk *stallable
	c := harness.New(t, harness.Options{Nodes: 1, Seed: 17, Leases: &kv.LessorConfig{},
		WrapStorage: func(_ string, st consensus.LogStorage) consensus.LogStorage {
			disk = newStallable(st)
			return disk
		}})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	id := grantWithKey(t, c, leader, ttl, "held")
	h := startHolder(c, id, 200*time.Millisecond, nil)
	defer h.die()
	h.waitKeepAlives(t, 3, 10*time.Second)
	disk.stall(true)
	stalledAt := time.Now()
	testwait.For(t, 10*time.Second, "the stall to outlast the time to live", func() bool {
		return time.Since(stalledAt) > 2*ttl
	})
	disk.stall(false)
	h.waitKeepAlives(t, 5, 10*time.Second)
	if !keyEverywhere(c, "held") {
		t.Fatal("the lease's key went during the stall")
	}
	if st := c.Lessor(leader).Stats(); st.ExpiriesProposed != 0 {
		t.Fatalf("the stalled leader proposed %d expiries", st.ExpiriesProposed)
	}
}
