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
	if err := checkLockName(name); err != nil {
		return LockInfo{}, err
	}
	c := command{Op: opLockAcquire, Key: name, Lease: int64(lease)}
	if wait <= 0 {
		c.Value = []byte(lockTry)
	}
	changed := s.machine.LockChanges()
	if _, err := s.write(ctx, c); err != nil {
		return LockInfo{}, err
	}
	deadline := time.NewTimer(max(wait, 0))
	defer deadline.Stop()
	for {
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
		case <-changed:
			changed = s.machine.LockChanges()
		case <-deadline.C:
			return LockInfo{}, s.giveUp(ctx, name, lease, fmt.Errorf("kv: lock %q: waited %v: %w", name, wait, ErrLocked))
		case <-ctx.Done():
			return LockInfo{}, s.giveUp(context.WithoutCancel(ctx), name, lease, fmt.Errorf("kv: lock %q: %w: %w", name, ErrLocked, ctx.Err()))
		}
	}
}

// giveUp takes lease out of lock name's queue, or, if it got the lock
// meanwhile, releases it (its caller never learnt the token), and returns
// why.
func (s *Store) giveUp(ctx context.Context, name string, lease LeaseID, why error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
