package kv

import (
	"context"
	"strings"
)

// MaxLockList bounds how many locks one call of Locks returns: a state may
// hold DefaultMaxLocks of them, and the dashboard asks once a second.
const MaxLockList = 1000

// Locks returns the first limit locks by name (at most MaxLockList; limit
// <= 0 means MaxLockList), each with its holder's lease and token, how
// many wait, and the holder's value (an election leader's proclamation),
// and total, the number of locks the state holds. It reads under the
// read lock and visits no more locks than it returns. The values are the
// state's own, never changed in place: the caller must not modify them.
func (m *Machine) Locks(limit int) (locks []LockInfo, total int) {
	if limit <= 0 || limit > MaxLockList {
		limit = MaxLockList
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	total = m.locks.Len()
	locks = make([]LockInfo, 0, min(limit, total))
	m.locks.Ascend(func(l lock) bool {
		if len(locks) == limit {
			return false
		}
		locks = append(locks, LockInfo{Name: l.name, Token: l.token, Lease: LeaseID(l.holder), Value: l.value, Waiters: len(l.waiters)})
		return true
	})
	return locks, total
}

// LeaseCount returns how many leases the state holds.
func (m *Machine) LeaseCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.leases.Len()
}

// Locks is Machine.Locks after a read of consistency c.
func (s *Store) Locks(ctx context.Context, c Consistency, limit int) (locks []LockInfo, total int, err error) {
	if err := s.sync(ctx, c); err != nil {
		return nil, 0, err
	}
	locks, total = s.machine.Locks(limit)
	return locks, total, nil
}

// LeaseCount is Machine.LeaseCount after a read of consistency c.
func (s *Store) LeaseCount(ctx context.Context, c Consistency) (int, error) {
	if err := s.sync(ctx, c); err != nil {
		return 0, err
	}
	return s.machine.LeaseCount(), nil
}

// ElectionOf returns the name of the election behind lock name ("x" for
// "election/x"), or ok false if name is not an election's lock.
func ElectionOf(name string) (election string, ok bool) {
	election, ok = strings.CutPrefix(name, ElectionPrefix)
	if !ok || election == "" {
		return "", false
	}
	return election, true
}

// LeaseCountdowns is Lessor.Countdowns of this store's lessor (ok false
// without one).
func (s *Store) LeaseCountdowns(ids []LeaseID, n int) (map[LeaseID]int64, []Lease, bool) {
	if s.lessor == nil {
		return nil, nil, false
	}
	return s.lessor.Countdowns(ids, n)
}
