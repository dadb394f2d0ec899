package kv

import (
	"context"
	"fmt"
	"testing"
)

// Locks lists the first locks by name with their holder, token, waiters
// and an election's value, and the total; a limit bounds the list, not
// the total; a lock nobody holds any more leaves it.
func TestMachineLocks(t *testing.T) {
	m := NewMachine()
	if locks, total := m.Locks(10); len(locks) != 0 || total != 0 || m.LeaseCount() != 0 {
		t.Fatalf("empty state: %v, %d, %d leases", locks, total, m.LeaseCount())
	}
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 1, TTL: 5000}, nil},
		{command{Op: opLeaseGrant, Lease: 2, TTL: 5000}, nil},
		{command{Op: opLeaseGrant, Lease: 3, TTL: 5000}, nil},
		{command{Op: opLockAcquire, Key: "job", Lease: 1}, nil},                                 // index 4: token 4
		{command{Op: opLockAcquire, Key: "job", Lease: 2}, nil},                                 // waits
		{command{Op: opLockAcquire, Key: "election/web", Lease: 3, Value: []byte(`"n3"`)}, nil}, // index 6
		{command{Op: opLockAcquire, Key: "a<b>", Lease: 2}, nil},                                // index 7
	})
	locks, total := m.Locks(0)
	want := []LockInfo{
		{Name: "a<b>", Token: 7, Lease: 2},
		{Name: "election/web", Token: 6, Lease: 3, Value: []byte(`"n3"`)},
		{Name: "job", Token: 4, Lease: 1, Waiters: 1},
	}
	if total != 3 || fmt.Sprint(locks) != fmt.Sprint(want) {
		t.Fatalf("Locks(0) = %v, %d; want %v, 3", locks, total, want)
	}
	if n := m.LeaseCount(); n != 3 {
		t.Fatalf("LeaseCount = %d, want 3", n)
	}
	if locks, total := m.Locks(2); total != 3 || len(locks) != 2 || locks[1].Name != "election/web" {
		t.Fatalf("Locks(2) = %v, %d; want the first 2 of 3", locks, total)
	}
	// The holder of job goes: its waiter holds it, with a new token.
	token := int64(7)
	applySteps(t, m, 8, []leaseStep{
		{command{Op: opLeaseRevoke, Lease: 1}, nil},
		{command{Op: opLockRelease, Key: "a<b>", Lease: 2, If: &token}, nil},
	})
	locks, total = m.Locks(10)
	want = []LockInfo{
		{Name: "election/web", Token: 6, Lease: 3, Value: []byte(`"n3"`)},
		{Name: "job", Token: 8, Lease: 2},
	}
	if total != 2 || fmt.Sprint(locks) != fmt.Sprint(want) || m.LeaseCount() != 2 {
		t.Fatalf("after a revoke and a release: %v, %d, %d leases; want %v, 2, 2", locks, total, m.LeaseCount(), want)
	}
}

// Locks returns at most MaxLockList, whatever the limit asked.
func TestMachineLocksBound(t *testing.T) {
	m := NewMachine()
	steps := []leaseStep{{command{Op: opLeaseGrant, Lease: 1, TTL: 5000}, nil}}
	for i := range MaxLockList + 5 {
		steps = append(steps, leaseStep{command{Op: opLockAcquire, Key: fmt.Sprintf("l%05d", i), Lease: 1}, nil})
	}
	applySteps(t, m, 1, steps)
	for _, limit := range []int{-1, 0, MaxLockList + 1, 1 << 30} {
		if locks, total := m.Locks(limit); len(locks) != MaxLockList || total != MaxLockList+5 || locks[0].Name != "l00000" {
			t.Errorf("Locks(%d): %d of %d, first %q; want %d of %d", limit, len(locks), total, locks[0].Name, MaxLockList, MaxLockList+5)
		}
	}
	s := NewStore(&localRaft{machine: m}, m)
	locks, total, err := s.Locks(context.Background(), Linearizable, 3)
	if err != nil || len(locks) != 3 || total != MaxLockList+5 {
		t.Fatalf("Store.Locks: %d of %d, %v", len(locks), total, err)
	}
	if n, err := s.LeaseCount(context.Background(), Local); err != nil || n != 1 {
		t.Fatalf("Store.LeaseCount: %d, %v", n, err)
	}
}

func TestElectionOf(t *testing.T) {
	for _, tc := range []struct {
		name, election string
		ok             bool
	}{
		{"election/web", "web", true},
		{"election/a/b", "a/b", true},
		{"election/", "", false},
		{"job", "", false},
		{"elections", "", false},
	} {
		if e, ok := ElectionOf(tc.name); e != tc.election || ok != tc.ok {
			t.Errorf("ElectionOf(%q) = %q, %v; want %q, %v", tc.name, e, ok, tc.election, tc.ok)
		}
	}
}
