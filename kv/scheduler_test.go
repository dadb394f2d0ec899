package kv

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
)

// scheduleLeader is fakeLeader (lessor_test.go) counting what the
// scheduler asks of it: Leading calls, and proposals made while it did
// not lead or for another term.
type scheduleLeader struct {
	*fakeLeader
	asked                             atomic.Int64
	proposedWhileFollowing, staleTerm atomic.Int64
}

func (f *scheduleLeader) Leading() (uint64, bool) {
	f.asked.Add(1)
	return f.fakeLeader.Leading()
}

func (f *scheduleLeader) ProposeInTerm(_ context.Context, cmd []byte, term uint64) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.leading:
		f.proposedWhileFollowing.Add(1)
		return nil, consensus.ErrNotLeader
	case term != f.term:
		f.staleTerm.Add(1)
		return nil, consensus.ErrNotLeader
	}
	return f.applyLocked(cmd), nil
}

// The scheduler fires due ticks only while its node leads, in the term
// it leads, catching up the ticks missed meanwhile in one fire.
func TestSchedulerFiresOnlyWhileLeading(t *testing.T) {
	m := NewMachine()
	f := &scheduleLeader{fakeLeader: &fakeLeader{m: m}}
	var clock atomic.Int64
	clock.Store(5_500)
	s := NewScheduler(f, m, SchedulerConfig{Tick: 2 * time.Millisecond, Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	s.Start()
	defer s.Stop()
	if r := f.apply(t, command{Op: opSchedulePut, Key: "s", Queue: "q", Every: 1000, Value: []byte(`1`), At: 0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	lastTick := func() int64 {
		info, _ := m.Schedule("s")
		return info.LastTickMs
	}
	// Following: nothing is proposed, however many ticks are due.
	asked := f.asked.Load()
	testwait.For(t, 5*time.Second, "the scheduler to look while following", func() bool { return f.asked.Load() > asked+5 })
	if lastTick() != 0 || f.proposedWhileFollowing.Load() != 0 {
		t.Fatalf("fired while following: last tick %d, %d proposals", lastTick(), f.proposedWhileFollowing.Load())
	}
	f.set(3, true)
	testwait.For(t, 5*time.Second, "the due ticks", func() bool { return lastTick() == 5000 })
	clock.Store(6_200)
	testwait.For(t, 5*time.Second, "the next tick", func() bool { return lastTick() == 6000 })
	// Following again while ten ticks pass, then leading a new term.
	f.set(3, false)
	clock.Store(16_100)
	asked = f.asked.Load()
	testwait.For(t, 5*time.Second, "the scheduler to look while following", func() bool { return f.asked.Load() > asked+5 })
	if lastTick() != 6000 {
		t.Fatalf("fired while following: last tick %d", lastTick())
	}
	f.set(4, true)
	testwait.For(t, 5*time.Second, "the missed ticks", func() bool { return lastTick() == 16_000 })
	info, _ := m.Schedule("s")
	if info.Fired != 16 || info.Skipped != 0 || f.proposedWhileFollowing.Load() != 0 || f.staleTerm.Load() != 0 {
		t.Fatalf("%+v; %d proposals while following, %d for a stale term", info, f.proposedWhileFollowing.Load(), f.staleTerm.Load())
	}
	tasks, _ := m.Tasks("q", "", "", 100, 0)
	if len(tasks) != 16 {
		t.Fatalf("%d tasks for 16 ticks", len(tasks))
	}
	t.Logf("%+v", s.Stats())
}
