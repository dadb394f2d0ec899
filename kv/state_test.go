package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

// localRaft is a Raft that applies each proposal at once, in order, to
// its machine: the log of a single node without the network.
type localRaft struct {
	mu      sync.Mutex
	index   uint64
	machine *Machine
	// twice, when set, applies every proposal twice (a retried proposal
	// that reached the log again) and returns the second result.
	twice bool
}

func (l *localRaft) Propose(ctx context.Context, cmd []byte) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	r := l.machine.Apply(l.index, cmd)
	if l.twice {
		l.index++
		r = l.machine.Apply(l.index, cmd)
	}
	return r, nil
}
func (l *localRaft) LinearizableRead(context.Context) error { return nil }
func (l *localRaft) Status() consensus.Status               { return consensus.Status{SnapshotIndex: 7} }
func (l *localRaft) Ready() error                           { return nil }

func newLocalStore(opts ...Option) (*Store, *localRaft) {
	m := NewMachine(opts...)
	l := &localRaft{machine: m}
	return NewStore(l, m), l
}

func snapshotBytes(t testing.TB, m *Machine) []byte {
	t.Helper()
	s, err := m.Snapshot(consensus.Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testSeed returns the seed of a randomised test, printed so that a
// failure replays with KV_TEST_SEED=<seed>.
func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("KV_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (replay with KV_TEST_SEED=%d)", seed, seed)
	return seed
}

// randomCommands returns n random commands over a few keys and clients,
// with repeated (client, seq) pairs, conditions that hold and fail, bad
// input, batches and workflow and node commands.
func randomCommands(rng *rand.Rand, n int) [][]byte {
	key := func() string { return "k" + strconv.Itoa(rng.IntN(12)) }
	cond := func() *int64 {
		if rng.IntN(3) > 0 {
			return nil
		}
		r := int64(rng.IntN(8))
		return &r
	}
	seqs := map[string]uint64{}
	var out [][]byte
	for len(out) < n {
		var c command
		leaseID := func() int64 { return 1 + int64(rng.IntN(4)) }
		switch rng.IntN(16) {
		case 0, 1, 2:
			c = command{Op: opPut, Key: key(), Value: []byte(strconv.Itoa(rng.IntN(100))), If: cond()}
		case 3:
			c = command{Op: opDelete, Key: key(), If: cond()}
		case 4:
			ops := make([]txnOp, 1+rng.IntN(3))
			for i := range ops {
				ops[i] = txnOp{Op: opPut, Key: key(), Value: []byte(`{"b":` + strconv.Itoa(i) + `}`), If: cond()}
				if rng.IntN(4) == 0 {
					ops[i].Op, ops[i].Value = opDelete, nil
				}
			}
			c = command{Op: opTxn, Ops: ops}
		case 5:
			c = command{Op: op(opWorkflowStart + op(rng.IntN(3))), Key: "w" + strconv.Itoa(rng.IntN(3)),
				Value: []byte(`{"progress":` + strconv.Itoa(rng.IntN(10)) + `}`), At: int64(len(out))}
		case 6:
			c = command{Op: op(opNodeRegister + op(rng.IntN(2))), Key: "n" + strconv.Itoa(rng.IntN(3)), Value: []byte(`{"zone":"a"}`)}
		case 7:
			c = command{Op: opPut, Key: "", Value: []byte(`1`)} // invalid
		case 10:
			c = command{Op: opLeaseGrant, Lease: leaseID(), TTL: 1000}
		case 11:
			if rng.IntN(2) == 0 {
				c = command{Op: opLeaseRevoke, Lease: leaseID()}
			} else {
				c = command{Op: opLeaseExpire, Leases: []int64{leaseID(), leaseID()}}
			}
		case 12:
			c = command{Op: opPut, Key: key(), Value: []byte(`"leased"`), Lease: leaseID()}
		case 13:
			c = command{Op: opPut, Key: key(), Value: []byte(`"ttl"`), Lease: 100 + int64(len(out)), TTL: 500}
		case 14:
			c = command{Op: opLockAcquire, Key: "lock" + strconv.Itoa(rng.IntN(2)), Lease: leaseID()}
			if rng.IntN(2) == 0 {
				c.Value = []byte(`"candidate` + strconv.Itoa(len(out)) + `"`)
			}
			if rng.IntN(3) == 0 {
				c.Try = true
			}
		case 15:
			c = command{Op: opLockRelease, Key: "lock" + strconv.Itoa(rng.IntN(2)), Lease: leaseID()}
			if rng.IntN(2) == 0 {
				tok := int64(rng.IntN(len(out) + 1))
				c.If = &tok
			}
			if rng.IntN(4) == 0 {
				c = command{Op: opPut, Key: key(), Value: []byte(`"fenced"`), FenceLock: "lock0", FenceToken: int64(rng.IntN(len(out) + 1))}
			} else if rng.IntN(4) == 0 {
				tok := int64(rng.IntN(len(out) + 1))
				c = command{Op: opLockProclaim, Key: "lock0", If: &tok, Value: []byte(`"proclaimed"`)}
			}
		default:
			c = command{Op: opPut, Key: key(), Value: []byte(`true`)}
		}
		if rng.IntN(2) == 0 {
			client := "c" + strconv.Itoa(rng.IntN(6))
			if rng.IntN(4) == 0 && seqs[client] > 0 {
				c.Seq = seqs[client] - uint64(rng.IntN(int(seqs[client]))) // a retry, maybe old
			} else {
				seqs[client]++
				c.Seq = seqs[client]
			}
			c.Client = client
		}
		b, err := encodeCommand(c)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// TestSnapshotPlusTailEqualsReplay: for random command sequences, the
// state restored from a snapshot taken at a random point (and written
// only after the machine moved on: copy-on-write) plus the tail equals the
// state of replaying everything, byte for byte, and gives the same
// results for the tail.
func TestSnapshotPlusTailEqualsReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	opts := []Option{WithSessions(4, 4), WithMaxKeys(10)}
	for round := range 40 {
		cmds := randomCommands(rng, 50+rng.IntN(200))
		cut := rng.IntN(len(cmds) + 1)
		full := NewMachine(opts...)
		var snap consensus.StateSnapshot
		fullResults := make([]string, len(cmds))
		for i, c := range cmds {
			if i == cut {
				var err error
				if snap, err = full.Snapshot(consensus.Position{}); err != nil {
					t.Fatal(err)
				}
			}
			fullResults[i] = fmt.Sprint(full.Apply(uint64(i+1), c))
		}
		if snap == nil {
			snap, _ = full.Snapshot(consensus.Position{})
		}
		var buf bytes.Buffer
		if _, err := snap.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		restored := NewMachine(opts...)
		restored.Apply(1, mustCmd(t, command{Op: opPut, Key: "junk", Value: []byte(`1`)}))
		if err := restored.Restore(consensus.Position{}, bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("round %d: restore: %v", round, err)
		}
		for i := cut; i < len(cmds); i++ {
			if got := fmt.Sprint(restored.Apply(uint64(i+1), cmds[i])); got != fullResults[i] {
				t.Fatalf("round %d, command %d after a snapshot at %d: result %s, full replay %s", round, i, cut, got, fullResults[i])
			}
		}
		a, b := snapshotBytes(t, full), snapshotBytes(t, restored)
		if !bytes.Equal(a, b) {
			t.Fatalf("round %d: snapshot at %d + tail differs from full replay (%d vs %d bytes)", round, cut, len(b), len(a))
		}
		if full.Stats() != restored.Stats() {
			t.Fatalf("round %d: stats %+v vs %+v", round, restored.Stats(), full.Stats())
		}
	}
}

func TestRestoreRejectsDamageAndKeepsState(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	src := NewMachine()
	for i, c := range randomCommands(rng, 300) {
		src.Apply(uint64(i+1), c)
	}
	good := snapshotBytes(t, src)
	m := NewMachine()
	m.Apply(1, mustCmd(t, command{Op: opPut, Key: "mine", Value: []byte(`1`), Client: "x", Seq: 1}))
	before := snapshotBytes(t, m)
	check := func(what string, in []byte) {
		t.Helper()
		if err := m.Restore(consensus.Position{}, bytes.NewReader(in)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: Restore = %v, want ErrBadSnapshot", what, err)
		}
		if !bytes.Equal(snapshotBytes(t, m), before) {
			t.Fatalf("%s: a failed Restore changed the state", what)
		}
	}
	for n := 0; n < len(good); n += 1 + n/8 {
		check(fmt.Sprintf("truncated to %d", n), good[:n])
	}
	for range 200 {
		bad := bytes.Clone(good)
		bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
		check("flipped byte", bad)
	}
	check("trailing byte", append(bytes.Clone(good), 0))
	check("garbage", []byte("not a snapshot at all"))
	// A huge declared record length allocates nothing.
	check("huge record", append([]byte("KVSN\x01"), 0xff, 0xff, 0xff, 0xff, 0x0f))
	if err := m.Restore(consensus.Position{}, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, m), good) {
		t.Fatal("restore of a good snapshot does not round-trip")
	}
}

func FuzzRestore(f *testing.F) {
	m := NewMachine()
	for i, c := range randomCommands(rand.New(rand.NewPCG(1, 2)), 60) {
		m.Apply(uint64(i+1), c)
	}
	var buf bytes.Buffer
	s, _ := m.Snapshot(consensus.Position{})
	s.WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte("KVSN\x01"))
	// A format 4 snapshot: schedules beside tasks.
	sm := NewMachine()
	for i, c := range randomScheduleCommands(rand.New(rand.NewPCG(3, 4)), 60) {
		sm.Apply(uint64(i+1), c)
	}
	if len(sm.Schedules()) == 0 {
		f.Fatal("the format 4 seed holds no schedule")
	}
	f.Add(snapshotBytes(f, sm))
	f.Fuzz(func(t *testing.T, in []byte) {
		m := NewMachine()
		if err := m.Restore(consensus.Position{}, bytes.NewReader(in)); err != nil {
			return
		}
		// What restores writes a snapshot that restores to the same state
		// (the input may encode integers less compactly).
		out := snapshotBytes(t, m)
		again := NewMachine()
		if err := again.Restore(consensus.Position{}, bytes.NewReader(out)); err != nil {
			t.Fatalf("a written snapshot does not restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, again), out) {
			t.Fatal("restore then write is not a fixed point")
		}
	})
}

func TestDedupAppliesOnceAndReturnsFirstResult(t *testing.T) {
	m := NewMachine()
	put := mustCmd(t, command{Op: opPut, Key: "a", Value: []byte(`1`), Client: "c1", Seq: 1})
	r1 := m.Apply(1, put).(Result)
	r2 := m.Apply(2, put).(Result)
	if r1.Err != nil || r2 != r1 || m.Revision() != 1 {
		t.Fatalf("retry: %+v then %+v at revision %d; want one apply", r1, r2, m.Revision())
	}
	// A failed request is recorded too: a retry does not apply it now that
	// it would succeed.
	del := mustCmd(t, command{Op: opDelete, Key: "b", Client: "c1", Seq: 2})
	if r := m.Apply(3, del).(Result); !errors.Is(r.Err, ErrKeyNotFound) {
		t.Fatal(r.Err)
	}
	m.Apply(4, mustCmd(t, command{Op: opPut, Key: "b", Value: []byte(`1`)}))
	if r := m.Apply(5, del).(Result); !errors.Is(r.Err, ErrKeyNotFound) {
		t.Fatalf("retried delete = %v, want the recorded key_not_found", r.Err)
	}
	if _, ok := m.Get("b"); !ok {
		t.Fatal("the retried delete was applied")
	}
	// Another client's seq 1 is its own.
	if r := m.Apply(6, mustCmd(t, command{Op: opPut, Key: "a", Value: []byte(`2`), Client: "c2", Seq: 1})).(Result); r.Err != nil || r.Revision != 3 {
		t.Fatalf("c2 seq 1 = %+v", r)
	}
}

func TestDedupThroughStoreWithForcedRetry(t *testing.T) {
	s, l := newLocalStore()
	l.twice = true // every proposal reaches the log twice
	ctx := WithRequestID(context.Background(), RequestID{Client: "client-1", Seq: 1})
	rev, err := s.Put(ctx, "k", []byte(`"v"`))
	if err != nil || rev != 1 {
		t.Fatalf("put = %d, %v", rev, err)
	}
	if it, _ := s.Machine().Get("k"); it.Version != 1 || s.Machine().Revision() != 1 {
		t.Fatalf("applied twice: %+v, revision %d", it, s.Machine().Revision())
	}
	// Without an id the second copy applies (the node's own dedup is what
	// catches raft-level duplicates).
	if _, err := s.Put(context.Background(), "k", []byte(`"w"`)); err != nil {
		t.Fatal(err)
	}
	if it, _ := s.Machine().Get("k"); it.Version != 3 {
		t.Fatalf("version %d, want 3", it.Version)
	}
	if _, err := s.Put(WithRequestID(context.Background(), RequestID{Client: "", Seq: 1}), "k", []byte(`1`)); err == nil {
		// An empty client means no id: allowed.
		t.Log("empty client id: no dedup")
	}
	if _, err := s.Put(WithRequestID(context.Background(), RequestID{Client: "c", Seq: 0}), "k", []byte(`1`)); !errors.Is(err, ErrInvalidRequestID) {
		t.Fatalf("seq 0: %v", err)
	}
}

func TestSessionTableBoundsAndExpiry(t *testing.T) {
	m := NewMachine(WithSessions(2, 3))
	idx := uint64(0)
	apply := func(client string, seq uint64) Result {
		idx++
		return m.Apply(idx, mustCmd(t, command{Op: opPut, Key: "k", Value: []byte(`1`), Client: client, Seq: seq})).(Result)
	}
	for seq := uint64(1); seq <= 6; seq++ {
		apply("a", seq)
	}
	// Up to twice the window is kept: seq 1 is still known.
	if r := apply("a", 1); r.Err != nil || r.Revision != 1 || m.Revision() != 6 {
		t.Fatalf("seq 1 retry within twice the window = %+v", r)
	}
	apply("a", 7) // 7 results: trimmed to the newest 3 (5, 6, 7)
	if r := apply("a", 4); !errors.Is(r.Err, ErrRequestExpired) {
		t.Fatalf("seq 4 after the window moved: %v", r.Err)
	}
	rev := m.Revision()
	if r := apply("a", 6); r.Err != nil || r.Revision != 6 || m.Revision() != rev {
		t.Fatalf("seq 6 retry = %+v", r)
	}
	apply("b", 1)
	apply("c", 1) // evicts a? no: a was used after b... order a(idx7), b(8), c(9): a is oldest
	if m.Stats().Sessions != 2 {
		t.Fatalf("sessions %d", m.Stats().Sessions)
	}
	if r := apply("a", 6); r.Err != nil || m.Revision() == rev+2 {
		t.Fatalf("a forgotten: seq 4 applies again (documented): %+v", r)
	}
}

func TestMaxStateSizeBoundary(t *testing.T) {
	m := NewMachine() // the seed's 100000
	idx := uint64(0)
	apply := func(c command) Result {
		idx++
		return m.Apply(idx, mustCmd(t, c)).(Result)
	}
	for i := range DefaultMaxKeys {
		if r := apply(command{Op: opPut, Key: fmt.Sprintf("k%06d", i), Value: []byte(`0`)}); r.Err != nil {
			t.Fatalf("key %d: %v", i+1, r.Err)
		}
	}
	before := snapshotBytes(t, m)
	refused := []command{
		{Op: opPut, Key: "new", Value: []byte(`1`)},
		{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "k000000", Value: []byte(`9`)}, {Op: opPut, Key: "new", Value: []byte(`1`)}}},
		{Op: opWorkflowStart, Key: "w"},
		{Op: opNodeRegister, Key: "n"},
	}
	for _, c := range refused {
		if r := apply(c); !errors.Is(r.Err, ErrStateFull) {
			t.Fatalf("%v at the limit: %v, want ErrStateFull", c.Op, r.Err)
		}
	}
	after := snapshotBytes(t, m)
	// Only the applied index moved.
	if m.Len() != DefaultMaxKeys || m.Revision() != DefaultMaxKeys || len(after) != len(before) {
		t.Fatalf("a refused write touched the state: %d keys, revision %d", m.Len(), m.Revision())
	}
	if r := apply(command{Op: opPut, Key: "k000001", Value: []byte(`2`)}); r.Err != nil {
		t.Fatalf("update at the limit: %v", r.Err)
	}
	if r := apply(command{Op: opTxn, Ops: []txnOp{{Op: opDelete, Key: "k000002"}, {Op: opPut, Key: "new", Value: []byte(`1`)}}}); r.Err != nil {
		t.Fatalf("batch that deletes one and creates one at the limit: %v", r.Err)
	}
	if it, _ := m.Get("k000000"); string(it.Value) != "0" {
		t.Fatalf("k000000 = %s", it.Value)
	}
}

func TestConditionalWritesAndBatches(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	r1, err := s.PutIf(ctx, "a", []byte(`1`), IfAbsent())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIf(ctx, "a", []byte(`2`), IfAbsent()); !errors.Is(err, ErrConflict) {
		t.Fatalf("create-only on an existing key: %v", err)
	}
	if _, err := s.PutIf(ctx, "a", []byte(`2`), IfRevision(r1+5)); !errors.Is(err, ErrConflict) {
		t.Fatalf("wrong revision: %v", err)
	}
	if _, err := s.PutIf(ctx, "a", []byte(`2`), IfRevision(r1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteIf(ctx, "a", IfRevision(r1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete at an old revision: %v", err)
	}
	// IfExists: any revision of an existing key; never a missing one.
	if _, err := s.PutIf(ctx, "missing", []byte(`1`), IfExists()); !errors.Is(err, ErrConflict) {
		t.Fatalf("IfExists on a missing key: %v", err)
	}
	if _, err := s.DeleteIf(ctx, "missing", IfExists()); !errors.Is(err, ErrConflict) {
		t.Fatalf("IfExists delete of a missing key: %v", err)
	}
	r2, err := s.PutIf(ctx, "a", []byte(`2`), IfExists())
	if err != nil {
		t.Fatalf("IfExists on an existing key: %v", err)
	}
	// No write carries a negative revision.
	if _, err := s.PutIf(ctx, "a", []byte(`3`), IfRevision(-1)); !errors.Is(err, ErrInvalidRevision) {
		t.Fatalf("IfRevision(-1): %v", err)
	}
	if _, err := s.Batch(ctx, []Op{{Type: OpDelete, Key: "a", Cond: IfRevision(-2)}}); !errors.Is(err, ErrInvalidRevision) {
		t.Fatalf("batch with IfRevision(-2): %v", err)
	}
	rev, err := s.Batch(ctx, []Op{
		{Type: OpPut, Key: "b", Value: []byte(`"b"`), Cond: IfAbsent()},
		{Type: OpPut, Key: "c", Value: []byte(`"c"`)},
		{Type: OpDelete, Key: "a", Cond: IfRevision(r2)},
	})
	if err != nil || rev != r2+1 {
		t.Fatalf("batch = %d, %v", rev, err)
	}
	for _, k := range []string{"b", "c"} {
		if it, _ := s.Machine().Get(k); it.Revision != rev || it.CreateRevision != rev {
			t.Fatalf("%s = %+v, want revision %d", k, it, rev)
		}
	}
	bad := [][]Op{
		{{Type: OpPut, Key: "b", Value: []byte(`1`)}, {Type: OpPut, Key: "z", Value: []byte(`1`), Cond: IfRevision(99)}},
		{{Type: OpPut, Key: "d", Value: []byte(`1`)}, {Type: OpDelete, Key: "missing"}},
		{{Type: OpPut, Key: "d", Value: []byte(`1`)}, {Type: OpPut, Key: "d", Value: []byte(`2`)}},
		{{Type: OpPut, Key: "d", Value: []byte(`1`)}, {Type: OpPut, Key: "e", Value: []byte(`1`), Cond: IfExists()}},
	}
	wants := []error{ErrConflict, ErrKeyNotFound, ErrInvalidBatch, ErrConflict}
	for i, ops := range bad {
		if _, err := s.Batch(ctx, ops); !errors.Is(err, wants[i]) {
			t.Fatalf("batch %d: %v, want %v", i, err, wants[i])
		}
	}
	if _, err := s.Batch(ctx, nil); !errors.Is(err, ErrInvalidBatch) {
		t.Fatal(err)
	}
	if s.Machine().Revision() != rev {
		t.Fatal("a refused batch changed the state")
	}
	if ok, _ := s.Has(ctx, "b", Linearizable); !ok {
		t.Fatal("Has(b) false")
	}
	if ok, _ := s.Has(ctx, "a", Local); ok {
		t.Fatal("Has(a) true after delete")
	}
	keys, _, _ := s.Keys(ctx, "", Local)
	values, _, _ := s.Values(ctx, "", Local)
	if fmt.Sprint(keys) != "[b c]" || len(values) != 2 || string(values[1]) != `"c"` {
		t.Fatalf("keys %v values %s", keys, values)
	}
	st, _ := s.Stats(ctx, Local)
	if st.Keys != 2 || st.Revision != rev || st.Bytes != int64(len(`b"b"c"c"`)) || st.SnapshotIndex != 7 || st.AppliedIndex == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBatchAtomicUnderConcurrentReaders(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	keys := []string{"acct/a", "acct/b", "acct/c"}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var torn atomic.Int64
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				items, rev, _ := s.List(ctx, "acct/", Local)
				if len(items) == 0 {
					continue
				}
				for _, it := range items {
					if len(items) != len(keys) || !bytes.Equal(it.Value, items[0].Value) || it.Revision != rev {
						torn.Add(1)
					}
				}
			}
		})
	}
	for i := range 500 {
		ops := make([]Op, len(keys))
		for j, k := range keys {
			ops[j] = Op{Type: OpPut, Key: k, Value: []byte(strconv.Itoa(i))}
		}
		if _, err := s.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	readers.Wait()
	if n := torn.Load(); n > 0 {
		t.Fatalf("%d reads saw part of a batch", n)
	}
}

func TestUpdateIsAtomicReadModifyWrite(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 50 {
				_, err := s.Update(ctx, "counter", func(cur Item, exists bool) ([]byte, error) {
					calls.Add(1)
					n := 0
					if exists {
						json.Unmarshal(cur.Value, &n)
					}
					return []byte(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if it, _ := s.Machine().Get("counter"); string(it.Value) != "400" {
		t.Fatalf("counter = %s, want 400 (fn ran %d times)", it.Value, calls.Load())
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, "counter", func(Item, bool) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
}

func TestWorkflowTransitions(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	steps := []struct {
		name string
		do   func() (int64, error)
		want error
	}{
		{"update unknown", func() (int64, error) { return s.UpdateWorkflowState(ctx, "p", []byte(`{"progress":1}`)) }, ErrWorkflowNotFound},
		{"stop unknown", func() (int64, error) { return s.StopWorkflow(ctx, "p", nil) }, ErrWorkflowNotFound},
		{"start", func() (int64, error) {
			return s.StartWorkflow(ctx, "p", []byte(`{"name":"Data Processing","progress":0,"status":"ignored"}`))
		}, nil},
		{"start running", func() (int64, error) { return s.StartWorkflow(ctx, "p", nil) }, ErrInvalidTransition},
		{"update", func() (int64, error) { return s.UpdateWorkflowState(ctx, "p", []byte(`{"progress":0.5}`)) }, nil},
		{"update not an object", func() (int64, error) { return s.UpdateWorkflowState(ctx, "p", []byte(`[1]`)) }, ErrInvalidValue},
		{"stop", func() (int64, error) { return s.StopWorkflow(ctx, "p", []byte(`{"result":"ok"}`)) }, nil},
		{"stop stopped", func() (int64, error) { return s.StopWorkflow(ctx, "p", nil) }, ErrInvalidTransition},
		{"update stopped", func() (int64, error) { return s.UpdateWorkflowState(ctx, "p", []byte(`{}`)) }, ErrInvalidTransition},
		{"bad id", func() (int64, error) { return s.StartWorkflow(ctx, "a/b", nil) }, ErrInvalidKey},
		{"empty id", func() (int64, error) { return s.StartWorkflow(ctx, "", nil) }, ErrInvalidKey},
		{"register", func() (int64, error) { return s.RegisterNode(ctx, "app-1", []byte(`{"zone":"eu"}`)) }, nil},
		{"register again", func() (int64, error) { return s.RegisterNode(ctx, "app-1", []byte(`{"zone":"us"}`)) }, nil},
		{"deregister", func() (int64, error) { return s.DeregisterNode(ctx, "app-1") }, nil},
		{"deregister unknown", func() (int64, error) { return s.DeregisterNode(ctx, "app-1") }, ErrNodeNotFound},
		{"restart stopped", func() (int64, error) { return s.StartWorkflow(ctx, "p", []byte(`{"run":2}`)) }, nil},
	}
	for _, st := range steps {
		rev := s.Machine().Revision()
		_, err := st.do()
		if !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
		if err != nil && s.Machine().Revision() != rev {
			t.Fatalf("%s: failed but changed the state", st.name)
		}
		if st.name == "stop" {
			w, err := s.WorkflowState(ctx, "p", Linearizable)
			var obj map[string]any
			json.Unmarshal(w.Value, &obj)
			if err != nil || w.Status != StatusStopped || obj["progress"] != 0.5 || obj["name"] != "Data Processing" || obj["result"] != "ok" || obj["stoppedAt"] == nil {
				t.Fatalf("after stop: %+v %v", w, err)
			}
		}
	}
	w, _ := s.WorkflowState(ctx, "p", Local)
	if w.Status != StatusRunning || w.ID != "p" || !bytes.Contains(w.Value, []byte(`"run":2`)) || bytes.Contains(w.Value, []byte(`progress`)) {
		t.Fatalf("restarted workflow = %s", w.Value)
	}
	// The KV view and the workflow view agree: a workflow written through
	// the key-value API (the seed's example) is a workflow.
	if _, err := s.Put(ctx, "workflow:kvset", []byte(`{"name":"x","status":"running","progress":0}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StopWorkflow(ctx, "kvset", nil); err != nil {
		t.Fatal(err)
	}
	it, _ := s.Get(ctx, "workflow:kvset", Local)
	if statusOf(it.Value) != StatusStopped {
		t.Fatalf("kv view after stop: %s", it.Value)
	}
	ws, _, _ := s.Workflows(ctx, Local)
	if len(ws) != 2 || ws[0].ID != "kvset" || ws[1].ID != "p" {
		t.Fatalf("workflows %+v", ws)
	}
	if _, err := s.WorkflowState(ctx, "nope", Local); !errors.Is(err, ErrWorkflowNotFound) {
		t.Fatal(err)
	}
	s.RegisterNode(ctx, "app-2", nil)
	nodes, _, _ := s.Nodes(ctx, Local)
	if len(nodes) != 1 || nodes[0].ID != "app-2" {
		t.Fatalf("nodes %+v", nodes)
	}
}

// TestSnapshotWriteToRacesApply writes a snapshot while Apply goes on
// (run with -race): the bytes equal those of a snapshot of the same state
// written with nothing running.
func TestSnapshotWriteToRacesApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	m := NewMachine(WithSessions(8, 8))
	cmds := randomCommands(rng, 2000)
	for i, c := range cmds[:1000] {
		m.Apply(uint64(i+1), c)
	}
	want := snapshotBytes(t, m)
	snap, err := m.Snapshot(consensus.Position{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	go func() {
		var buf bytes.Buffer
		snap.WriteTo(&buf)
		snap.Release()
		done <- buf.Bytes()
	}()
	for i, c := range cmds[1000:] {
		m.Apply(uint64(1001+i), c)
		if i%100 == 0 {
			// Readers run beside both.
			m.List("k")
			m.Stats()
		}
	}
	if got := <-done; !bytes.Equal(got, want) {
		t.Fatal("a snapshot written while Apply ran differs from the state it was taken of")
	}
}
