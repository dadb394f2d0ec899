package kv

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

func grantLeases(t *testing.T, s *Store, n int) []LeaseID {
	t.Helper()
	var ids []LeaseID
	for range n {
		l, err := s.Grant(context.Background(), time.Minute, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	return ids
}

// Waiters get a lock first come, first served, each grant with a larger
// token; a revoked holder's lock passes on; a try-once acquire of a held
// lock fails; a release by a stale token is refused.
func TestLockQueueAndTokens(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	ls := grantLeases(t, s, 4)
	first, err := s.Acquire(ctx, "job", ls[0], 0)
	if err != nil || first.Lease != ls[0] || first.Token <= 0 {
		t.Fatalf("first acquire: %+v, %v", first, err)
	}
	if again, err := s.Acquire(ctx, "job", ls[0], 0); err != nil || again.Token != first.Token {
		t.Fatalf("the holder acquiring again: %+v, %v; want its token %d", again, err, first.Token)
	}
	if _, err := s.Acquire(ctx, "job", ls[1], 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("try-once of a held lock: %v, want ErrLocked", err)
	}
	// Two waiters queue, in order.
	got := make(chan LockInfo, 2)
	for _, l := range ls[1:3] {
		go func() {
			info, err := s.Acquire(ctx, "job", l, time.Minute)
			if err != nil {
				t.Error(err)
			}
			got <- info
		}()
		waitUntil(t, "the waiter to queue", func() bool { _, _, w := s.machine.lockPosition("job", l); return w })
	}
	if info, _ := s.LockState(ctx, "job", Linearizable); info.Waiters != 2 {
		t.Fatalf("lock state %+v, want 2 waiters", info)
	}
	if err := s.Release(ctx, "job", ls[0], first.Token-1); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("release with a stale token: %v", err)
	}
	if err := s.Release(ctx, "job", ls[0], first.Token); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second.Lease != ls[1] || second.Token <= first.Token {
		t.Fatalf("second holder %+v, want lease %s with a token above %d", second, ls[1], first.Token)
	}
	// The holder's lease is revoked: the next waiter gets it.
	if _, err := s.Revoke(ctx, ls[1]); err != nil {
		t.Fatal(err)
	}
	third := <-got
	if third.Lease != ls[2] || third.Token <= second.Token {
		t.Fatalf("third holder %+v, want lease %s with a token above %d", third, ls[2], second.Token)
	}
	if err := s.Release(ctx, "job", ls[2], third.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockState(ctx, "job", Linearizable); !errors.Is(err, ErrLockNotFound) {
		t.Fatalf("a released lock nobody waits for: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A waiter whose wait runs out leaves the queue: the lock then goes to
// the one behind it.
func TestLockWaitRunsOut(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	ls := grantLeases(t, s, 3)
	held, _ := s.Acquire(ctx, "l", ls[0], 0)
	// With a request id and a fence that holds, as a client's retried,
	// fenced acquire has: leaving the queue must not be taken for a retry
	// of the acquire, nor carry its fence.
	other, _ := s.Acquire(ctx, "other", ls[1], 0)
	wctx := WithFence(WithRequestID(ctx, RequestID{Client: "c", Seq: 7}), Fence{Lock: "other", Token: other.Token})
	if _, err := s.Acquire(wctx, "l", ls[1], 20*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("a wait that ran out: %v, want ErrLocked", err)
	}
	if _, _, waiting := s.machine.lockPosition("l", ls[1]); waiting {
		t.Fatal("a waiter that gave up is still queued")
	}
	_ = s.Release(ctx, "other", ls[1], other.Token)
	done := make(chan LockInfo)
	go func() {
		info, _ := s.Acquire(ctx, "l", ls[2], time.Minute)
		done <- info
	}()
	waitUntil(t, "the waiter to queue", func() bool { _, _, w := s.machine.lockPosition("l", ls[2]); return w })
	_ = s.Release(ctx, "l", ls[0], held.Token)
	if info := <-done; info.Lease != ls[2] {
		t.Fatalf("the lock went to %s, want %s", info.Lease, ls[2])
	}
	if _, err := s.Acquire(ctx, "l", 12345, 0); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("acquire with an unknown lease: %v", err)
	}
}

// A fenced write is applied only while its lock is held with its token:
// a holder that lost the lock (its lease expired, another took it) is
// refused, whatever it writes.
func TestFencedWrites(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	ls := grantLeases(t, s, 2)
	old, _ := s.Acquire(ctx, "leader", ls[0], 0)
	fenced := WithFence(ctx, Fence{Lock: "leader", Token: old.Token})
	if _, err := s.Put(fenced, "k", []byte(`1`)); err != nil {
		t.Fatalf("a write fenced by the holder's token: %v", err)
	}
	// The old holder pauses; its lease expires and another takes the lock.
	if _, err := s.Revoke(ctx, ls[0]); err != nil {
		t.Fatal(err)
	}
	next, _ := s.Acquire(ctx, "leader", ls[1], 0)
	for what, write := range map[string]func() error{
		"put":      func() error { _, err := s.Put(fenced, "k", []byte(`2`)); return err },
		"delete":   func() error { _, err := s.Delete(fenced, "k"); return err },
		"batch":    func() error { _, err := s.Batch(fenced, []Op{{Type: OpPut, Key: "k", Value: []byte(`3`)}}); return err },
		"workflow": func() error { _, err := s.StartWorkflow(fenced, "w", nil); return err },
		"grant":    func() error { _, err := s.Grant(fenced, time.Minute, 0); return err },
		"release":  func() error { return s.Release(fenced, "leader", ls[1], next.Token) },
	} {
		if err := write(); !errors.Is(err, ErrFenced) {
			t.Errorf("%s by the deposed holder: %v, want ErrFenced", what, err)
		}
	}
	if it, _ := s.Get(ctx, "k", Linearizable); string(it.Value) != "1" {
		t.Fatalf("k = %s, want the holder's write only", it.Value)
	}
	if _, err := s.Put(WithFence(ctx, Fence{Lock: "leader", Token: next.Token}), "k", []byte(`4`)); err != nil {
		t.Fatalf("the new holder's fenced write: %v", err)
	}
	if _, err := s.Put(WithFence(ctx, Fence{Lock: "nobody", Token: 1}), "k", []byte(`5`)); !errors.Is(err, ErrFenced) {
		t.Fatalf("a write fenced by a free lock: %v", err)
	}
}

// Locks survive a snapshot with their queues, and a revoked lease's
// locks pass on after a restore as before.
func TestLocksInSnapshots(t *testing.T) {
	s, l := newLocalStore()
	ctx := context.Background()
	ls := grantLeases(t, s, 3)
	held, _ := s.Acquire(ctx, "a", ls[0], 0)
	// Queue ls[1] and ls[2] behind it through the machine directly.
	for i, id := range ls[1:] {
		l.mu.Lock()
		l.index++
		r := l.machine.Apply(l.index, mustCmd(t, command{Op: opLockAcquire, Key: "a", Lease: int64(id)})).(Result)
		l.mu.Unlock()
		if r.Err != nil {
			t.Fatalf("queue %d: %v", i, r.Err)
		}
	}
	snap := snapshotBytes(t, s.machine)
	r := NewMachine()
	if err := r.Restore(consensus.Position{}, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if info, ok := r.Lock("a"); !ok || info.Token != held.Token || info.Lease != ls[0] || info.Waiters != 2 {
		t.Fatalf("restored lock %+v, %v", info, ok)
	}
	if !bytes.Equal(snapshotBytes(t, r), snap) {
		t.Fatal("a restored state snapshots to other bytes")
	}
	rs := NewStore(&localRaft{machine: r, index: l.index}, r)
	if _, err := rs.Revoke(ctx, ls[0]); err != nil {
		t.Fatal(err)
	}
	if info, _ := r.Lock("a"); info.Lease != ls[1] || info.Waiters != 1 || info.Token <= held.Token {
		t.Fatalf("after the holder's lease went: %+v", info)
	}
}

// An election is a lock with values: a campaign waits first come, first
// served, the new leader takes its own value with a larger token, only
// the leader's token proclaims, and an observer sees each leadership in
// order.
func TestElections(t *testing.T) {
	s, _ := newLocalStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ls := grantLeases(t, s, 2)
	obs, err := s.ObserveElection(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	next := func() *LockInfo {
		t.Helper()
		select {
		case l := <-obs:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no observation")
		}
		return nil
	}
	if l := next(); l != nil {
		t.Fatalf("first observation %+v, want no leader", l)
	}
	a, err := s.Campaign(ctx, "e", ls[0], []byte(`"a"`), 0)
	if err != nil || a.Name != "e" || string(a.Value) != `"a"` {
		t.Fatalf("campaign: %+v, %v", a, err)
	}
	if l := next(); l == nil || l.Token != a.Token || string(l.Value) != `"a"` {
		t.Fatalf("observed %+v, want a's leadership", l)
	}
	done := make(chan LockInfo)
	go func() {
		b, err := s.Campaign(ctx, "e", ls[1], []byte(`"b"`), time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	waitUntil(t, "b to queue", func() bool {
		_, _, w := s.machine.lockPosition(ElectionPrefix+"e", ls[1])
		return w
	})
	if err := s.Proclaim(ctx, "e", a.Token, []byte(`"a2"`)); err != nil {
		t.Fatal(err)
	}
	if l := next(); l == nil || string(l.Value) != `"a2"` || l.Token != a.Token {
		t.Fatalf("observed %+v, want a's new value", l)
	}
	if err := s.Resign(ctx, "e", a.Token); err != nil {
		t.Fatal(err)
	}
	b := <-done
	if l := next(); l == nil || l.Lease != ls[1] || string(l.Value) != `"b"` || l.Token <= a.Token || l.Token != b.Token {
		t.Fatalf("observed %+v, want b's leadership with a larger token", l)
	}
	if err := s.Proclaim(ctx, "e", a.Token, []byte(`"stale"`)); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("a proclamation by the old token: %v", err)
	}
	if l, err := s.ElectionLeader(ctx, "e", Linearizable); err != nil || l.Lease != ls[1] {
		t.Fatalf("leader: %+v, %v", l, err)
	}
}

// A release wakes the next waiter alone, and a change of one lock wakes
// the watchers of that lock alone: no thundering herd.
func TestLockWakesTheNextWaiterAlone(t *testing.T) {
	s, l := newLocalStore()
	ctx := context.Background()
	ls := grantLeases(t, s, 4)
	held, _ := s.Acquire(ctx, "x", ls[0], 0)
	for _, id := range ls[1:] {
		l.mu.Lock()
		l.index++
		l.machine.Apply(l.index, mustCmd(t, command{Op: opLockAcquire, Key: "x", Lease: int64(id)}))
		l.mu.Unlock()
	}
	turns := make([]<-chan struct{}, len(ls))
	for i, id := range ls[1:] {
		turns[i+1] = s.machine.lockWait("x", id)
	}
	otherLock := s.machine.LockChanges("y")
	thisLock := s.machine.LockChanges("x")
	if err := s.Release(ctx, "x", ls[0], held.Token); err != nil {
		t.Fatal(err)
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if !closed(turns[1]) || closed(turns[2]) || closed(turns[3]) {
		t.Fatalf("woken after a release: next %v, the two behind it %v %v; want the next alone",
			closed(turns[1]), closed(turns[2]), closed(turns[3]))
	}
	if !closed(thisLock) || closed(otherLock) {
		t.Fatalf("watchers woken: this lock %v, another lock %v", closed(thisLock), closed(otherLock))
	}
}
