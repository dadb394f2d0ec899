package kv

import (
	"slices"

	"github.com/unrdf/consensus/api"
)

// Lock errors (defined in api).
var (
	// ErrLocked means a lock is held by another lease (a try-once
	// acquire, or a wait that ran out).
	ErrLocked = api.ErrLocked
	// ErrNotHolder means a release named a lock that this lease and token
	// do not hold.
	ErrNotHolder = api.ErrNotHolder
	// ErrFenced means a fenced write's lock is not held with its token.
	// Nothing was changed.
	ErrFenced = api.ErrFenced
	// ErrTooManyLocks means the state holds its limit of locks, or the
	// lock its limit of waiters.
	ErrTooManyLocks = api.ErrTooManyLocks
)

// Default lock limits.
const (
	// DefaultMaxLocks bounds the locks (held or waited for) the state
	// holds.
	DefaultMaxLocks = 100_000
	// DefaultMaxLockWaiters bounds the waiters of one lock.
	DefaultMaxLockWaiters = 10_000
	// MaxLockNameBytes bounds a lock's name.
	MaxLockNameBytes = 512
)

// lock is one lock of the replicated state: its holder (a lease), the
// fencing token it was granted with (the raft index of the entry that
// granted it: strictly increasing, on every node alike), and the leases
// waiting for it, first come first served. waiters is replaced, never
// changed in place (snapshots share it). A lock neither held nor waited
// for is not kept.
type lock struct {
	name   string
	holder int64
	token  int64
	// value is the holder's value (an election's proclamation; nil for a
	// plain lock), never changed in place.
	value   []byte
	waiters []lockWaiter
}

// lockWaiter is a lease waiting for a lock, with the value it will hold
// it with.
type lockWaiter struct {
	lease int64
	value []byte
}

func waiterIndex(ws []lockWaiter, lease int64) int {
	return slices.IndexFunc(ws, func(w lockWaiter) bool { return w.lease == lease })
}

func lockLess(a, b lock) bool { return a.name < b.name }

// LockInfo describes a lock (api.Lock).
type LockInfo = api.Lock

func checkLockName(name string) *applyError {
	if name == "" || len(name) > MaxLockNameBytes {
		return fail(ErrInvalidKey, "lock name of %d bytes, want 1 to %d", len(name), MaxLockNameBytes)
	}
	return checkTextKey(name, MaxLockNameBytes)
}

// applyLockAcquire grants lock c.Key to lease c.Lease, with value c.Value
// (an election's candidate value; nil for a plain lock), if it is free
// (the token is this entry's index), or queues the lease behind the
// others (c.Try: fail with ErrLocked instead). A lease that holds it
// already gets its token again; one already queued keeps its place.
func (m *Machine) applyLockAcquire(c *command) *applyError {
	if err := checkLockName(c.Key); err != nil {
		return err
	}
	if len(c.Value) > 0 {
		if err := checkValue(c.Value, m.maxValueBytes); err != nil {
			return err
		}
	}
	if _, ok := m.leases.Get(lease{id: c.Lease}); !ok || c.Lease <= 0 {
		return fail(ErrLeaseNotFound, "lock %q with lease %s", c.Key, LeaseID(c.Lease))
	}
	l, exists := m.locks.Get(lock{name: c.Key})
	switch {
	case exists && l.holder == c.Lease:
		return nil
	case exists && waiterIndex(l.waiters, c.Lease) >= 0:
		if c.Try {
			return fail(ErrLocked, "lock %q is held by lease %s", c.Key, LeaseID(l.holder))
		}
		return nil
	case exists && c.Try:
		return fail(ErrLocked, "lock %q is held by lease %s", c.Key, LeaseID(l.holder))
	case exists:
		if len(l.waiters) >= m.maxLockWait {
			return fail(ErrTooManyLocks, "lock %q has %d waiters, its limit", c.Key, len(l.waiters))
		}
		l.waiters = append(slices.Clip(l.waiters), lockWaiter{lease: c.Lease, value: c.Value})
		m.locks.ReplaceOrInsert(l)
		m.leaseAddLock(c.Lease, c.Key)
		m.lockChanged(c.Key)
		return nil
	}
	if m.locks.Len() >= m.maxLocks {
		return fail(ErrTooManyLocks, "lock %q: the state holds %d locks, its limit", c.Key, m.locks.Len())
	}
	m.locks.ReplaceOrInsert(lock{name: c.Key, holder: c.Lease, token: int64(m.applied), value: c.Value})
	m.leaseAddLock(c.Lease, c.Key)
	m.lockChanged(c.Key)
	m.wakeWaiter(c.Key, c.Lease)
	return nil
}

// applyLockRelease releases lock c.Key held with token *c.If (by lease
// c.Lease, if not 0), handing it to the first waiter; or, with c.If nil,
// takes lease c.Lease out of the lock as holder or waiter (a wait given
// up).
func (m *Machine) applyLockRelease(c *command) *applyError {
	if err := checkLockName(c.Key); err != nil {
		return err
	}
	l, exists := m.locks.Get(lock{name: c.Key})
	if c.If != nil {
		// A release by token: the lease, if given, must be the holder's.
		if !exists || l.token != *c.If || (c.Lease != 0 && l.holder != c.Lease) {
			return fail(ErrNotHolder, "release lock %q: token %d does not hold it", c.Key, *c.If)
		}
		holder := l.holder
		m.leaveLock(l, holder)
		m.leaseRemoveLock(holder, c.Key)
		return nil
	}
	if !exists {
		return nil
	}
	m.leaveLock(l, c.Lease)
	m.leaseRemoveLock(c.Lease, c.Key)
	return nil
}

// leaveLock takes lease out of l, as holder (the first waiter whose
// lease still exists takes it, with this entry's index as token) or as
// waiter. The caller updates the lease's own list.
func (m *Machine) leaveLock(l lock, lease int64) {
	if l.holder != lease {
		i := waiterIndex(l.waiters, lease)
		if i < 0 {
			return
		}
		l.waiters = slices.Delete(slices.Clone(l.waiters), i, i+1)
		m.locks.ReplaceOrInsert(l)
		m.lockChanged(l.name)
		m.wakeWaiter(l.name, lease)
		return
	}
	if len(l.waiters) == 0 {
		m.locks.Delete(l)
		m.lockChanged(l.name)
		return
	}
	// Waiters' leases are live: a revoked lease leaves every lock it
	// waits for (revokeLeases).
	next := l.waiters[0]
	l.holder, l.value, l.waiters, l.token = next.lease, next.value, slices.Clone(l.waiters[1:]), int64(m.applied)
	m.locks.ReplaceOrInsert(l)
	m.lockChanged(l.name)
	// The next in line alone is woken: no other waiter's position
	// changed in a way it must act on.
	m.wakeWaiter(l.name, next.lease)
}

// applyLockProclaim sets the value of lock c.Key, held with token *c.If,
// to c.Value (an election leader's proclamation).
func (m *Machine) applyLockProclaim(c *command) *applyError {
	if err := checkLockName(c.Key); err != nil {
		return err
	}
	if err := checkValue(c.Value, m.maxValueBytes); err != nil {
		return err
	}
	l, exists := m.locks.Get(lock{name: c.Key})
	if c.If == nil || !exists || l.token != *c.If {
		return fail(ErrNotHolder, "proclaim in %q: that token does not hold it", c.Key)
	}
	l.value = c.Value
	m.locks.ReplaceOrInsert(l)
	m.lockChanged(c.Key)
	return nil
}

// checkFence refuses a write fenced by (name, token) unless lock name is
// held with that token now.
func (m *Machine) checkFence(name string, token int64) *applyError {
	l, ok := m.locks.Get(lock{name: name})
	if !ok || l.token != token {
		held := "free"
		if ok {
			held = "held with another token"
		}
		return fail(ErrFenced, "fence %s:%d: the lock is %s", name, token, held)
	}
	return nil
}

// leaseAddLock and leaseRemoveLock keep the names of the locks a lease
// holds or waits for, so that revoking it leaves them.
func (m *Machine) leaseAddLock(id int64, name string) {
	le, ok := m.leases.Get(lease{id: id})
	if !ok {
		return
	}
	if locks, changed := withName(le.locks, name); changed {
		le.locks = locks
		m.leases.ReplaceOrInsert(le)
	}
}

func (m *Machine) leaseRemoveLock(id int64, name string) {
	le, ok := m.leases.Get(lease{id: id})
	if !ok {
		return
	}
	if locks, changed := withoutName(le.locks, name); changed {
		le.locks = locks
		m.leases.ReplaceOrInsert(le)
	}
}

// releaseLeaseLocks takes a revoked lease out of every lock it holds or
// waits for.
func (m *Machine) releaseLeaseLocks(le lease) {
	for _, name := range le.locks {
		if l, ok := m.locks.Get(lock{name: name}); ok {
			m.leaveLock(l, le.id)
		}
	}
}

// lockWaitKey names one lease waiting for one lock.
type lockWaitKey struct {
	name  string
	lease int64
}

// lockChanged wakes whoever watches lock name (LockChanges: observers).
// Called with mu held.
func (m *Machine) lockChanged(name string) {
	if ch, ok := m.lockWatch[name]; ok {
		close(ch)
		delete(m.lockWatch, name)
	}
}

// wakeWaiter wakes the caller waiting for lease's turn at lock name
// (lockWait): it got the lock, or left the queue. Called with mu held.
func (m *Machine) wakeWaiter(name string, lease int64) {
	k := lockWaitKey{name, lease}
	if ch, ok := m.lockWaits[k]; ok {
		close(ch)
		delete(m.lockWaits, k)
	}
}

// wakeAllLocks wakes every lock watcher and waiter: the state was
// replaced (Restore). Called with mu held.
func (m *Machine) wakeAllLocks() {
	for name := range m.lockWatch {
		m.lockChanged(name)
	}
	for k := range m.lockWaits {
		m.wakeWaiter(k.name, k.lease)
	}
}

// LockChanges returns a channel closed at the next change of lock name:
// a new holder, token or value, a waiter more or less, the lock freed.
func (m *Machine) LockChanges(name string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch, ok := m.lockWatch[name]
	if !ok {
		if m.lockWatch == nil {
			m.lockWatch = make(map[string]chan struct{})
		}
		ch = make(chan struct{})
		m.lockWatch[name] = ch
	}
	return ch
}

// lockWait returns a channel closed when lease gets lock name or leaves
// its queue: a waiter is woken for its own turn only, not by every
// change of the lock (no thundering herd among a lock's waiters).
// dropLockWait forgets it if it was never closed.
func (m *Machine) lockWait(name string, lease LeaseID) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := lockWaitKey{name, int64(lease)}
	ch, ok := m.lockWaits[k]
	if !ok {
		if m.lockWaits == nil {
			m.lockWaits = make(map[lockWaitKey]chan struct{})
		}
		ch = make(chan struct{})
		m.lockWaits[k] = ch
	}
	return ch
}

func (m *Machine) dropLockWait(name string, lease LeaseID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.lockWaits, lockWaitKey{name, int64(lease)})
}

// Lock describes lock name as the state has it: its holder's lease and
// token and how many wait. ok is false if it is neither held nor waited
// for.
func (m *Machine) Lock(name string) (info LockInfo, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.locks.Get(lock{name: name})
	if !ok {
		return LockInfo{}, false
	}
	return LockInfo{Name: name, Token: l.token, Lease: LeaseID(l.holder), Value: l.value, Waiters: len(l.waiters)}, true
}

// lockPosition returns whether lease holds lock name (and its token), or
// waits for it.
func (m *Machine) lockPosition(name string, id LeaseID) (token int64, held, waiting bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.locks.Get(lock{name: name})
	if !ok {
		return 0, false, false
	}
	if l.holder == int64(id) {
		return l.token, true, false
	}
	return 0, false, waiterIndex(l.waiters, int64(id)) >= 0
}
