package kv

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
)

func (r *queueRig) putSchedule(id, queue, cron string, every, at int64) {
	r.t.Helper()
	res := r.apply(command{Op: opSchedulePut, Key: id, Queue: queue, Cron: cron, Every: every, Value: []byte(`{"s":1}`), At: at})
	if res.Err != nil {
		r.t.Fatalf("put schedule %s: %v", id, res.Err)
	}
}

func (r *queueRig) schedule(id string) ScheduleInfo {
	r.t.Helper()
	info, ok := r.m.Schedule(id)
	if !ok {
		r.t.Fatalf("schedule %s missing", id)
	}
	return info
}

// taskIDs lists the ids of queue's tasks, by id.
func (r *queueRig) taskIDs(queue string) []string {
	r.t.Helper()
	tasks, _ := r.m.Tasks(queue, "", "", MaxTaskList, 0)
	var ids []string
	for _, t := range tasks {
		ids = append(ids, t.ID)
	}
	return ids
}

// A fire enqueues the due tick once, with the task id the schedule and
// the tick make; a repeated fire of a tick, or one not yet due, changes
// nothing; a late fire enqueues every tick it missed.
func TestScheduleFireEnqueuesEachTickOnce(t *testing.T) {
	r := newQueueRig(t)
	r.putSchedule("s", "q", "", 1000, 10_500)
	if info := r.schedule("s"); info.NextTickMs != 11_000 || info.LastTickMs != 0 || info.NextTick != "1970-01-01T00:00:11Z" {
		t.Fatalf("after put: %+v", info)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 11_000, At: 10_900}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("fire before the tick = %v, want ErrConflict", res.Err)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 11_000, At: 11_200}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 11_000, At: 11_300}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("a second fire of tick 11000 = %v, want ErrConflict", res.Err)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 12_000, At: 13_100}); res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []string{"sched:s:11000", "sched:s:12000", "sched:s:13000"}
	if got := r.taskIDs("q"); !slices.Equal(got, want) {
		t.Fatalf("tasks %v, want %v", got, want)
	}
	info := r.schedule("s")
	if info.Fired != 3 || info.Skipped != 0 || info.LastTickMs != 13_000 || info.NextTickMs != 14_000 {
		t.Fatalf("after fires: %+v", info)
	}
	if st := r.state("q", "sched:s:12000"); st.State != api.TaskReady || st.ReadyAtMs != 12_000 || string(st.Data) != `{"s":1}` {
		t.Fatalf("a tick's task: %+v", st)
	}
	// An equal put changes nothing; another one starts from the clock,
	// keeping the history.
	rev := info.Revision
	r.putSchedule("s", "q", "", 1000, 13_500)
	if r.schedule("s").Revision != rev {
		t.Fatal("an equal put replaced the schedule")
	}
	r.putSchedule("s", "q", "*/5 * * * * *", 0, 13_500)
	if info := r.schedule("s"); info.NextTickMs != 15_000 || info.Fired != 3 || info.Revision == rev {
		t.Fatalf("after a new put: %+v", info)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 14_000, At: 15_000}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("a fire of the old schedule's tick = %v, want ErrConflict", res.Err)
	}
	if res := r.apply(command{Op: opScheduleDelete, Key: "s", At: 15_000}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 15_000, At: 15_000}); !errors.Is(res.Err, ErrScheduleNotFound) {
		t.Fatalf("a fire of a deleted schedule = %v", res.Err)
	}
	if res := r.apply(command{Op: opScheduleDelete, Key: "s", At: 15_000}); !errors.Is(res.Err, ErrScheduleNotFound) {
		t.Fatalf("a second delete = %v", res.Err)
	}
	if len(r.taskIDs("q")) != 3 {
		t.Fatal("deleting the schedule dropped its tasks")
	}
}

// Ticks missed for a long time are enqueued up to api.ScheduleCatchUp, the
// newest; the older ones are skipped and counted. Fixed intervals and
// cron expressions (with seconds, and of 5 fields) alike.
func TestScheduleCatchUpLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cron  string
		every int64
		step  int64
	}{
		{"everyMs", "", 1000, 1000},
		{"cron with seconds", "* * * * * *", 0, 1000},
		{"cron of 5 fields", "* * * * *", 0, 60_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newQueueRig(t)
			r.putSchedule("s", "q", tc.cron, tc.every, 0)
			missed := int64(250)
			now := missed*tc.step + tc.step/2
			if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: tc.step, At: now}); res.Err != nil {
				t.Fatal(res.Err)
			}
			info := r.schedule("s")
			if info.Fired != api.ScheduleCatchUp || info.Skipped != missed-api.ScheduleCatchUp || info.LastTickMs != missed*tc.step {
				t.Fatalf("after a catch-up: %+v", info)
			}
			ids := r.taskIDs("q")
			oldest := ScheduleTaskID("s", (missed-api.ScheduleCatchUp+1)*tc.step)
			if len(ids) != api.ScheduleCatchUp || !slices.Contains(ids, oldest) ||
				slices.Contains(ids, ScheduleTaskID("s", (missed-api.ScheduleCatchUp)*tc.step)) {
				t.Fatalf("%d tasks; want the newest %d, from %s", len(ids), api.ScheduleCatchUp, oldest)
			}
		})
	}
	// A catch-up over far more ticks than one fire steps through stays
	// bounded and still enqueues the newest ticks.
	r := newQueueRig(t)
	r.putSchedule("s", "q", "* * * * * *", 0, 0)
	now := int64(10*maxScheduleScan) * 1000
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 1000, At: now}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if info := r.schedule("s"); info.Fired != api.ScheduleCatchUp || info.LastTickMs != now || info.Skipped == 0 {
		t.Fatalf("after a long catch-up: %+v", info)
	}
}

// A tick whose task the state has no room for is skipped and counted.
func TestScheduleFireQueueFull(t *testing.T) {
	r := newQueueRig(t, WithQueueLimits(2, DefaultMaxTaskBytes))
	r.putSchedule("s", "q", "", 1000, 0)
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 1000, At: 3000}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if info := r.schedule("s"); info.Fired != 2 || info.Skipped != 1 || info.NextTickMs != 4000 {
		t.Fatalf("%+v", info)
	}
}

// Bad schedules are refused, by the store before proposing and by apply.
func TestScheduleBadInput(t *testing.T) {
	s, _ := newLocalStore()
	long := strings.Repeat("x", api.MaxScheduleIDBytes+1)
	for _, tc := range []struct {
		name string
		id   string
		req  ScheduleRequest
		want error
		msg  string
	}{
		{"bad cron", "s", ScheduleRequest{Cron: "61 * * * *", Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "61"},
		{"cron of 4 fields", "s", ScheduleRequest{Cron: "* * * *", Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "fields"},
		{"cron and everyMs", "s", ScheduleRequest{Cron: "* * * * *", EveryMs: 1000, Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "not both"},
		{"neither", "s", ScheduleRequest{Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "needs"},
		{"everyMs too small", "s", ScheduleRequest{EveryMs: 999, Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "everyMs"},
		{"everyMs negative", "s", ScheduleRequest{EveryMs: -1000, Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "everyMs"},
		{"time zone", "s", ScheduleRequest{Cron: "TZ=Europe/Paris", Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "UTC"},
		{"@every", "s", ScheduleRequest{Cron: "@every 1s", Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "everyMs"},
		{"never fires", "s", ScheduleRequest{Cron: "0 0 30 2 *", Queue: "q", Data: []byte(`1`)}, ErrBadCommand, "never"},
		{"no queue", "s", ScheduleRequest{EveryMs: 1000, Data: []byte(`1`)}, ErrInvalidKey, "queue"},
		{"queue with a control character", "s", ScheduleRequest{EveryMs: 1000, Queue: "q\n", Data: []byte(`1`)}, ErrInvalidKey, "control"},
		{"no id", "", ScheduleRequest{EveryMs: 1000, Queue: "q", Data: []byte(`1`)}, ErrInvalidKey, "schedule id"},
		{"id too long", long, ScheduleRequest{EveryMs: 1000, Queue: "q", Data: []byte(`1`)}, ErrInvalidKey, "schedule id"},
		{"no data", "s", ScheduleRequest{EveryMs: 1000, Queue: "q"}, ErrInvalidValue, "data"},
		{"data not JSON", "s", ScheduleRequest{EveryMs: 1000, Queue: "q", Data: []byte(`{`)}, ErrInvalidValue, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutSchedule(t.Context(), tc.id, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("PutSchedule = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
			if tc.msg == "never" || tc.msg == "control" {
				return // the store's checks alone
			}
			// Apply refuses the same command, whoever proposed it.
			r := newQueueRig(t)
			res := r.apply(command{Op: opSchedulePut, Key: tc.id, Queue: tc.req.Queue, Cron: tc.req.Cron, Every: tc.req.EveryMs, Value: tc.req.Data, At: 1})
			if !errors.Is(res.Err, tc.want) {
				t.Fatalf("apply = %v, want %v", res.Err, tc.want)
			}
			if len(r.m.Schedules()) != 0 {
				t.Fatal("a refused put made a schedule")
			}
		})
	}
	r := newQueueRig(t, WithMaxSchedules(1))
	r.putSchedule("a", "q", "", 1000, 1)
	if res := r.apply(command{Op: opSchedulePut, Key: "b", Queue: "q", Every: 1000, Value: []byte(`1`), At: 1}); !errors.Is(res.Err, ErrStateFull) {
		t.Fatalf("a schedule beyond the limit = %v, want ErrStateFull", res.Err)
	}
}

// randomScheduleCommands returns n random schedule and queue commands
// with an advancing clock: puts, deletes and fires right and wrong.
func randomScheduleCommands(rng *rand.Rand, n int) [][]byte {
	var out [][]byte
	at := int64(1000)
	specs := []command{{Every: 1000}, {Every: 2500}, {Cron: "*/2 * * * * *"}, {Cron: "* * * * *"}}
	for range n {
		at += int64(rng.IntN(1500)) - 100
		id := "s" + strconv.Itoa(rng.IntN(4))
		var c command
		switch rng.IntN(8) {
		case 0, 1:
			sp := specs[rng.IntN(len(specs))]
			c = command{Op: opSchedulePut, Key: id, Queue: "q" + strconv.Itoa(rng.IntN(2)), Cron: sp.Cron, Every: sp.Every,
				Value: []byte(strconv.Itoa(rng.IntN(3))), At: at}
		case 2:
			c = command{Op: opScheduleDelete, Key: id, At: at}
		case 3:
			c = command{Op: opTaskClaim, Key: "q0", Worker: "w", Lease: int64(len(out) + 1), TTL: 2000, At: at}
		default:
			tick := (at/1000 - int64(rng.IntN(3))) * 1000
			c = command{Op: opScheduleFire, Key: id, Tick: tick, At: at}
		}
		b, err := encodeCommand(c)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// Apply of schedule commands is deterministic, and a snapshot taken
// midway plus the rest of the log gives the same state.
func TestScheduleApplyDeterministicAndSnapshot(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := randomScheduleCommands(rng, 800)
	a, b := NewMachine(), NewMachine()
	var restored *Machine
	fired := 0
	for i, c := range cmds {
		idx := uint64(i + 1)
		ra, rb := a.Apply(idx, c).(Result), b.Apply(idx, c).(Result)
		if (ra.Err == nil) != (rb.Err == nil) || ra.Revision != rb.Revision {
			t.Fatalf("command %d: %+v vs %+v", i, ra, rb)
		}
		if cmd, _ := decodeCommand(c); cmd.Op == opScheduleFire && ra.Err == nil {
			fired++
		}
		if restored != nil {
			restored.Apply(idx, c)
		}
		if i == len(cmds)/2 {
			restored = NewMachine()
			if err := restored.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, a))); err != nil {
				t.Fatal(err)
			}
		}
	}
	sa := snapshotBytes(t, a)
	if !bytes.Equal(sa, snapshotBytes(t, b)) || !bytes.Equal(sa, snapshotBytes(t, restored)) {
		t.Fatal("the same commands gave different states")
	}
	if fired == 0 {
		t.Fatal("no fire was applied")
	}
	t.Logf("%d fires applied, %d schedules", fired, len(a.Schedules()))
}

// A state without schedules is written as format 3 (what the previous
// release reads), one with schedules as format 4; both round-trip to the
// same bytes, and a restored schedule does not fire its last tick again.
func TestScheduleSnapshotFormats(t *testing.T) {
	r := newQueueRig(t)
	r.enqueue("q", "a", 1000, 0, 0)
	v3 := snapshotBytes(t, r.m)
	if v3[len(snapshotMagic)] != 3 {
		t.Fatalf("a state without schedules wrote format %d, want 3", v3[len(snapshotMagic)])
	}
	r.putSchedule("s", "q", "*/2 * * * * *", 0, 1500)
	if res := r.apply(command{Op: opScheduleFire, Key: "s", Tick: 2000, At: 4100}); res.Err != nil {
		t.Fatal(res.Err)
	}
	v4 := snapshotBytes(t, r.m)
	if v4[len(snapshotMagic)] != 4 {
		t.Fatalf("a state with schedules wrote format %d, want 4", v4[len(snapshotMagic)])
	}
	for _, snap := range [][]byte{v3, v4} {
		m := NewMachine()
		if err := m.Restore(consensus.Position{}, bytes.NewReader(snap)); err != nil {
			t.Fatalf("format %d: %v", snap[len(snapshotMagic)], err)
		}
		if again := snapshotBytes(t, m); !bytes.Equal(again, snap) {
			t.Fatalf("format %d did not round-trip to the same bytes", snap[len(snapshotMagic)])
		}
	}
	m := NewMachine()
	if err := m.Restore(consensus.Position{}, bytes.NewReader(v4)); err != nil {
		t.Fatal(err)
	}
	info, _ := m.Schedule("s")
	if info.LastTickMs != 4000 || info.NextTickMs != 6000 || info.Fired != 2 {
		t.Fatalf("restored schedule %+v", info)
	}
	if res := m.Apply(r.index+1, mustCmd(t, command{Op: opScheduleFire, Key: "s", Tick: 4000, At: 6100})).(Result); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("the last tick fired again after a restore: %v", res.Err)
	}
	// Deleting the last schedule goes back to format 3.
	r.apply(command{Op: opScheduleDelete, Key: "s", At: 4200})
	if b := snapshotBytes(t, r.m); b[len(snapshotMagic)] != 3 {
		t.Fatalf("format %d after the last schedule went, want 3", b[len(snapshotMagic)])
	}
	// A format 4 snapshot that claims no schedules is refused.
	bad := slices.Clone(v3)
	bad[len(snapshotMagic)] = 4
	if err := NewMachine().Restore(consensus.Position{}, bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("format 4 with a format 3 body: %v", err)
	}
}
