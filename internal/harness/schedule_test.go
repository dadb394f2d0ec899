package harness_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// scheduleTicks checks that queue holds exactly one task per tick of the
// every-ms schedule id from its first to its last fired tick, none
// missing and none beyond, that the schedule counted each tick fired
// once, and returns the number of ticks.
func scheduleTicks(t *testing.T, st *kv.Store, id, queue string, every int64) (kv.ScheduleInfo, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Schedule(ctx, id, kv.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	tasks, more, err := st.ListTasks(ctx, queue, "", "", kv.MaxTaskList, kv.Linearizable)
	if err != nil || more {
		t.Fatalf("list tasks: %v (more %v)", err, more)
	}
	seen := make(map[int64]bool)
	first := int64(-1)
	for _, task := range tasks {
		var tick int64
		if _, err := fmt.Sscanf(task.ID, api.ScheduleTaskPrefix+id+":%d", &tick); err != nil || tick%every != 0 {
			t.Fatalf("task %q is not a tick of %s", task.ID, id)
		}
		seen[tick] = true
		if first < 0 || tick < first {
			first = tick
		}
	}
	if len(tasks) == 0 {
		t.Fatalf("no tick was fired: %+v", info)
	}
	for tick := first; tick <= info.LastTickMs; tick += every {
		if !seen[tick] {
			t.Fatalf("tick %d missing between %d and %d: %+v", tick, first, info.LastTickMs, info)
		}
	}
	if want := int((info.LastTickMs-first)/every) + 1; len(tasks) != want {
		t.Fatalf("%d tasks for %d ticks from %d to %d", len(tasks), want, first, info.LastTickMs)
	}
	// A tick fired twice would count twice: its enqueue adds nothing the
	// second time.
	if info.Fired != int64(len(tasks)) {
		t.Fatalf("the schedule counted %d fires for %d ticks: a tick fired twice", info.Fired, len(tasks))
	}
	return info, len(tasks)
}

// A schedule ticking every second keeps ticking across 20 kills of the
// leader: every tick from the first to the last is enqueued exactly
// once (none twice, none missing; no outage here is long enough for the
// catch-up limit to skip one).
func TestScheduleTicksOnceAcrossLeaderKills(t *testing.T) {
	const seed = 15_21
	t.Logf("seed %d", seed)
	c := harness.New(t, harness.Options{Seed: seed, Storage: harness.MemoryStorage,
		Schedules: &kv.SchedulerConfig{Tick: 20 * time.Millisecond},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 40; cfg.SnapshotCatchUpEntries = 8 }})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const id, queue, every = "tick", "ticks", int64(1000)
	start := time.Now()
	if _, err := c.Client(leader).PutSchedule(ctx, id, kv.ScheduleRequest{EveryMs: every, Queue: queue, Data: []byte(`"t"`)}); err != nil {
		t.Fatal(err)
	}
	fired := func(name string) int64 {
		info, ok := c.Client(name).Machine().Schedule(id)
		if !ok {
			return 0
		}
		return info.Fired
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	var kills int
	for kills < 20 {
		leader, err = c.WaitLeader(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if kills%2 == 0 {
			// A tick fired under this leader before it is killed.
			before := fired(leader)
			testwait.For(t, 10*time.Second, "a tick under "+leader, func() bool { return fired(leader) > before })
		} else {
			// Killed around the next tick, from 100 ms before to 200 ms
			// after it (by the seed): often while its fire is being
			// proposed or committed.
			next := (time.Now().UnixMilli()/every + 1) * every
			at := time.UnixMilli(next + int64(rng.IntN(300)) - 100)
			timer := time.NewTimer(time.Until(at))
			<-timer.C
		}
		if err := c.Crash(leader); err != nil {
			t.Fatal(err)
		}
		kills++
		if _, err := c.WaitLeader(10*time.Second, c.RunningNames()...); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(leader); err != nil {
			t.Fatal(err)
		}
	}
	leader, err = c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The ticks up to now, by the leader's clock, are in.
	end := time.Now().UnixMilli()
	testwait.For(t, 10*time.Second, "the ticks up to the end", func() bool {
		info, ok := c.Client(leader).Machine().Schedule(id)
		return ok && info.LastTickMs >= end/every*every
	})
	info, n := scheduleTicks(t, c.Client(leader), id, queue, every)
	if info.Skipped != 0 {
		t.Fatalf("%d ticks skipped: %+v", info.Skipped, info)
	}
	if first := info.LastTickMs - int64(n-1)*every; first > start.UnixMilli()+every {
		t.Fatalf("the first tick %d is more than a tick after the put at %d", first, start.UnixMilli())
	}
	t.Logf("%d leader kills over %v: %d ticks, each enqueued once, none skipped", kills, time.Since(start).Round(time.Millisecond), n)
}

// fakeClock is a wall clock the test moves.
type fakeClock struct{ ms atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.UnixMilli(f.ms.Load()) }
func (f *fakeClock) advance(d time.Duration) { f.ms.Add(d.Milliseconds()) }

// Snapshots and restarts keep schedules and their last tick: after log
// compaction and a crash of every node, no tick is fired twice; the
// ticks missed while every node was down are caught up on restart up to
// api.ScheduleCatchUp, the newest, and the older ones are counted as
// skipped.
func TestScheduleSurvivesSnapshotsAndRestarts(t *testing.T) {
	const seed = 15_22
	t.Logf("seed %d", seed)
	clock := &fakeClock{}
	clock.ms.Store(1_700_000_000_500)
	c := harness.New(t, harness.Options{Seed: seed, Storage: harness.CrashablePebble,
		Schedules: &kv.SchedulerConfig{Tick: 10 * time.Millisecond, Now: clock.now},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 20; cfg.SnapshotCatchUpEntries = 4 }})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const id, queue, every = "nightly", "jobs", int64(1000)
	st := c.Client(leader)
	st.UseClock(clock.now)
	if _, err := st.PutSchedule(ctx, id, kv.ScheduleRequest{EveryMs: every, Queue: queue, Data: []byte(`{"job":1}`)}); err != nil {
		t.Fatal(err)
	}
	lastTick := func(name string) int64 {
		info, _ := c.Client(name).Machine().Schedule(id)
		return info.LastTickMs
	}
	for range 5 {
		clock.advance(time.Second)
		want := clock.ms.Load() / every * every
		testwait.For(t, 10*time.Second, "the tick at the clock", func() bool { return lastTick(leader) == want })
	}
	for i := range 60 {
		if _, err := st.Put(ctx, fmt.Sprintf("fill/%d", i), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	before, n := scheduleTicks(t, st, id, queue, every)
	if n != 5 {
		t.Fatalf("%d ticks before the restarts, want 5", n)
	}
	for _, name := range c.Names() {
		if c.Node(name).Status().SnapshotIndex == 0 {
			t.Fatalf("%s took no snapshot", name)
		}
		if err := c.Crash(name); err != nil {
			t.Fatal(err)
		}
	}
	// 150 ticks pass with every node down.
	clock.advance(150 * time.Second)
	for _, name := range c.Names() {
		if err := c.Restart(name); err != nil {
			t.Fatal(err)
		}
	}
	if leader, err = c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	want := clock.ms.Load() / every * every
	testwait.For(t, 10*time.Second, "the catch-up", func() bool { return lastTick(leader) == want })
	after, err := c.Client(leader).Schedule(ctx, id, kv.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if after.Fired != before.Fired+api.ScheduleCatchUp || after.Skipped != 150-api.ScheduleCatchUp || after.Revision != before.Revision {
		t.Fatalf("after 150 missed ticks: %+v; before: %+v", after, before)
	}
	// The ticks before the restarts were not fired again, and the caught
	// up ones are the newest.
	tasks, _, err := c.Client(leader).ListTasks(ctx, queue, "", "", kv.MaxTaskList, kv.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != int(after.Fired) {
		t.Fatalf("%d tasks for %d fires", len(tasks), after.Fired)
	}
	ids := make(map[string]bool)
	for _, task := range tasks {
		ids[task.ID] = true
	}
	for tick := before.LastTickMs - 4*every; tick <= before.LastTickMs; tick += every {
		if !ids[kv.ScheduleTaskID(id, tick)] {
			t.Fatalf("tick %d from before the restarts is gone", tick)
		}
	}
	for k := int64(1); k <= 150; k++ {
		tick := before.LastTickMs + k*every
		if ids[kv.ScheduleTaskID(id, tick)] != (k > 150-api.ScheduleCatchUp) {
			t.Fatalf("missed tick %d (%d of 150): enqueued %v", tick, k, ids[kv.ScheduleTaskID(id, tick)])
		}
	}
	// Every node holds the same schedule.
	testwait.For(t, 10*time.Second, "every node's schedule to agree", func() bool {
		for _, name := range c.RunningNames() {
			if err := c.Node(name).LinearizableRead(ctx); err != nil {
				return false
			}
			if info, _ := c.Client(name).Machine().Schedule(id); !reflect.DeepEqual(info, after) {
				return false
			}
		}
		return true
	})
}
