package kv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"

	"errors"
	"slices"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/vmihailenco/msgpack/v5"
)

// leaseLog records what a LeaseObserver hears.
type leaseLog struct {
	granted []LeaseID
	removed []LeaseID
}

func (l *leaseLog) LeaseGranted(id LeaseID, _ int64) { l.granted = append(l.granted, id) }
func (l *leaseLog) LeasesRemoved(ids []LeaseID)      { l.removed = append(l.removed, ids...) }

type leaseStep struct {
	cmd     command
	wantErr error
}

func applySteps(t *testing.T, m *Machine, first uint64, steps []leaseStep) {
	t.Helper()
	for i, s := range steps {
		r := m.Apply(first+uint64(i), mustCmd(t, s.cmd)).(Result)
		if !errors.Is(r.Err, s.wantErr) {
			t.Fatalf("step %d (%v): %v, want %v", i, s.cmd.Op, r.Err, s.wantErr)
		}
	}
}

// A lease's keys go with it, all at one revision, as deletes a watcher
// sees; a key written again without the lease, or deleted, leaves it.
func TestLeaseRevokeDeletesItsKeysAtOneRevision(t *testing.T) {
	m := NewMachine()
	obs := &leaseLog{}
	m.SetLeaseObserver(obs)
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 7, TTL: 5000}, nil},
		{command{Op: opLeaseGrant, Lease: 7, TTL: 5000}, ErrLeaseExists},
		{command{Op: opLeaseGrant, Lease: 8, TTL: 0}, ErrInvalidTTL},
		{command{Op: opPut, Key: "a", Value: []byte(`1`), Lease: 7}, nil},
		{command{Op: opPut, Key: "b", Value: []byte(`1`), Lease: 7}, nil},
		{command{Op: opPut, Key: "c", Value: []byte(`1`), Lease: 7}, nil},
		{command{Op: opPut, Key: "d", Value: []byte(`1`), Lease: 9}, ErrLeaseNotFound},
		{command{Op: opPut, Key: "b", Value: []byte(`2`)}, nil}, // leaves the lease
		{command{Op: opDelete, Key: "c"}, nil},                  // leaves it too
		{command{Op: opPut, Key: "keep", Value: []byte(`1`)}, nil},
	})
	if a, _ := m.Get("a"); a.Lease != 7 {
		t.Fatalf("a = %+v, want lease 7", a)
	}
	if b, _ := m.Get("b"); b.Lease != 0 {
		t.Fatalf("b = %+v, want no lease after a put without one", b)
	}
	info, ok := m.LeaseInfo(7)
	if !ok || info.TTLMs != 5000 || !slices.Equal(info.Keys, []string{"a"}) {
		t.Fatalf("lease 7 = %+v, %v; want ttl 5000 and key a", info, ok)
	}
	w, err := m.Watch(context.Background(), "", m.Revision()+1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	applySteps(t, m, 20, []leaseStep{
		{command{Op: opPut, Key: "e", Value: []byte(`1`), Lease: 7}, nil},
		{command{Op: opLeaseRevoke, Lease: 7}, nil},
		{command{Op: opLeaseRevoke, Lease: 7}, ErrLeaseNotFound},
	})
	for _, k := range []string{"a", "e"} {
		if _, ok := m.Get(k); ok {
			t.Fatalf("%s survived its lease's revocation", k)
		}
	}
	if _, ok := m.Get("keep"); !ok {
		t.Fatal("a key without the lease went with it")
	}
	evs := collect(t, w, m.Revision())
	if len(evs) != 3 || evs[1].Type != EventDelete || evs[2].Type != EventDelete || evs[1].Item.Revision != evs[2].Item.Revision ||
		evs[1].Item.Revision != m.Revision() {
		t.Fatalf("events %+v; want e's put, then a's and e's deletes at one revision, the last", evs)
	}
	if !slices.Equal(obs.granted, []LeaseID{7}) || !slices.Equal(obs.removed, []LeaseID{7}) {
		t.Fatalf("observer heard granted %v removed %v", obs.granted, obs.removed)
	}
}

// An expiry revokes the leases that still exist and ignores the rest; a
// key put with a time to live has a lease of its own that goes when the
// key is written again without it.
func TestLeaseExpiryAndKeysWithATTL(t *testing.T) {
	m := NewMachine()
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 1, TTL: 1000}, nil},
		{command{Op: opLeaseGrant, Lease: 2, TTL: 1000}, nil},
		{command{Op: opPut, Key: "one", Value: []byte(`1`), Lease: 1}, nil},
		{command{Op: opPut, Key: "two", Value: []byte(`2`), Lease: 2}, nil},
		{command{Op: opLeaseExpire, Leases: []int64{1, 3}}, nil},
		{command{Op: opPut, Key: "t", Value: []byte(`1`), Lease: 50, TTL: 2000}, nil},
		{command{Op: opPut, Key: "u", Value: []byte(`1`), Lease: 50, TTL: 2000}, ErrLeaseExists},
	})
	if _, ok := m.Get("one"); ok {
		t.Fatal("an expired lease's key survived")
	}
	if _, ok := m.Get("two"); !ok {
		t.Fatal("a live lease's key went")
	}
	if it, _ := m.Get("t"); it.Lease != 50 {
		t.Fatalf("t = %+v, want its own lease 50", it)
	}
	if l, ok := m.LeaseInfo(50); !ok || l.TTLMs != 2000 {
		t.Fatalf("t's lease: %+v, %v", l, ok)
	}
	applySteps(t, m, 10, []leaseStep{{command{Op: opPut, Key: "t", Value: []byte(`2`)}, nil}})
	if _, ok := m.LeaseInfo(50); ok {
		t.Fatal("a key's own lease outlived the key's attachment")
	}
	if got := m.Leases(); !slices.Equal(got, []LeaseID{2}) {
		t.Fatalf("leases %v, want [2]", got)
	}
}

// The lease limits hold, with clear errors.
func TestLeaseLimits(t *testing.T) {
	m := NewMachine(WithLeaseLimits(2, 1))
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 1, TTL: 1000}, nil},
		{command{Op: opLeaseGrant, Lease: 2, TTL: 1000}, nil},
		{command{Op: opLeaseGrant, Lease: 3, TTL: 1000}, ErrTooManyLeases},
		{command{Op: opPut, Key: "x", Value: []byte(`1`), Lease: 3, TTL: 10}, ErrTooManyLeases},
		{command{Op: opPut, Key: "a", Value: []byte(`1`), Lease: 1}, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`2`), Lease: 1}, nil}, // already attached
		{command{Op: opPut, Key: "b", Value: []byte(`1`), Lease: 1}, ErrTooManyLeases},
		{command{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "c", Value: []byte(`1`), Lease: 1}}}, ErrTooManyLeases},
		{command{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "c", Value: []byte(`1`), Lease: 2}}}, nil},
	})
	if c, _ := m.Get("c"); c.Lease != 2 {
		t.Fatalf("c = %+v, want lease 2 from the batch", c)
	}
}

// Leases survive a snapshot, keys and all, and a snapshot of format 1
// (before leases) still restores.
func TestLeasesInSnapshots(t *testing.T) {
	m := NewMachine()
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 4, TTL: 3000}, nil},
		{command{Op: opPut, Key: "b", Value: []byte(`1`), Lease: 4}, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`1`), Lease: 4}, nil},
		{command{Op: opPut, Key: "t", Value: []byte(`1`), Lease: 9, TTL: 100}, nil},
	})
	snap := snapshotBytes(t, m)
	r := NewMachine()
	obs := &leaseLog{}
	r.SetLeaseObserver(obs)
	if err := r.Restore(consensus.Position{}, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if l, ok := r.LeaseInfo(4); !ok || l.TTLMs != 3000 || !slices.Equal(l.Keys, []string{"a", "b"}) {
		t.Fatalf("restored lease 4: %+v, %v", l, ok)
	}
	if !bytes.Equal(snapshotBytes(t, r), snap) {
		t.Fatal("a restored state snapshots to other bytes")
	}
	if !slices.Equal(obs.granted, []LeaseID{4, 9}) {
		t.Fatalf("observer heard of %v after restore, want [4 9]", obs.granted)
	}
	// The restored key's own lease still goes with the key.
	applySteps(t, r, 10, []leaseStep{{command{Op: opDelete, Key: "t"}, nil}})
	if _, ok := r.LeaseInfo(9); ok {
		t.Fatal("a key's own lease outlived the key after a restore")
	}

	// Format 1: no leases.
	old := NewMachine()
	applySteps(t, old, 1, []leaseStep{{command{Op: opPut, Key: "a", Value: []byte(`1`)}, nil}})
	v1 := snapshotV1(t, old)
	r1 := NewMachine()
	if err := r1.Restore(consensus.Position{}, bytes.NewReader(v1)); err != nil {
		t.Fatalf("format 1: %v", err)
	}
	if a, ok := r1.Get("a"); !ok || a.Revision != 1 {
		t.Fatalf("format 1 restored a = %+v, %v", a, ok)
	}
}

// A snapshot whose item names a lease it does not hold is refused.
func TestSnapshotWithDanglingLeaseRefused(t *testing.T) {
	m := NewMachine()
	applySteps(t, m, 1, []leaseStep{
		{command{Op: opLeaseGrant, Lease: 4, TTL: 3000}, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`1`), Lease: 4}, nil},
	})
	// Drop the lease from the tree only: the item still names it.
	m.leases.Delete(lease{id: 4})
	snap := snapshotBytes(t, m)
	if err := NewMachine().Restore(consensus.Position{}, bytes.NewReader(snap)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
	}
}

// snapshotV1 writes m, which has no leases, in snapshot format 1.
func snapshotV1(t *testing.T, m *Machine) []byte {
	t.Helper()
	var out bytes.Buffer
	rw := &recordWriter{w: bufio.NewWriter(&out), crc: crc32.New(crcTable)}
	rw.enc = msgpack.NewEncoder(&rw.buf)
	rw.enc.UseCompactInts(true)
	rw.raw(append([]byte(snapshotMagic), 1))
	rw.write(&snapshotHeaderV1{Revision: m.revision, Applied: m.applied, ItemCount: uint64(m.items.Len())})
	m.items.Ascend(func(it Item) bool {
		rw.write(&snapshotItemV1{Key: it.Key, Value: it.Value, Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version})
		return true
	})
	rw.raw(binary.BigEndian.AppendUint32(nil, rw.crc.Sum32()))
	if rw.err != nil || rw.w.Flush() != nil {
		t.Fatal(rw.err)
	}
	return out.Bytes()
}
