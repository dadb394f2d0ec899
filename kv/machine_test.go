package kv

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func mustCmd(t *testing.T, c command) []byte {
	t.Helper()
	b, err := encodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMachineRevisionsAndVersions(t *testing.T) {
	m := NewMachine()
	steps := []struct {
		cmd     command
		wantRev int64
		wantErr error
	}{
		{command{Op: opPut, Key: "a", Value: []byte(`1`)}, 1, nil},
		{command{Op: opPut, Key: "b", Value: []byte(`"x"`)}, 2, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`2`)}, 3, nil},
		{command{Op: opDelete, Key: "missing"}, 0, ErrKeyNotFound},
		{command{Op: opDelete, Key: "a"}, 4, nil},
		{command{Op: opPut, Key: "a", Value: []byte(`3`)}, 5, nil},
		{command{Op: opPut, Key: "", Value: []byte(`3`)}, 0, ErrInvalidKey},
		{command{Op: opPut, Key: "c", Value: []byte(`{bad`)}, 0, ErrInvalidValue},
		{command{Op: opPut, Key: "c", Value: []byte(`"` + strings.Repeat("x", DefaultMaxValueBytes) + `"`)}, 0, ErrValueTooLarge},
		{command{Op: opPut, Key: strings.Repeat("k", DefaultMaxKeyBytes+1), Value: []byte(`1`)}, 0, ErrInvalidKey},
	}
	for i, s := range steps {
		r := m.Apply(uint64(i+1), mustCmd(t, s.cmd)).(Result)
		if !errors.Is(r.Err, s.wantErr) || (s.wantErr == nil && r.Revision != s.wantRev) {
			t.Fatalf("step %d: got rev %d err %v, want rev %d err %v", i, r.Revision, r.Err, s.wantRev, s.wantErr)
		}
	}
	a, ok := m.Get("a")
	if !ok || string(a.Value) != "3" || a.Revision != 5 || a.CreateRevision != 5 || a.Version != 1 {
		t.Fatalf("a after delete and re-create = %+v", a)
	}
	b, _ := m.Get("b")
	if b.Version != 1 || b.CreateRevision != 2 {
		t.Fatalf("b = %+v", b)
	}
	if m.Revision() != 5 || m.Len() != 2 {
		t.Fatalf("revision %d len %d", m.Revision(), m.Len())
	}
}

func TestMachineRejectsGarbageCommands(t *testing.T) {
	m := NewMachine()
	for _, in := range [][]byte{nil, {0xc1}, []byte("not msgpack"), mustCmd(t, command{Op: 99, Key: "a"})} {
		r := m.Apply(1, in).(Result)
		if !errors.Is(r.Err, ErrBadCommand) {
			t.Errorf("Apply(%q) err = %v, want ErrBadCommand", in, r.Err)
		}
	}
	if m.Revision() != 0 || m.Len() != 0 {
		t.Fatal("garbage changed the state")
	}
}

func TestMachineHugeDeclaredLengthDoesNotAllocate(t *testing.T) {
	// A map whose "v" claims a 2 GiB bin with no bytes behind it.
	in := []byte{0x83, 0xa1, 'o', 0x01, 0xa1, 'k', 0xa1, 'a', 0xa1, 'v', 0xc6, 0x7f, 0xff, 0xff, 0xff}
	m := NewMachine()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := m.Apply(1, in).(Result)
	runtime.ReadMemStats(&after)
	if !errors.Is(r.Err, ErrBadCommand) {
		t.Fatalf("err = %v, want ErrBadCommand", r.Err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("decoding allocated %d bytes", grew)
	}
}

func TestMachineListByPrefix(t *testing.T) {
	m := NewMachine()
	for i, k := range []string{"workflow:b", "node:1", "workflow:a", "workflowx"} {
		m.Apply(uint64(i+1), mustCmd(t, command{Op: opPut, Key: k, Value: []byte(`true`)}))
	}
	items, rev := m.List("workflow:")
	if rev != 4 || len(items) != 2 || items[0].Key != "workflow:a" || items[1].Key != "workflow:b" {
		t.Fatalf("List = %+v at %d", items, rev)
	}
	all, _ := m.List("")
	if len(all) != 4 {
		t.Fatalf("List(\"\") returned %d items", len(all))
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte{0x83, 0xa1, 'o', 0x01, 0xa1, 'k', 0xa1, 'a', 0xa1, 'v', 0xc4, 0x01, '1'})
	f.Add([]byte("garbage"))
	f.Add(appendCommand(nil, &command{Op: opHashCheck}))
	// An enqueue: {o: 15, k: "q", tk: "t", v: "1"}.
	f.Add([]byte{0x84, 0xa1, 'o', 0x0f, 0xa1, 'k', 0xa1, 'q', 0xa2, 't', 'k', 0xa1, 't', 0xa1, 'v', 0xc4, 0x01, '1'})
	// A schedule's put and fire.
	for _, c := range []command{
		{Op: opSchedulePut, Key: "s", Queue: "q", Cron: "*/5 * * * * *", Value: []byte(`1`), At: 1000},
		{Op: opSchedulePut, Key: "s", Queue: "q", Every: 1000, Value: []byte(`1`), At: 1000},
		{Op: opScheduleFire, Key: "s", Tick: 2000, At: 2500},
	} {
		b, err := encodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m := NewMachine()
		r := m.Apply(1, in).(Result)
		if r.Err != nil {
			return
		}
		// An accepted command that writes keys takes a revision; lease,
		// lock, hash-check and queue commands on an empty state write
		// none (a grant, an expiry of leases that do not exist, leaving a
		// lock nobody holds, a hash of the state, an enqueue: tasks are
		// not keys) and take none.
		c, err := decodeCommand(in)
		if err != nil {
			t.Fatalf("accepted a command that does not decode: %v", err)
		}
		switch c.Op {
		case opEtcdTxn:
			// An etcd transaction that writes nothing (reads, deletes
			// of nothing) takes no revision.
			if m.Revision() > 1 {
				t.Fatalf("%v took revision %d", c.Op, m.Revision())
			}
		case opLeaseGrant, opLeaseRevoke, opLeaseExpire, opLockAcquire, opLockRelease, opLockProclaim, opHashCheck,
			opTaskEnqueue, opTaskClaim, opTaskComplete, opTaskFail, opTaskRequeue,
			opSchedulePut, opScheduleDelete, opScheduleFire:
			if m.Revision() != 0 {
				t.Fatalf("%v on an empty state took revision %d", c.Op, m.Revision())
			}
		default:
			if m.Revision() != 1 {
				t.Fatalf("accepted %v without a revision", c.Op)
			}
		}
	})
}
