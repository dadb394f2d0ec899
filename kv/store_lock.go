package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/unrdf/consensus/api"
)

// Fence is a fence on a write: the write is applied only if lock Name is
// held with Token at that moment (otherwise ErrFenced, nothing changed).
type Fence = api.Fence

type fenceKey struct{}

// WithFence returns ctx carrying f: every write made with it (put,
// delete, batch, workflow and node commands, lease and lock commands) is
// fenced by it.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence ctx carries, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok && f.Lock != ""
}

// Acquire takes lock name for lease, waiting up to wait for the leases
// ahead of it (first come, first served); wait 0 tries once. It returns
// the lock with its fencing token, strictly greater than any earlier
// holder's. When the wait runs out (or ctx ends) the lease leaves the
// queue and Acquire fails with ErrLocked. A lease that holds the lock
// already gets its token again. The lock is released by Release, or when
// the lease expires or is revoked.
func (s *Store) Acquire(ctx context.Context, name string, lease LeaseID, wait time.Duration) (LockInfo, error) {
	return s.acquire(ctx, name, lease, nil, wait)
}

// acquire is Acquire, the lock held with value (nil: none).
func (s *Store) acquire(ctx context.Context, name string, lease LeaseID, value []byte, wait time.Duration) (LockInfo, error) {
	if err := checkLockName(name); err != nil {
		return LockInfo{}, err
	}
	if value != nil {
		if err := checkValue(value, s.machine.maxValueBytes); err != nil {
			return LockInfo{}, err
		}
	}
	c := command{Op: opLockAcquire, Key: name, Lease: int64(lease), Value: value, Try: wait <= 0}
	if _, err := s.write(ctx, c); err != nil {
		return LockInfo{}, err
	}
	deadline := time.NewTimer(max(wait, 0))
	defer deadline.Stop()
	defer s.machine.dropLockWait(name, lease)
	for {
		// The channel first, then the position: a turn that comes in
		// between closes it.
		turn := s.machine.lockWait(name, lease)
		token, held, waiting := s.machine.lockPosition(name, lease)
		if held {
			info, _ := s.machine.Lock(name)
			info.Token = token
			return info, nil
		}
		if !waiting {
			// Out of the queue without the lock: its lease went.
			return LockInfo{}, fmt.Errorf("kv: lock %q: lease %s left the queue (expired or revoked): %w", name, lease, ErrLeaseNotFound)
		}
		select {
		case <-turn:
		case <-deadline.C:
			return LockInfo{}, s.giveUp(name, lease, fmt.Errorf("kv: lock %q: waited %v: %w", name, wait, ErrLocked))
		case <-ctx.Done():
			return LockInfo{}, s.giveUp(name, lease, fmt.Errorf("kv: lock %q: %w: %w", name, ErrLocked, ctx.Err()))
		}
	}
}

// giveUp takes lease out of lock name's queue, or, if it got the lock
// meanwhile, releases it (its caller never learnt the token), and returns
// why. It runs in a context of its own: the caller's has ended, and its
// request id (the acquire's: the session table would answer the leave as
// a retry of the acquire and apply nothing) and fence are not the
// leave's.
func (s *Store) giveUp(name string, lease LeaseID, why error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.write(ctx, command{Op: opLockRelease, Key: name, Lease: int64(lease)}); err != nil {
		return errors.Join(why, fmt.Errorf("leaving the queue: %w", err))
	}
	return why
}

// Release releases lock name held with token (by lease, if not 0);
// ErrNotHolder if that is not who holds it (any more). The first waiter
// gets it.
func (s *Store) Release(ctx context.Context, name string, lease LeaseID, token int64) error {
	if err := checkLockName(name); err != nil {
		return err
	}
	_, err := s.write(ctx, command{Op: opLockRelease, Key: name, Lease: int64(lease), If: &token})
	return err
}

// LockState describes lock name; ErrLockNotFound if nobody holds it or
// waits for it.
func (s *Store) LockState(ctx context.Context, name string, c Consistency) (LockInfo, error) {
	if err := checkLockName(name); err != nil {
		return LockInfo{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return LockInfo{}, err
	}
	info, ok := s.machine.Lock(name)
	if !ok {
		return LockInfo{}, fmt.Errorf("kv: lock %q: %w", name, ErrLockNotFound)
	}
	return info, nil
}

// ErrLockNotFound means nobody holds or waits for a lock.
var ErrLockNotFound = api.ErrLockNotFound

// ElectionPrefix starts the name of the lock behind each election: the
// election "x" is the lock "election/x".
const ElectionPrefix = "election/"

// Campaign waits up to wait (0: tries once) to become the leader of
// election name, held by lease, with value (a JSON value) as its
// proclamation. Leadership is the lock ElectionPrefix+name: first come,
// first served, with a fencing token that grows with each leader. When
// the wait runs out, the candidate leaves the queue (ErrLocked).
func (s *Store) Campaign(ctx context.Context, name string, lease LeaseID, value []byte, wait time.Duration) (LockInfo, error) {
	if value == nil {
		value = []byte("null")
	}
	info, err := s.acquire(ctx, ElectionPrefix+name, lease, value, wait)
	info.Name = name
	return info, err
}

// Proclaim sets the value of election name's leader holding token;
// ErrNotHolder if token does not lead it (any more).
func (s *Store) Proclaim(ctx context.Context, name string, token int64, value []byte) error {
	if err := checkLockName(ElectionPrefix + name); err != nil {
		return err
	}
	if err := checkValue(value, s.machine.maxValueBytes); err != nil {
		return err
	}
	_, err := s.write(ctx, command{Op: opLockProclaim, Key: ElectionPrefix + name, If: &token, Value: value})
	return err
}

// Resign gives up the leadership of election name held with token; the
// next candidate becomes leader.
func (s *Store) Resign(ctx context.Context, name string, token int64) error {
	return s.Release(ctx, ElectionPrefix+name, 0, token)
}

// ElectionLeader returns election name's leader; ErrLockNotFound if it has
// none.
func (s *Store) ElectionLeader(ctx context.Context, name string, c Consistency) (LockInfo, error) {
	info, err := s.LockState(ctx, ElectionPrefix+name, c)
	info.Name = name
	return info, err
}

// ObserveElection streams election name's leadership as this node
// applies it, after a linearizable read: the current leader first (nil:
// none), then each change (a new leader, a new token, a new value). Each
// value sent is the state at that moment: changes closer together than
// the receiver reads may arrive as their last one alone, but tokens never
// go back. The channel closes when ctx ends.
func (s *Store) ObserveElection(ctx context.Context, name string) (<-chan *LockInfo, error) {
	if err := checkLockName(ElectionPrefix + name); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, observeReadTimeout)
	err := s.node.LinearizableRead(rctx)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make(chan *LockInfo)
	go func() {
		defer close(out)
		var last *LockInfo
		first := true
		for {
			changed := s.machine.LockChanges(ElectionPrefix + name)
			var cur *LockInfo
			if info, ok := s.machine.Lock(ElectionPrefix + name); ok {
				info.Name, info.Waiters = name, 0
				cur = &info
			}
			if first || !sameLeader(last, cur) {
				select {
				case out <- cur:
				case <-ctx.Done():
					return
				}
				first, last = false, cur
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// observeReadTimeout bounds the linearizable read an observation starts
// with.
const observeReadTimeout = 10 * time.Second

func sameLeader(a, b *LockInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Token == b.Token && a.Lease == b.Lease && string(a.Value) == string(b.Value)
}
