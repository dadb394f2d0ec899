package kv

import (
	"slices"

	"github.com/unrdf/consensus/api"
)

// LeaseID names a lease (api.LeaseID).
type LeaseID = api.LeaseID

// Lease describes a lease (api.Lease).
type Lease = api.Lease

// Lease errors (defined in api).
var (
	// ErrLeaseNotFound means no lease has this id: never granted, expired
	// or revoked.
	ErrLeaseNotFound = api.ErrLeaseNotFound
	// ErrTooManyLeases means the state holds its limit of leases
	// (WithLeaseLimits), or the lease its limit of keys.
	ErrTooManyLeases = api.ErrTooManyLeases
	// ErrInvalidTTL means a time to live outside api.MinLeaseTTLMs to
	// api.MaxLeaseTTLMs.
	ErrInvalidTTL = api.ErrInvalidTTL
)

// Default lease limits.
const (
	// DefaultMaxLeases bounds the leases the state holds.
	DefaultMaxLeases = 100_000
	// DefaultMaxLeaseKeys bounds the keys attached to one lease.
	DefaultMaxLeaseKeys = 10_000
)

// WithLeaseLimits sets the most leases the state holds and the most keys
// one lease carries (defaults DefaultMaxLeases, DefaultMaxLeaseKeys). Like
// every limit of the state, it must be configured alike on every node.
func WithLeaseLimits(leases, keysPerLease int) Option {
	return func(m *Machine) { m.maxLeases, m.maxLeaseKeys = leases, keysPerLease }
}

// lease is one lease of the replicated state. Its keys slice is sorted and
// replaced, never changed in place, so that a snapshot's clone of the
// lease tree may share it.
type lease struct {
	id    int64
	ttlMs int64
	keys  []string
	// auto marks a lease a put with a time to live created for its key
	// alone: it is revoked when its last key leaves it.
	auto bool
	// locks are the names of the locks it holds or waits for, sorted,
	// replaced like keys (lock.go).
	locks []string
	// taskQueue and taskID name the task a claim's lease holds (queue.go;
	// empty for any other lease).
	taskQueue, taskID string
}

func leaseLess(a, b lease) bool { return a.id < b.id }

// LeaseObserver hears, from Apply, of leases granted and removed: the
// leader's lease clock (Lessor) keeps their countdowns. Its methods run on
// the raft loop under the machine's lock: they must be quick and must not
// call the Machine.
type LeaseObserver interface {
	LeaseGranted(id LeaseID, ttlMs int64)
	LeasesRemoved(ids []LeaseID)
}

// SetLeaseObserver makes o hear of leases granted and removed from now on.
func (m *Machine) SetLeaseObserver(o LeaseObserver) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaseObs = o
}

func checkTTL(ttlMs int64) *applyError {
	if ttlMs < api.MinLeaseTTLMs || ttlMs > api.MaxLeaseTTLMs {
		return fail(ErrInvalidTTL, "time to live of %d ms, want %d to %d", ttlMs, api.MinLeaseTTLMs, api.MaxLeaseTTLMs)
	}
	return nil
}

// checkGrant checks that a lease id may be granted with ttlMs.
func (m *Machine) checkGrant(id, ttlMs int64) *applyError {
	if id <= 0 {
		return fail(ErrBadCommand, "lease id %d", id)
	}
	if err := checkTTL(ttlMs); err != nil {
		return err
	}
	if _, ok := m.leases.Get(lease{id: id}); ok {
		return fail(ErrLeaseExists, "grant lease %s", LeaseID(id))
	}
	if m.leases.Len() >= m.maxLeases {
		return fail(ErrTooManyLeases, "grant lease %s: the state holds %d leases, its limit", LeaseID(id), m.leases.Len())
	}
	return nil
}

// grant adds a lease the caller checked (checkGrant).
func (m *Machine) grant(id, ttlMs int64, auto bool) {
	m.leases.ReplaceOrInsert(lease{id: id, ttlMs: ttlMs, auto: auto})
	if m.leaseObs != nil {
		m.leaseObs.LeaseGranted(LeaseID(id), ttlMs)
	}
}

func (m *Machine) applyLeaseGrant(c *command) *applyError {
	if err := m.checkGrant(c.Lease, c.TTL); err != nil {
		return err
	}
	m.grant(c.Lease, c.TTL, false)
	return nil
}

func (m *Machine) applyLeaseRevoke(c *command) *applyError {
	l, ok := m.leases.Get(lease{id: c.Lease})
	if !ok {
		return fail(ErrLeaseNotFound, "revoke lease %s", LeaseID(c.Lease))
	}
	m.revokeLeases([]lease{l})
	return nil
}

// applyLeaseExpire revokes the leases the leader found expired, those that
// still exist, in one revision. It is proposed by the leader alone, bound
// to its term (consensus.InTerm), so a deposed leader's expiry is never
// applied.
func (m *Machine) applyLeaseExpire(c *command) *applyError {
	var ls []lease
	for _, id := range c.Leases {
		if l, ok := m.leases.Get(lease{id: id}); ok {
			ls = append(ls, l)
		}
	}
	m.revokeLeases(ls)
	return nil
}

// revokeLeases removes ls and deletes their keys, all at one new revision
// if there are any keys.
func (m *Machine) revokeLeases(ls []lease) {
	if len(ls) == 0 {
		return
	}
	var evs []Event
	ids := make([]LeaseID, len(ls))
	bumped := false
	for i, l := range ls {
		ids[i] = LeaseID(l.id)
		// Out of the tree first, so removing its keys (which detaches
		// them) does not rewrite its key list once per key.
		m.leases.Delete(l)
		m.releaseLeaseLocks(l)
		m.releaseLeaseTask(l)
		if len(l.keys) > 0 && !bumped {
			m.revision++
			bumped = true
		}
		for _, k := range l.keys {
			if _, ok := m.items.GetKey(Item{Key: k}); ok {
				evs = append(evs, m.remove(k))
			}
		}
	}
	if len(evs) > 0 {
		m.publish(evs...)
	}
	if m.leaseObs != nil {
		m.leaseObs.LeasesRemoved(ids)
	}
}

// checkAttach checks that key may be attached to lease id (which must
// exist and have room), unless it already is.
func (m *Machine) checkAttach(key string, id int64, cur Item, exists bool) *applyError {
	if exists && int64(cur.Lease) == id {
		return nil
	}
	l, ok := m.leases.Get(lease{id: id})
	if !ok {
		return fail(ErrLeaseNotFound, "put %q with lease %s", key, LeaseID(id))
	}
	if len(l.keys) >= m.maxLeaseKeys {
		return fail(ErrTooManyLeases, "put %q with lease %s: it carries %d keys, its limit", key, LeaseID(id), len(l.keys))
	}
	return nil
}

// attach records key under lease id (checked by checkAttach).
func (m *Machine) attach(key string, id int64) {
	l, _ := m.leases.Get(lease{id: id})
	if keys, changed := withName(l.keys, key); changed {
		l.keys = keys
		m.leases.ReplaceOrInsert(l)
	}
}

// withName returns sorted names with name added, and whether it was not
// there. The slice returned is a new one: a snapshot may share the old.
func withName(names []string, name string) ([]string, bool) {
	i, found := slices.BinarySearch(names, name)
	if found {
		return names, false
	}
	return slices.Insert(slices.Clip(names), i, name), true
}

// withoutName returns sorted names without name, and whether it was
// there; a new slice, as withName.
func withoutName(names []string, name string) ([]string, bool) {
	i, found := slices.BinarySearch(names, name)
	if !found {
		return names, false
	}
	return slices.Delete(slices.Clone(names), i, i+1), true
}

// detach removes key from lease id; an automatic lease left without keys
// is removed.
func (m *Machine) detach(key string, id int64) {
	l, ok := m.leases.Get(lease{id: id})
	if !ok {
		return
	}
	keys, found := withoutName(l.keys, key)
	if !found {
		return
	}
	if l.auto && len(keys) == 0 {
		m.leases.Delete(l)
		m.releaseLeaseLocks(l)
		if m.leaseObs != nil {
			m.leaseObs.LeasesRemoved([]LeaseID{LeaseID(id)})
		}
		return
	}
	l.keys = keys
	m.leases.ReplaceOrInsert(l)
}

// LeaseInfo returns the lease id as the replicated state has it: its time
// to live and keys (RemainingMs is the leader's to say: see Lessor).
func (m *Machine) LeaseInfo(id LeaseID) (Lease, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.leases.Get(lease{id: int64(id)})
	if !ok {
		return Lease{}, false
	}
	return Lease{ID: id, TTLMs: l.ttlMs, Keys: slices.Clone(l.keys)}, true
}

// leaseTTLs returns every lease's id and time to live, by id.
func (m *Machine) leaseTTLs() (ids []LeaseID, ttls []int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids = make([]LeaseID, 0, m.leases.Len())
	ttls = make([]int64, 0, m.leases.Len())
	m.leases.Ascend(func(l lease) bool {
		ids = append(ids, LeaseID(l.id))
		ttls = append(ttls, l.ttlMs)
		return true
	})
	return ids, ttls
}

// Leases returns the ids of every lease, in order.
func (m *Machine) Leases() []LeaseID {
	ids, _ := m.leaseTTLs()
	return ids
}
