package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/unrdf/consensus"
)

// openTestValues opens a value store in a temporary directory with
// segments of segBytes, small enough that a test seals and evacuates
// many.
func openTestValues(t testing.TB, segBytes int64) *ValueStore {
	t.Helper()
	vs, err := OpenValueStore(filepath.Join(t.TempDir(), "values"), ValueStoreOptions{SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vs.Close(); err != nil {
			t.Error(err)
		}
	})
	return vs
}

// checkFiles fails unless every file in the store's directory is one of
// m's state's segments.
func checkFiles(t testing.TB, vs *ValueStore, m *Machine) {
	t.Helper()
	want := map[string]bool{}
	for _, sg := range m.items.vals.segs {
		if sg != nil {
			want[filepath.Base(sg.path)] = true
		}
	}
	ents, err := os.ReadDir(vs.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Fatalf("the store's directory holds %s, which is not one of the state's %d segments", e.Name(), len(want))
		}
	}
	if len(ents) != len(want) {
		t.Fatalf("the store's directory holds %d files for %d segments", len(ents), len(want))
	}
}

// TestValueStoreMatchesMemory applies the same random commands to a
// machine that keeps its values in the heap and to one that keeps them in
// a value store: every result, every snapshot (one taken mid-way and
// written only after the machine moved on) and the state restored from
// them must be the same, byte for byte.
func TestValueStoreMatchesMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 7))
	opts := []Option{WithSessions(4, 4), WithMaxKeys(10)}
	vs := openTestValues(t, 512)
	for round := range 30 {
		cmds := randomCommands(rng, 50+rng.IntN(300))
		cut := rng.IntN(len(cmds) + 1)
		mem := NewMachine(opts...)
		disk := NewMachine(append(opts, WithValueStore(vs))...)
		var memSnap, diskSnap consensus.StateSnapshot
		for i, c := range cmds {
			if i == cut {
				memSnap, _ = mem.Snapshot(consensus.Position{})
				diskSnap, _ = disk.Snapshot(consensus.Position{})
			}
			a, b := fmt.Sprint(mem.Apply(uint64(i+1), c)), fmt.Sprint(disk.Apply(uint64(i+1), c))
			if a != b {
				t.Fatalf("round %d, command %d: result %s with a value store, %s without", round, i, b, a)
			}
		}
		if memSnap != nil {
			var a, b bytes.Buffer
			if _, err := memSnap.WriteTo(&a); err != nil {
				t.Fatal(err)
			}
			if _, err := diskSnap.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			memSnap.Release()
			diskSnap.Release()
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("round %d: the snapshot at %d differs with a value store", round, cut)
			}
		}
		want := snapshotBytes(t, mem)
		if got := snapshotBytes(t, disk); !bytes.Equal(got, want) {
			t.Fatalf("round %d: final snapshot differs with a value store", round)
		}
		if mem.Stats() != disk.Stats() {
			t.Fatalf("round %d: stats %+v with a value store, %+v without", round, disk.Stats(), mem.Stats())
		}
		l1, r1 := mem.List("")
		l2, r2 := disk.List("")
		if fmt.Sprint(l1, r1) != fmt.Sprint(l2, r2) {
			t.Fatalf("round %d: List differs: %v vs %v", round, l2, l1)
		}
		// Restore into the machine with the store, over its own state.
		if err := disk.Restore(consensus.Position{}, bytes.NewReader(want)); err != nil {
			t.Fatal(err)
		}
		if got := snapshotBytes(t, disk); !bytes.Equal(got, want) {
			t.Fatalf("round %d: restored state differs", round)
		}
		checkFiles(t, vs, disk)
		disk.items.drop() // the next round's machine is a new one
	}
}

// TestValueStoreCloneKeepsItsValues: a read-only copy of the state (a
// snapshot, a list's view) reads the values it was taken with after the
// state overwrote and deleted them, evacuated their segments and was
// replaced by a restore, whose files are gone from the directory.
func TestValueStoreCloneKeepsItsValues(t *testing.T) {
	vs := openTestValues(t, 4<<10)
	m := NewMachine(WithValueStore(vs))
	idx := uint64(0)
	apply := func(c command) {
		t.Helper()
		idx++
		if r := m.Apply(idx, mustCmd(t, c)).(Result); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for i := range 2000 {
		apply(command{Op: opPut, Key: fmt.Sprintf("k%04d", i), Value: []byte(strconv.Itoa(i))})
	}
	before := snapshotBytes(t, m)
	view := m.ReadView()
	snap, _ := m.Snapshot(consensus.Position{})
	for round := range 3 {
		for i := range 2000 {
			if i%2 == 0 && round == 2 {
				apply(command{Op: opDelete, Key: fmt.Sprintf("k%04d", i)})
			} else {
				apply(command{Op: opPut, Key: fmt.Sprintf("k%04d", i), Value: []byte(`"new"`)})
			}
		}
	}
	if total, live := m.items.vals.diskBytes(); total > 2*live+2*vs.segBytes {
		t.Fatalf("the state's segments hold %d bytes for %d live: garbage was not evacuated", total, live)
	}
	// Replace the whole state, as a snapshot from the leader would.
	other := NewMachine()
	other.Apply(1, mustCmd(t, command{Op: opPut, Key: "k0001", Value: []byte(`"other"`)}))
	if err := m.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, other))); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, vs, m)
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !bytes.Equal(buf.Bytes(), before) {
		t.Fatal("a snapshot taken before the writes reads their values")
	}
	n := 0
	view.Range("", "", func(it Item) bool {
		if want := strconv.Itoa(n); string(it.Value) != want {
			t.Fatalf("view: %s = %s, want %s", it.Key, it.Value, want)
		}
		n++
		return true
	})
	if n != 2000 {
		t.Fatalf("view holds %d items, want 2000", n)
	}
	if it, ok := m.Get("k0001"); !ok || string(it.Value) != `"other"` {
		t.Fatalf("state after restore: %v %v", it, ok)
	}
}

// TestValueStoreEvacuates: overwrites leave garbage that the writes after
// them evacuate, so the files stay within about twice the live values,
// and every value reads back as last written.
func TestValueStoreEvacuates(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 9))
	vs := openTestValues(t, 8<<10)
	m := NewMachine(WithValueStore(vs))
	want := map[string]string{}
	for i := range 30000 {
		k := "k" + strconv.Itoa(rng.IntN(200))
		v := `"` + strings.Repeat("v", rng.IntN(300)) + strconv.Itoa(i) + `"`
		c := command{Op: opPut, Key: k, Value: []byte(v)}
		if rng.IntN(10) == 0 {
			if _, ok := want[k]; ok {
				c = command{Op: opDelete, Key: k}
				delete(want, k)
			}
		}
		if c.Op == opPut {
			want[k] = v
		}
		if r := m.Apply(uint64(i+1), mustCmd(t, c)).(Result); r.Err != nil {
			t.Fatal(r.Err)
		}
		if i%1000 == 999 {
			total, live := m.items.vals.diskBytes()
			// Evacuation runs a chunk per command, so allow one segment
			// being filled and one being emptied beyond twice the live.
			if total > 2*live+3*vs.segBytes {
				t.Fatalf("after %d writes the segments hold %d bytes for %d live", i+1, total, live)
			}
		}
	}
	checkFiles(t, vs, m)
	if m.Len() != len(want) {
		t.Fatalf("%d keys, want %d", m.Len(), len(want))
	}
	for k, v := range want {
		if it, ok := m.Get(k); !ok || string(it.Value) != v {
			t.Fatalf("%s = %q %v, want %q", k, it.Value, ok, v)
		}
	}
}

// TestValueStoreFailedRestoreKeepsState: a damaged snapshot leaves the
// state and its values as they were, and no file of its own behind.
func TestValueStoreFailedRestoreKeepsState(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 8))
	src := NewMachine()
	for i, c := range randomCommands(rng, 300) {
		src.Apply(uint64(i+1), c)
	}
	good := snapshotBytes(t, src)
	vs := openTestValues(t, 256)
	m := NewMachine(WithValueStore(vs))
	m.Apply(1, mustCmd(t, command{Op: opPut, Key: "mine", Value: []byte(`1`)}))
	before := snapshotBytes(t, m)
	for range 50 {
		bad := bytes.Clone(good)
		bad[len(bad)/2+rng.IntN(len(bad)/2)] ^= byte(1 + rng.IntN(255))
		if err := m.Restore(consensus.Position{}, bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
		}
	}
	if !bytes.Equal(snapshotBytes(t, m), before) {
		t.Fatal("a failed Restore changed the state")
	}
	checkFiles(t, vs, m)
}

// TestValueStoreConcurrentReads reads while commands are applied and
// segments evacuated (run with -race): every value read is one that was
// written under its key.
func TestValueStoreConcurrentReads(t *testing.T) {
	vs := openTestValues(t, 2<<10)
	m := NewMachine(WithValueStore(vs))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	check := func(it Item) {
		if want := `"` + it.Key + `-`; !bytes.HasPrefix(it.Value, []byte(want)) {
			panic(fmt.Sprintf("%s holds %s", it.Key, it.Value))
		}
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch r {
				case 0:
					if it, ok := m.Get("k7"); ok {
						check(it)
					}
				case 1:
					items, _ := m.List("k")
					for _, it := range items {
						check(it)
					}
				case 2:
					m.ReadView().Range("k", "", func(it Item) bool { check(it); return true })
				default:
					p, err := m.ListPage("k", ListOptions{Limit: 3})
					if err != nil {
						panic(err)
					}
					for _, it := range p.Items {
						check(it)
					}
				}
			}
		}()
	}
	for i := range 5000 {
		k := "k" + strconv.Itoa(i%20)
		c := command{Op: opPut, Key: k, Value: []byte(`"` + k + `-` + strconv.Itoa(i) + `"`)}
		if i%7 == 0 {
			c = command{Op: opDelete, Key: k}
		}
		m.Apply(uint64(i+1), mustCmd(t, c))
	}
	close(stop)
	wg.Wait()
}

// TestValueStoreKeepsValuesOutOfTheHeap: with a value store the tree's
// items hold no value.
func TestValueStoreKeepsValuesOutOfTheHeap(t *testing.T) {
	vs := openTestValues(t, 0)
	m := NewMachine(WithValueStore(vs))
	for i := range 100 {
		m.Apply(uint64(i+1), mustCmd(t, command{Op: opPut, Key: "k" + strconv.Itoa(i), Value: []byte(`"0123456789"`)}))
	}
	m.items.t.Ascend(func(p *treeItem) bool {
		if len(p.kv) != int(p.klen) {
			t.Fatalf("%s keeps its value in the heap", p.key())
		}
		return true
	})
	if _, live := m.items.vals.diskBytes(); live != 100*(recordHeader+12)+10*2+90*3 {
		t.Fatalf("the store holds %d live bytes", live)
	}
	if it, ok := m.Get("k42"); !ok || string(it.Value) != `"0123456789"` {
		t.Fatalf("Get = %v %v", it, ok)
	}
}

// TestValueStoreDetectsDamage: a record changed on disk is refused (the
// node stops), not served.
func TestValueStoreDetectsDamage(t *testing.T) {
	vs := openTestValues(t, 64)
	m := NewMachine(WithValueStore(vs))
	for i := range 10 {
		m.Apply(uint64(i+1), mustCmd(t, command{Op: opPut, Key: "k" + strconv.Itoa(i), Value: []byte(`"abcdefgh"`)}))
	}
	sg := m.items.vals.segs[0]
	b, err := os.ReadFile(sg.path)
	if err != nil {
		t.Fatal(err)
	}
	b[recordHeader+2+3] ^= 1 // inside k0's value, the segment's first
	if err := os.WriteFile(sg.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a damaged value was read without an error")
		} else if err, ok := r.(error); !ok || !errors.Is(err, ErrValueStore) {
			t.Fatalf("panic %v, want ErrValueStore", r)
		}
	}()
	m.Get("k0")
}

// TestOpenValueStoreEmptiesIt: the store is a cache of the state, which
// a restart rebuilds: what a previous run left is gone.
func TestOpenValueStoreEmptiesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "values")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000001-00000000.vlog"), []byte("left over"), 0o600); err != nil {
		t.Fatal(err)
	}
	vs, err := OpenValueStore(dir, ValueStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a reopened store holds %d files", len(ents))
	}
}

// TestValueStoreEvacuationDetectsDamage: a segment whose record lengths
// were changed on disk stops its evacuation with ErrValueStore rather
// than skipping or looping.
func TestValueStoreEvacuationDetectsDamage(t *testing.T) {
	vs := openTestValues(t, 64)
	m := NewMachine(WithValueStore(vs))
	idx := uint64(0)
	put := func(k string) {
		idx++
		m.Apply(idx, mustCmd(t, command{Op: opPut, Key: k, Value: []byte(`"abcdefgh"`)}))
	}
	for i := range 4 {
		put("k" + strconv.Itoa(i)) // k0-k2 fill segment 0; k3 seals it
	}
	sg := m.items.vals.segs[0]
	b, err := os.ReadFile(sg.path)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[4:], 1<<20) // k0's key length
	if err := os.WriteFile(sg.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a damaged segment was evacuated without an error")
		} else if err, ok := r.(error); !ok || !errors.Is(err, ErrValueStore) {
			t.Fatalf("panic %v, want ErrValueStore", r)
		}
	}()
	for range 10 {
		put("k1") // leaves segment 0 a third live: its evacuation starts
		put("k2")
	}
}

// TestValueStoreReadsAfterClose: once the store is closed (its server
// shutting down) a read finds no value rather than failing, buffered
// records included.
func TestValueStoreReadsAfterClose(t *testing.T) {
	vs, err := OpenValueStore(filepath.Join(t.TempDir(), "values"), ValueStoreOptions{SegmentBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMachine(WithValueStore(vs))
	for i := range 6 {
		m.Apply(uint64(i+1), mustCmd(t, command{Op: opPut, Key: "k" + strconv.Itoa(i), Value: []byte(`"abcdefgh"`)}))
	}
	view := m.ReadView()
	if err := vs.Close(); err != nil {
		t.Fatal(err)
	}
	m.Apply(7, mustCmd(t, command{Op: opPut, Key: "k9", Value: []byte(`1`)}))
	for _, k := range []string{"k0", "k5", "k9"} {
		if it, ok := m.Get(k); !ok || it.Value != nil {
			t.Fatalf("%s after Close: %v %v, want the item without a value", k, it, ok)
		}
	}
	view.Range("", "", func(it Item) bool {
		if it.Value != nil {
			t.Fatalf("%s after Close: value %s", it.Key, it.Value)
		}
		return true
	})
}

// FuzzValueRecord: any bytes parse as a record or fail with
// errBadRecord, never a panic; a record that parses is exactly what
// append writes for its key and value.
func FuzzValueRecord(f *testing.F) {
	vs := openTestValues(f, 0)
	s := vs.newSpace()
	s.append("key", []byte(`"value"`))
	f.Add(bytes.Clone(s.buf))
	f.Add([]byte{})
	f.Add(make([]byte, recordHeader))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > flushBytes/2 {
			return // appended again below without a file to flush to
		}
		key, v, err := parseRecord(b)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("error %v does not wrap errBadRecord", err)
			}
			return
		}
		again := &valueSpace{vs: vs, active: &segment{}, live: []int64{0}}
		again.append(key, v)
		if n := recordLen(key, uint32(len(v))); !bytes.Equal(again.buf, b[:n]) {
			t.Fatalf("record %x parses as %q=%q, which is written %x", b[:n], key, v, again.buf)
		}
	})
}
