package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

// fakeLeader is a LeaderNode over a Machine: it leads the term the test
// sets and applies what is proposed in that term at once.
type fakeLeader struct {
	mu      sync.Mutex
	term    uint64
	leading bool
	stall   time.Duration
	m       *Machine
	index   uint64
	expired [][]int64 // expiries applied
}

func (f *fakeLeader) set(term uint64, leading bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.term, f.leading = term, leading
}

func (f *fakeLeader) Leading() (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term, f.leading
}

func (f *fakeLeader) LinearizableRead(context.Context) error { return nil }

func (f *fakeLeader) StorageStall() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stall
}

func (f *fakeLeader) ProposeInTerm(_ context.Context, cmd []byte, term uint64) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leading || f.term != term {
		return nil, consensus.ErrNotLeader
	}
	c, _ := decodeCommand(cmd)
	f.expired = append(f.expired, c.Leases)
	return f.applyLocked(cmd), nil
}

func (f *fakeLeader) applyLocked(cmd []byte) Result {
	f.index++
	return f.m.Apply(f.index, cmd).(Result)
}

func (f *fakeLeader) apply(t *testing.T, c command) Result {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyLocked(mustCmd(t, c))
}

func (f *fakeLeader) expiries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.expired)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestLessor(t *testing.T) (*Lessor, *fakeLeader, *fakeClock) {
	f := &fakeLeader{m: NewMachine()}
	clk := &fakeClock{now: time.Unix(1000, 0)}
	l := NewLessor(f, f.m, LessorConfig{Now: clk.Now, Tick: 10 * time.Millisecond, StallBound: 500 * time.Millisecond})
	return l, f, clk
}

// until polls cond for up to five seconds (the lessor's rebuild and
// expiry run on goroutines of their own).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// step advances the clock by d in ticks of 10ms, ticking each time (the
// lessor would otherwise see a gap and count it a stall).
func step(l *Lessor, clk *fakeClock, d time.Duration) {
	for ; d > 0; d -= 10 * time.Millisecond {
		clk.advance(min(d, 10*time.Millisecond))
		l.tick()
	}
}

func (l *Lessor) isReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

// becomeLeader makes f lead term and waits for the lessor's rebuild.
func becomeLeader(t *testing.T, l *Lessor, f *fakeLeader, term uint64) {
	t.Helper()
	f.set(term, true)
	l.tick()
	until(t, "the lease clock's rebuild", func() bool { l.tick(); return l.isReady() })
}

func leaseExists(m *Machine, id LeaseID) bool {
	_, ok := m.LeaseInfo(id)
	return ok
}

// A lease expires on the leader's clock, not before its time to live and
// soon after, taking its keys; a follower's lessor expires nothing.
func TestLessorExpiresOnTheLeadersClock(t *testing.T) {
	l, f, clk := newTestLessor(t)
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 1000})
	f.apply(t, command{Op: opPut, Key: "k", Value: []byte(`1`), Lease: 1})
	step(l, clk, 5*time.Second) // a follower: nothing expires
	if !leaseExists(f.m, 1) {
		t.Fatal("a follower's lessor expired a lease")
	}
	becomeLeader(t, l, f, 2)
	step(l, clk, 990*time.Millisecond)
	if f.expiries() != 0 {
		t.Fatal("expired before its time to live, counted from the new leader's start")
	}
	step(l, clk, 20*time.Millisecond)
	until(t, "the expiry", func() bool { return !leaseExists(f.m, 1) })
	if _, ok := f.m.Get("k"); ok {
		t.Fatal("the expired lease's key survived")
	}
}

// A new leader restarts every countdown at the full time to live.
func TestLessorNewLeaderRestartsCountdowns(t *testing.T) {
	l, f, clk := newTestLessor(t)
	becomeLeader(t, l, f, 2)
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 1000})
	step(l, clk, 900*time.Millisecond)
	f.set(3, true) // leadership moved away and back: a new term
	l.tick()
	until(t, "the rebuild in term 3", func() bool { l.tick(); return l.isReady() })
	step(l, clk, 900*time.Millisecond)
	if f.expiries() != 0 || !leaseExists(f.m, 1) {
		t.Fatal("the lease expired early across a change of term")
	}
	step(l, clk, 200*time.Millisecond)
	until(t, "the expiry", func() bool { return !leaseExists(f.m, 1) })
}

// Keepalives move the deadline in the leader's memory; a follower, an
// unknown lease and an expired one are refused.
func TestLessorKeepAlive(t *testing.T) {
	l, f, clk := newTestLessor(t)
	ctx := context.Background()
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 1000})
	if _, err := l.KeepAlive(ctx, 1); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("keepalive on a follower: %v, want ErrNotLeader", err)
	}
	becomeLeader(t, l, f, 2)
	for range 5 {
		step(l, clk, 800*time.Millisecond)
		got, err := l.KeepAlive(ctx, 1)
		if err != nil || got.RemainingMs == nil || *got.RemainingMs != 1000 {
			t.Fatalf("keepalive: %+v, %v", got, err)
		}
	}
	if !leaseExists(f.m, 1) || f.expiries() != 0 {
		t.Fatal("a lease kept alive expired")
	}
	ttl, err := l.TimeToLive(ctx, 1)
	if err != nil || *ttl.RemainingMs != 1000 {
		t.Fatalf("time to live right after a keepalive: %+v, %v", ttl, err)
	}
	step(l, clk, 300*time.Millisecond)
	if ttl, _ := l.TimeToLive(ctx, 1); *ttl.RemainingMs != 700 {
		t.Fatalf("remaining %d ms, want 700", *ttl.RemainingMs)
	}
	if _, err := l.KeepAlive(ctx, 9); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of an unknown lease: %v", err)
	}
	step(l, clk, 700*time.Millisecond)
	until(t, "the expiry", func() bool { return !leaseExists(f.m, 1) })
	if _, err := l.KeepAlive(ctx, 1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of an expired lease: %v", err)
	}
}

// While the leader's storage write hangs nothing expires, and afterwards
// every countdown starts again (keepalives could not be served).
func TestLessorStalledStorageExpiresNothing(t *testing.T) {
	l, f, clk := newTestLessor(t)
	becomeLeader(t, l, f, 2)
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 1000})
	step(l, clk, 500*time.Millisecond)
	f.mu.Lock()
	f.stall = 2 * time.Second
	f.mu.Unlock()
	step(l, clk, 2*time.Second)
	if f.expiries() != 0 {
		t.Fatal("a stalled leader expired a lease")
	}
	f.mu.Lock()
	f.stall = 0
	f.mu.Unlock()
	step(l, clk, 900*time.Millisecond)
	if f.expiries() != 0 {
		t.Fatal("expired within its time to live of the stall's end")
	}
	step(l, clk, 200*time.Millisecond)
	until(t, "the expiry", func() bool { return !leaseExists(f.m, 1) })
}

// A lessor that went unscheduled longer than the stall bound restarts the
// countdowns rather than expire everything at once.
func TestLessorGapRestartsCountdowns(t *testing.T) {
	l, f, clk := newTestLessor(t)
	becomeLeader(t, l, f, 2)
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 1000})
	clk.advance(3 * time.Second) // no tick for 3 s
	l.tick()
	step(l, clk, 900*time.Millisecond)
	if f.expiries() != 0 {
		t.Fatal("expired right after a gap in the lessor's ticks")
	}
	step(l, clk, 200*time.Millisecond)
	until(t, "the expiry", func() bool { return !leaseExists(f.m, 1) })
}

// An expiry proposed in a term that ended is never applied.
func TestLessorDeposedLeaderExpiresNothing(t *testing.T) {
	l, f, clk := newTestLessor(t)
	becomeLeader(t, l, f, 2)
	f.apply(t, command{Op: opLeaseGrant, Lease: 1, TTL: 100})
	clk.advance(50 * time.Millisecond)
	l.tick()
	// The lessor still believes it leads term 2 (its next tick has not
	// run), but the node has moved on: the expiry it proposes must fail.
	f.set(3, false)
	clk.advance(60 * time.Millisecond)
	l.mu.Lock()
	l.lastTick = clk.Now() // not a gap
	l.mu.Unlock()
	l.expire(2, []int64{1})
	if !leaseExists(f.m, 1) {
		t.Fatal("an expiry proposed for a term that ended was applied")
	}
}

// Countdowns shows the leader's deadlines: the time left of the leases
// asked for, and the soonest ones in order (ties by id); nothing on a
// follower.
func TestLessorCountdowns(t *testing.T) {
	l, f, clk := newTestLessor(t)
	for id, ttl := range map[LeaseID]int64{1: 5000, 2: 1000, 3: 3000, 4: 1000, 5: 9000} {
		f.apply(t, command{Op: opLeaseGrant, Lease: int64(id), TTL: ttl})
	}
	if _, _, ok := l.Countdowns([]LeaseID{1}, 3); ok {
		t.Fatal("a follower's lessor showed countdowns")
	}
	becomeLeader(t, l, f, 2)
	step(l, clk, 200*time.Millisecond)
	if _, err := l.KeepAlive(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	remaining, soonest, ok := l.Countdowns([]LeaseID{1, 2, 99}, 3)
	if !ok {
		t.Fatal("the leader showed no countdowns")
	}
	if len(remaining) != 2 || remaining[1] != 4800 || remaining[2] != 1000 {
		t.Errorf("remaining: %v, want 1: 4800, 2: 1000 and no 99", remaining)
	}
	var got []string
	for _, l := range soonest {
		got = append(got, fmt.Sprintf("%s %d/%d", l.ID, *l.RemainingMs, l.TTLMs))
	}
	if want := []string{"4 800/1000", "2 1000/1000", "3 2800/3000"}; !slices.Equal(got, want) {
		t.Errorf("soonest: %q, want %q", got, want)
	}
	if _, all, _ := l.Countdowns(nil, 10); len(all) != 5 {
		t.Errorf("the 10 soonest of 5 leases: %d", len(all))
	}
	if _, none, ok := l.Countdowns(nil, 0); !ok || len(none) != 0 {
		t.Errorf("the 0 soonest: %v %v", none, ok)
	}
}
