package kv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
)

// queueRig applies queue commands to a machine at increasing indexes.
type queueRig struct {
	t     *testing.T
	m     *Machine
	index uint64
	// history marks the commands as Store does (withHistory).
	history bool
}

func newQueueRig(t *testing.T, opts ...Option) *queueRig {
	return &queueRig{t: t, m: NewMachine(opts...)}
}

func (r *queueRig) apply(c command) Result {
	r.t.Helper()
	if r.history {
		c = withHistory(c)
	}
	r.index++
	return r.m.Apply(r.index, mustCmd(r.t, c)).(Result)
}

func (r *queueRig) enqueue(queue, id string, at, runAt int64, attempts int) int64 {
	r.t.Helper()
	res := r.apply(command{Op: opTaskEnqueue, Key: queue, Task: id, Value: []byte(`{"n":1}`), At: at, RunAt: runAt, Attempts: attempts})
	if res.Err != nil {
		r.t.Fatalf("enqueue %s: %v", id, res.Err)
	}
	return res.Revision
}

func (r *queueRig) claim(queue string, at int64, lease int64) (*Claim, error) {
	r.t.Helper()
	res := r.apply(command{Op: opTaskClaim, Key: queue, Worker: "w", Lease: lease, TTL: 5000, At: at})
	return res.Claim, res.Err
}

func (r *queueRig) mustClaim(queue string, at int64, lease int64) *Claim {
	r.t.Helper()
	c, err := r.claim(queue, at, lease)
	if err != nil {
		r.t.Fatalf("claim from %s at %d: %v", queue, at, err)
	}
	return c
}

func (r *queueRig) state(queue, id string) TaskInfo {
	r.t.Helper()
	info, ok := r.m.Task(queue, id, 0)
	if !ok {
		r.t.Fatalf("task %s of %s missing", id, queue)
	}
	return info
}

// Claims go first in, first out by ready time; each claim's epoch is its
// log index; complete, fail and a second complete are refused with
// ErrStaleEpoch unless they name the current claim; a done task is never
// claimed again; an enqueue of a known id changes nothing.
func TestQueueClaimEpochsAndStaleEpoch(t *testing.T) {
	r := newQueueRig(t)
	first := r.enqueue("q", "a", 1000, 0, 0)
	r.enqueue("q", "b", 1000, 0, 0)
	if again := r.enqueue("q", "a", 1001, 0, 0); again != first {
		t.Fatalf("enqueue of a known id: revision %d, want the existing %d", again, first)
	}
	if st := r.m.QueueStats("q", 0); st.Ready != 2 {
		t.Fatalf("stats %+v, want 2 ready", st)
	}
	ca := r.mustClaim("q", 1002, 11)
	if ca.Task.ID != "a" || ca.Epoch != int64(r.index) || ca.Task.Attempt != 1 || ca.Lease != 11 || string(ca.Task.Data) != `{"n":1}` {
		t.Fatalf("first claim %+v at index %d", ca, r.index)
	}
	cb := r.mustClaim("q", 1002, 12)
	if cb.Task.ID != "b" || cb.Epoch <= ca.Epoch {
		t.Fatalf("second claim %+v", cb)
	}
	if _, err := r.claim("q", 1003, 13); !errors.Is(err, ErrNoTask) {
		t.Fatalf("claim from an empty queue: %v", err)
	}
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: "a", Epoch: ca.Epoch - 1}); !errors.Is(res.Err, ErrStaleEpoch) {
		t.Fatalf("complete with a wrong epoch: %v", res.Err)
	}
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: "a", Epoch: ca.Epoch, Value: []byte(`"ok"`)}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, ok := r.m.LeaseInfo(11); ok {
		t.Fatal("the claim's lease outlived its claim")
	}
	for _, c := range []command{
		{Op: opTaskComplete, Key: "q", Task: "a", Epoch: ca.Epoch},
		{Op: opTaskFail, Key: "q", Task: "a", Epoch: ca.Epoch, Error: "late"},
	} {
		if res := r.apply(c); !errors.Is(res.Err, ErrStaleEpoch) {
			t.Fatalf("%v of a done task: %v", c.Op, res.Err)
		}
	}
	if info := r.state("q", "a"); info.State != api.TaskDone || string(info.Result) != `"ok"` || info.Epoch != ca.Epoch {
		t.Fatalf("done task %+v", info)
	}
	if _, err := r.claim("q", 5000, 14); !errors.Is(err, ErrNoTask) {
		t.Fatalf("a done task was claimable: %v", err)
	}
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: "zz", Epoch: 1}); !errors.Is(res.Err, ErrTaskNotFound) {
		t.Fatalf("complete of an unknown task: %v", res.Err)
	}
	if st := r.m.QueueStats("q", 0); st != (QueueStats{Queue: "q", Claimed: 1, Done: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

// A failed task waits out its backoff (or retryAfter), then is claimed
// with a higher epoch; its last attempt's failure makes it dead; a
// requeue gives it fresh attempts.
func TestQueueRetryBackoffDeadRequeue(t *testing.T) {
	r := newQueueRig(t)
	r.enqueue("q", "a", 1000, 0, 3)
	c1 := r.mustClaim("q", 1000, 1)
	if res := r.apply(command{Op: opTaskFail, Key: "q", Task: "a", Epoch: c1.Epoch, Error: "boom", At: 1100}); res.Err != nil {
		t.Fatal(res.Err)
	}
	// The default backoff after attempt 1 is 1s.
	if info := r.state("q", "a"); info.State != api.TaskDelayed || info.ReadyAtMs != 2100 || info.Error != "boom" {
		t.Fatalf("after a failure: %+v", info)
	}
	if _, err := r.claim("q", 2099, 2); !errors.Is(err, ErrNoTask) {
		t.Fatalf("claimed before its backoff ran out: %v", err)
	}
	c2 := r.mustClaim("q", 2100, 3)
	if c2.Epoch <= c1.Epoch || c2.Task.Attempt != 2 {
		t.Fatalf("second claim %+v after %+v", c2, c1)
	}
	zero := int64(0)
	if res := r.apply(command{Op: opTaskFail, Key: "q", Task: "a", Epoch: c2.Epoch, Error: "again", Retry: &zero, At: 2200}); res.Err != nil {
		t.Fatal(res.Err)
	}
	c3 := r.mustClaim("q", 2200, 4)
	if res := r.apply(command{Op: opTaskFail, Key: "q", Task: "a", Epoch: c3.Epoch, Error: "last", At: 2300}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if info := r.state("q", "a"); info.State != api.TaskDead || info.Attempt != 3 || info.Error != "last" {
		t.Fatalf("after the last attempt: %+v", info)
	}
	if _, err := r.claim("q", 1e9, 5); !errors.Is(err, ErrNoTask) {
		t.Fatalf("a dead task was claimable: %v", err)
	}
	dead, _ := r.m.Tasks("q", api.TaskDead, "", 10, 0)
	if len(dead) != 1 || dead[0].ID != "a" {
		t.Fatalf("dead tasks %+v", dead)
	}
	if res := r.apply(command{Op: opTaskRequeue, Key: "q", Task: "a", At: 2400}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := r.apply(command{Op: opTaskRequeue, Key: "q", Task: "a", At: 2400}); !errors.Is(res.Err, ErrTaskNotDead) {
		t.Fatalf("requeue of a waiting task: %v", res.Err)
	}
	c4 := r.mustClaim("q", 2400, 6)
	if c4.Task.Attempt != 1 || c4.Epoch <= c3.Epoch {
		t.Fatalf("claim after requeue %+v", c4)
	}
	if got := []int64{backoff(1), backoff(2), backoff(3), backoff(20)}; got[0] != 1000 || got[1] != 2000 || got[2] != 4000 || got[3] != maxTaskBackoffMs {
		t.Fatalf("backoffs %v", got)
	}
}

// A claim's lease expiring (or being revoked) returns its task at once, for
// a claim with a higher epoch; the old epoch is refused after that; the
// last attempt's expiry makes the task dead.
func TestQueueLeaseExpiryReturnsTask(t *testing.T) {
	r := newQueueRig(t)
	r.enqueue("q", "a", 1000, 0, 2)
	c1 := r.mustClaim("q", 1000, 21)
	if res := r.apply(command{Op: opLeaseExpire, Leases: []int64{21}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if info := r.state("q", "a"); info.State != api.TaskReady || info.Lease != 0 {
		t.Fatalf("after the claim's lease expired: %+v", info)
	}
	c2 := r.mustClaim("q", 1000, 22)
	if c2.Epoch <= c1.Epoch {
		t.Fatalf("epoch %d after %d", c2.Epoch, c1.Epoch)
	}
	for _, c := range []command{
		{Op: opTaskComplete, Key: "q", Task: "a", Epoch: c1.Epoch},
		{Op: opTaskFail, Key: "q", Task: "a", Epoch: c1.Epoch},
	} {
		if res := r.apply(c); !errors.Is(res.Err, ErrStaleEpoch) {
			t.Fatalf("late worker's %v: %v", c.Op, res.Err)
		}
	}
	if res := r.apply(command{Op: opLeaseRevoke, Lease: 22}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if info := r.state("q", "a"); info.State != api.TaskDead {
		t.Fatalf("after its last claim's lease went: %+v", info)
	}
}

// Delayed tasks wait for the state machine's clock, which is the latest
// proposer's time and never goes back.
func TestQueueDelayedAndClock(t *testing.T) {
	r := newQueueRig(t)
	r.enqueue("q", "later", 1000, 5000, 0)
	r.enqueue("q", "now", 1000, 0, 0)
	if c := r.mustClaim("q", 1000, 1); c.Task.ID != "now" {
		t.Fatalf("claimed %s first", c.Task.ID)
	}
	if _, err := r.claim("q", 4999, 2); !errors.Is(err, ErrNoTask) {
		t.Fatalf("a delayed task was claimed early: %v", err)
	}
	r.enqueue("other", "x", 5000, 0, 0) // moves the clock to 5000
	// A proposer whose clock is behind does not take the clock back.
	if c := r.mustClaim("q", 10, 3); c.Task.ID != "later" {
		t.Fatalf("claimed %s", c.Task.ID)
	}
	if st := r.m.QueueStats("q", 0); st.Claimed != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Bad input is refused with typed errors; the task limit forgets the
// oldest done task to make room, and refuses when none is done.
func TestQueueLimits(t *testing.T) {
	r := newQueueRig(t, WithQueueLimits(2, 16))
	for _, tc := range []struct {
		c    command
		want error
	}{
		{command{Op: opTaskEnqueue, Key: "", Task: "a", Value: []byte(`1`)}, ErrInvalidKey},
		{command{Op: opTaskEnqueue, Key: "q", Task: "", Value: []byte(`1`)}, ErrInvalidKey},
		{command{Op: opTaskEnqueue, Key: "q", Task: "a", Value: []byte(`"0123456789abcdef"`)}, ErrValueTooLarge},
		{command{Op: opTaskEnqueue, Key: "q", Task: "a", Value: []byte(`{`)}, ErrInvalidValue},
		{command{Op: opTaskEnqueue, Key: "q", Task: "a", Value: []byte(`1`), Attempts: -1}, ErrBadCommand},
		{command{Op: opTaskEnqueue, Key: "q", Task: "a", Value: []byte(`1`), RunAt: api.MaxTaskDelayMs + 10}, ErrBadCommand},
		{command{Op: opTaskClaim, Key: "q", Worker: "", Lease: 1, TTL: 1000}, ErrInvalidKey},
		{command{Op: opTaskClaim, Key: "q", Worker: "w", Lease: 1, TTL: 0}, ErrInvalidTTL},
		{command{Op: opTaskRequeue, Key: "q", Task: "nope"}, ErrTaskNotFound},
	} {
		if res := r.apply(tc.c); !errors.Is(res.Err, tc.want) {
			t.Errorf("%v %+v: %v, want %v", tc.c.Op, tc.c, res.Err, tc.want)
		}
	}
	r.enqueue("q", "a", 1, 0, 0)
	r.enqueue("q", "b", 1, 0, 0)
	if res := r.apply(command{Op: opTaskEnqueue, Key: "q", Task: "c", Value: []byte(`1`)}); !errors.Is(res.Err, ErrQueueFull) {
		t.Fatalf("enqueue beyond the limit: %v", res.Err)
	}
	c := r.mustClaim("q", 1, 1)
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: c.Task.ID, Epoch: c.Epoch}); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.enqueue("q", "c", 1, 0, 0)
	if _, ok := r.m.Task("q", "a", 0); ok {
		t.Fatal("the oldest done task was kept beyond the limit")
	}
}

// The state machine is deterministic: random queue commands (with lease
// expiries) give the same bytes on two machines, and a machine restored
// from a snapshot part way goes on to the same bytes (the snapshot keeps
// queues, epochs, leases and the clock).
func TestQueueApplyDeterministicAndSnapshot(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := randomQueueCommands(rng, 600)
	a, b := NewMachine(), NewMachine()
	var restored *Machine
	for i, c := range cmds {
		idx := uint64(i + 1)
		ra, rb := a.Apply(idx, c).(Result), b.Apply(idx, c).(Result)
		if (ra.Err == nil) != (rb.Err == nil) || ra.Revision != rb.Revision {
			t.Fatalf("command %d: %+v vs %+v", i, ra, rb)
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
	var total QueueStats
	for q := range 3 {
		st := a.QueueStats("q"+strconv.Itoa(q), 0)
		total.Ready, total.Claimed, total.Done, total.Dead = total.Ready+st.Ready+st.Delayed, total.Claimed+st.Claimed, total.Done+st.Done, total.Dead+st.Dead
	}
	if total.Claimed+total.Done+total.Dead == 0 {
		t.Fatalf("the random commands claimed nothing: %+v", total)
	}
	t.Logf("tasks by state: %+v", total)
	// A restored machine's claim lease still returns its task.
	var claimed []TaskInfo
	for q := range 3 {
		ts, _ := restored.Tasks("q"+strconv.Itoa(q), api.TaskClaimed, "", 100, 0)
		claimed = append(claimed, ts...)
	}
	if len(claimed) > 0 {
		l := int64(claimed[0].Lease)
		restored.Apply(uint64(len(cmds)+1), mustCmd(t, command{Op: opLeaseExpire, Leases: []int64{l}}))
		if _, ok := restored.claimOf(LeaseID(l)); ok {
			t.Fatal("an expired claim lease still holds its task after a restore")
		}
	}
}

// randomQueueCommands returns n random queue commands over three queues,
// with epochs right and wrong, lease expiries and advancing clocks.
func randomQueueCommands(rng *rand.Rand, n int) [][]byte {
	var out [][]byte
	at := int64(1000)
	var leases, claims []int64
	for i := range n {
		at += int64(rng.IntN(300)) - 50
		q := "q" + strconv.Itoa(rng.IntN(3))
		id := "t" + strconv.Itoa(rng.IntN(40))
		epoch := int64(rng.IntN(i + 1))
		if len(claims) > 0 && rng.IntN(3) > 0 {
			// A recent claim's epoch: often right, for some task.
			epoch = claims[len(claims)-1-rng.IntN(min(len(claims), 3))]
		}
		var c command
		switch rng.IntN(7) {
		case 0, 1:
			c = command{Op: opTaskEnqueue, Key: q, Task: id, Value: []byte(strconv.Itoa(i)), At: at,
				RunAt: at + int64(rng.IntN(2000)) - 1000, Attempts: rng.IntN(4)}
		case 2:
			l := int64(i + 1)
			leases, claims = append(leases, l), append(claims, int64(len(out)+1))
			c = command{Op: opTaskClaim, Key: q, Worker: "w", Lease: l, TTL: 2000, At: at}
		case 3:
			c = command{Op: opTaskComplete, Key: q, Task: id, Epoch: epoch, Value: []byte(`true`), At: at}
		case 4:
			retry := int64(rng.IntN(500))
			c = command{Op: opTaskFail, Key: q, Task: id, Epoch: epoch, Error: "e", Retry: &retry, At: at}
		case 5:
			c = command{Op: opTaskRequeue, Key: q, Task: id, At: at}
		default:
			if len(leases) == 0 {
				continue
			}
			c = command{Op: opLeaseExpire, Leases: []int64{leases[rng.IntN(len(leases))]}}
		}
		b, err := encodeCommand(c)
		if err != nil {
			panic(err)
		}
		out = append(out, b) // applied at index len(out)
	}
	return out
}

// A format 2 snapshot (no tasks) is still read.
func TestQueueSnapshotReadsFormat2(t *testing.T) {
	old := NewMachine()
	applySteps(t, old, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 4, TTL: 3000}, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`1`), Lease: 4}, nil},
	})
	var out bytes.Buffer
	rw := &recordWriter{w: bufio.NewWriter(&out), crc: crc32.New(crcTable)}
	rw.enc = msgpack.NewEncoder(&rw.buf)
	rw.enc.UseCompactInts(true)
	rw.raw(append([]byte(snapshotMagic), 2))
	rw.write(&snapshotHeaderV2{Revision: old.revision, Applied: old.applied, ItemCount: 1, LeaseCount: 1})
	it, _ := old.Get("a")
	rw.write(&snapshotItem{Key: it.Key, Value: it.Value, Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version, Lease: 4})
	rw.write(&snapshotLease{ID: 4, TTLMs: 3000})
	rw.raw(binary.BigEndian.AppendUint32(nil, rw.crc.Sum32()))
	if rw.err != nil || rw.w.Flush() != nil {
		t.Fatal(rw.err)
	}
	m := NewMachine()
	if err := m.Restore(consensus.Position{}, bytes.NewReader(out.Bytes())); err != nil {
		t.Fatalf("format 2: %v", err)
	}
	if l, ok := m.LeaseInfo(4); !ok || len(l.Keys) != 1 {
		t.Fatalf("format 2 lease %+v, %v", l, ok)
	}
	if !bytes.Equal(snapshotBytes(t, m), snapshotBytes(t, old)) {
		t.Fatal("a format 2 snapshot restored to another state")
	}
}

// A snapshot whose claimed task names a lease it does not hold is refused.
func TestQueueSnapshotDanglingClaimRefused(t *testing.T) {
	r := newQueueRig(t)
	r.enqueue("q", "a", 1, 0, 0)
	r.mustClaim("q", 1, 9)
	r.m.leases.Delete(lease{id: 9})
	if err := NewMachine().Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, r.m))); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
	}
}

// Store.Claim waits for a task: it is woken by an enqueue, by a delayed
// task's time, and gives up with ErrNoTask when its wait runs out.
func TestStoreClaimWaits(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	start := time.Now()
	if _, err := s.Claim(ctx, "q", "w", time.Second, 30*time.Millisecond); !errors.Is(err, ErrNoTask) {
		t.Fatalf("claim from an empty queue: %v", err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("the claim did not wait")
	}
	got := make(chan Claim, 1)
	go func() {
		c, err := s.Claim(ctx, "q", "w", time.Second, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	waitUntil(t, "the claim to wait", func() bool {
		s.machine.mu.RLock()
		defer s.machine.mu.RUnlock()
		_, ok := s.machine.queueWatch["q"]
		return ok
	})
	id, _, err := s.Enqueue(ctx, "q", []byte(`"x"`), EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := <-got; c.Task.ID != id || c.Epoch == 0 {
		t.Fatalf("claim %+v, want task %s", c, id)
	}
	if _, _, err := s.Enqueue(ctx, "q", []byte(`1`), EnqueueOptions{ID: "d", Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "q", "w", time.Second, 5*time.Second)
	if err != nil || c.Task.ID != "d" {
		t.Fatalf("claim of a delayed task: %+v, %v", c, err)
	}
	if err := s.Complete(ctx, "q", "d", c.Epoch, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "q", "d", c.Epoch, nil); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("second complete: %v", err)
	}
	if _, err := s.TaskState(ctx, "q", "nope", Linearizable); !errors.Is(err, ErrTaskNotFound) {
		t.Fatalf("state of an unknown task: %v", err)
	}
	if _, _, err := s.Enqueue(ctx, "q", []byte(`1`), EnqueueOptions{Delay: time.Second, RunAt: time.Now()}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a delay and a runAt: %v", err)
	}
	// Claims that ended leave no wake channel behind, whatever the queue.
	for i := range 20 {
		_, _ = s.Claim(ctx, "empty-"+strconv.Itoa(i), "w", time.Second, time.Millisecond)
	}
	s.machine.mu.RLock()
	defer s.machine.mu.RUnlock()
	if n := len(s.machine.queueWatch); n != 0 {
		t.Fatalf("%d queues' wake channels kept after their claims ended", n)
	}
}

// A heartbeat renews the claim's lease on the leader's clock, and is
// refused with ErrStaleEpoch for any epoch but the current claim's,
// including after the lease expired.
func TestStoreHeartbeat(t *testing.T) {
	l, f, clk := newTestLessor(t)
	s := NewStore(&localRaft{machine: f.m, index: 1 << 20}, f.m)
	s.UseLessor(l)
	becomeLeader(t, l, f, 1)
	ctx := context.Background()
	if _, _, err := s.Enqueue(ctx, "q", []byte(`1`), EnqueueOptions{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "q", "w", time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Heartbeats every 600ms keep a 1s claim for 3s.
	for range 5 {
		step(l, clk, 600*time.Millisecond)
		if _, err := s.Heartbeat(ctx, "q", "a", c.Epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Heartbeat(ctx, "q", "a", c.Epoch+1); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("heartbeat with another epoch: %v", err)
	}
	step(l, clk, 1100*time.Millisecond)
	until(t, "the claim's lease to expire", func() bool { _, ok := f.m.claimOf(c.Lease); l.tick(); return !ok })
	if _, err := s.Heartbeat(ctx, "q", "a", c.Epoch); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("heartbeat after the lease expired: %v", err)
	}
	if info, _ := s.TaskState(ctx, "q", "a", Linearizable); info.State != api.TaskReady {
		t.Fatalf("task after its claim expired: %+v", info)
	}
}

// A member whose state diverged answers claims and heartbeats from it no
// more than reads.
func TestQueueRefusedWhenDiverged(t *testing.T) {
	l, f, _ := newTestLessor(t)
	s := NewStore(&localRaft{machine: f.m}, f.m)
	s.UseLessor(l)
	ctx := context.Background()
	if _, _, err := s.Enqueue(ctx, "q", []byte(`1`), EnqueueOptions{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	s.SetDiverged(fmt.Errorf("hash differs: %w", ErrDiverged))
	if _, err := s.Claim(ctx, "q", "w", time.Second, 0); !errors.Is(err, ErrDiverged) {
		t.Fatalf("claim on a diverged member: %v", err)
	}
	if _, err := s.Heartbeat(ctx, "q", "a", 1); !errors.Is(err, ErrDiverged) {
		t.Fatalf("heartbeat on a diverged member: %v", err)
	}
	if _, err := s.TaskState(ctx, "q", "a", Local); !errors.Is(err, ErrDiverged) {
		t.Fatalf("read on a diverged member: %v", err)
	}
}
