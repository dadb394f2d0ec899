package storage

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// buildOp is one call that, with the others of its case, brings a store to
// the state a MemoryState describes.
type buildOp func(s logStorage) error

func saveOp(hs *raftpb.HardState, e []*raftpb.Entry, snap *raftpb.Snapshot) buildOp {
	return func(s logStorage) error { return s.Save(hs, e, snap) }
}

func setSnapshotOp(snap *raftpb.Snapshot) buildOp {
	return func(s logStorage) error { return s.SetSnapshot(snap) }
}

func compactOp(index uint64) buildOp {
	return func(s logStorage) error { return s.Compact(index) }
}

// validStates are states a node can reach, each with the calls that reach
// it through the logStorage methods.
var validStates = []struct {
	name  string
	state MemoryState
	ops   []buildOp
}{
	{"empty", MemoryState{}, nil},
	{"log from the start",
		MemoryState{Entries: ents(1, 1, 1, 2), HardState: hardState(2, 1, 3)},
		[]buildOp{saveOp(hardState(2, 1, 3), ents(1, 1, 1, 2), nil)}},
	{"leader's snapshot and entries after it",
		MemoryState{Snapshot: snapshot(5, 2, 1, 2, 3), Entries: ents(6, 2, 3), HardState: hardState(3, 1, 7)},
		[]buildOp{saveOp(hardState(3, 1, 7), ents(6, 2, 3), snapshot(5, 2, 1, 2, 3))}},
	{"snapshot alone",
		MemoryState{Snapshot: snapshot(5, 2, 1), HardState: hardState(2, 0, 5)},
		[]buildOp{saveOp(hardState(2, 0, 5), nil, snapshot(5, 2, 1))}},
	{"log start given as the snapshot's",
		MemoryState{Snapshot: snapshot(5, 2, 1), LogStart: &LogPosition{5, 2}, Entries: ents(6, 2), HardState: hardState(2, 0, 6)},
		[]buildOp{saveOp(hardState(2, 0, 6), ents(6, 2), snapshot(5, 2, 1))}},
	{"own snapshot inside a log never compacted",
		MemoryState{Snapshot: snapshot(4, 2, 1), LogStart: &LogPosition{}, Entries: ents(1, 1, 1, 2, 2, 2), HardState: hardState(2, 1, 5)},
		[]buildOp{saveOp(hardState(2, 1, 5), ents(1, 1, 1, 2, 2, 2), nil), setSnapshotOp(snapshot(4, 2, 1))}},
	{"own snapshot above the compaction point",
		MemoryState{Snapshot: snapshot(5, 2, 1, 2), LogStart: &LogPosition{2, 1}, Entries: ents(3, 1, 2, 2, 2, 3), HardState: hardState(3, 1, 7)},
		[]buildOp{saveOp(hardState(3, 1, 7), ents(1, 1, 1, 1, 2, 2, 2, 3), nil), setSnapshotOp(snapshot(5, 2, 1, 2)), compactOp(2)}},
	{"own snapshot at the last index",
		MemoryState{Snapshot: snapshot(5, 2, 1), LogStart: &LogPosition{3, 1}, Entries: ents(4, 1, 2), HardState: hardState(2, 0, 5)},
		[]buildOp{saveOp(hardState(2, 0, 5), ents(1, 1, 1, 1, 1, 2), nil), setSnapshotOp(snapshot(5, 2, 1)), compactOp(3)}},
}

// TestNewMemoryFromMatchesSaves builds each valid state with NewMemoryFrom
// and, on every implementation, with the calls that reach it; the stores
// must agree, and go on agreeing through further appends, an own
// snapshot, a compaction and a leader's snapshot.
func TestNewMemoryFromMatchesSaves(t *testing.T) {
	for _, tt := range validStates {
		t.Run(tt.name, func(t *testing.T) {
			forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
				got, err := NewMemoryFrom(tt.state)
				if err != nil {
					t.Fatalf("NewMemoryFrom: %v", err)
				}
				defer got.Close()
				want := open(t)
				for i, op := range tt.ops {
					if err := op(want); err != nil {
						t.Fatalf("building the reference, op %d: %v", i, err)
					}
				}
				sameStore(t, "as built", got, want)

				hs, _, err := want.InitialState()
				if err != nil {
					t.Fatal(err)
				}
				last, err := want.LastIndex()
				if err != nil {
					t.Fatal(err)
				}
				term := hs.GetTerm() + 1
				more := []buildOp{
					saveOp(hardState(term, 1, last+2), ents(last+1, term, term), nil),
					setSnapshotOp(snapshot(last+1, term, 1)),
					compactOp(last),
					saveOp(hardState(term+1, 0, last+9), nil, snapshot(last+9, term+1, 1)),
					saveOp(nil, ents(last+10, term+1), nil),
				}
				for i, op := range more {
					errGot, errWant := op(got), op(want)
					if (errGot == nil) != (errWant == nil) {
						t.Fatalf("further op %d: NewMemoryFrom's store: %v, reference: %v", i, errGot, errWant)
					}
					sameStore(t, fmt.Sprintf("after further op %d", i), got, want)
				}
			})
		})
	}
}

// sameStore fails unless got and want hold the same log, snapshot and
// initial state, and answer reads outside the log with the same errors.
func sameStore(t *testing.T, when string, got, want logStorage) {
	t.Helper()
	first, err := want.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := want.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := got.FirstIndex(); err != nil || f != first {
		t.Fatalf("%s: FirstIndex() = %d, %v; want %d", when, f, err, first)
	}
	if l, err := got.LastIndex(); err != nil || l != last {
		t.Fatalf("%s: LastIndex() = %d, %v; want %d", when, l, err, last)
	}
	lo := first - 1
	if lo > 0 {
		lo-- // below the log start: ErrCompacted from both
	}
	for i := lo; i <= last+1; i++ {
		gt, gerr := got.Term(i)
		wt, werr := want.Term(i)
		if gt != wt || gerr != werr {
			t.Errorf("%s: Term(%d) = %d, %v; want %d, %v", when, i, gt, gerr, wt, werr)
		}
	}
	if last >= first {
		g, err := got.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			t.Fatalf("%s: Entries: %v", when, err)
		}
		w, err := want.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		if len(g) != len(w) {
			t.Fatalf("%s: %d entries, want %d", when, len(g), len(w))
		}
		for i := range g {
			if !proto.Equal(g[i], w[i]) {
				t.Errorf("%s: entry %d = %v, want %v", when, first+uint64(i), g[i], w[i])
			}
		}
	}
	gs, err := got.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ws, err := want.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(raftpb.EnsureSnapshot(gs), raftpb.EnsureSnapshot(ws)) {
		t.Errorf("%s: Snapshot() = %v, want %v", when, gs, ws)
	}
	ghs, gcs, err := got.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	whs, wcs, err := want.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	if !raftHardStateEqual(ghs, whs) || !proto.Equal(gcs, wcs) {
		t.Errorf("%s: InitialState() = %v, %v; want %v, %v", when, ghs, gcs, whs, wcs)
	}
}

func TestNewMemoryFromRejects(t *testing.T) {
	tests := []struct {
		name      string
		state     MemoryState
		want      StateProblem
		wantIndex uint64
	}{
		{"nil entry", MemoryState{Entries: []*raftpb.Entry{entry(1, 1), nil}, HardState: hardState(1, 0, 1)}, ProblemNilEntry, 2},
		{"skipped index", MemoryState{Entries: append(ents(1, 1, 1), entry(4, 1)), HardState: hardState(1, 0, 1)}, ProblemNotContiguous, 4},
		{"repeated index", MemoryState{Entries: append(ents(1, 1, 1), entry(2, 1)), HardState: hardState(1, 0, 1)}, ProblemNotContiguous, 2},
		{"log not from index 1 without a snapshot", MemoryState{Entries: ents(2, 1), HardState: hardState(1, 0, 0)}, ProblemMisplacedEntries, 2},
		{"gap after the snapshot", MemoryState{Snapshot: snapshot(5, 2), Entries: ents(7, 2), HardState: hardState(2, 0, 5)}, ProblemMisplacedEntries, 7},
		{"entries overlapping the snapshot", MemoryState{Snapshot: snapshot(5, 2), Entries: ents(5, 2, 2), HardState: hardState(2, 0, 5)}, ProblemMisplacedEntries, 5},
		{"entries not after the log start", MemoryState{Snapshot: snapshot(5, 2), LogStart: &LogPosition{3, 1}, Entries: ents(5, 2), HardState: hardState(2, 0, 5)}, ProblemMisplacedEntries, 5},
		{"term going back", MemoryState{Entries: ents(1, 2, 1), HardState: hardState(2, 0, 0)}, ProblemTermGoesBack, 2},
		{"entry below the snapshot's term", MemoryState{Snapshot: snapshot(5, 3), Entries: ents(6, 2), HardState: hardState(3, 0, 5)}, ProblemTermGoesBack, 6},
		{"entry below the log start's term", MemoryState{Snapshot: snapshot(5, 3), LogStart: &LogPosition{3, 2}, Entries: ents(4, 1, 3), HardState: hardState(3, 0, 5)}, ProblemTermGoesBack, 4},
		{"entry with term 0", MemoryState{Entries: ents(1, 0), HardState: hardState(1, 0, 0)}, ProblemZeroTerm, 1},
		{"snapshot with term 0", MemoryState{Snapshot: snapshot(5, 0), HardState: hardState(1, 0, 5)}, ProblemZeroTerm, 5},
		{"log start with term 0", MemoryState{Snapshot: snapshot(5, 1), LogStart: &LogPosition{3, 0}, Entries: ents(4, 1, 1), HardState: hardState(1, 0, 5)}, ProblemZeroTerm, 3},
		{"log start at 0 with a term", MemoryState{LogStart: &LogPosition{0, 1}}, ProblemLogStart, 0},
		{"log start without a snapshot", MemoryState{LogStart: &LogPosition{3, 1}, Entries: ents(4, 1), HardState: hardState(1, 0, 4)}, ProblemLogStart, 3},
		{"log start above the snapshot", MemoryState{Snapshot: snapshot(5, 2), LogStart: &LogPosition{6, 2}, Entries: ents(7, 2), HardState: hardState(2, 0, 7)}, ProblemLogStart, 6},
		{"log start at the snapshot with another term", MemoryState{Snapshot: snapshot(5, 2), LogStart: &LogPosition{5, 1}, HardState: hardState(2, 0, 5)}, ProblemSnapshotTerm, 5},
		{"snapshot term disagrees with the log", MemoryState{Snapshot: snapshot(4, 2), LogStart: &LogPosition{2, 1}, Entries: ents(3, 1, 1, 2), HardState: hardState(2, 0, 5)}, ProblemSnapshotTerm, 4},
		{"snapshot beyond the log", MemoryState{Snapshot: snapshot(5, 1), LogStart: &LogPosition{2, 1}, Entries: ents(3, 1, 1), HardState: hardState(1, 0, 4)}, ProblemSnapshotBeyondLog, 5},
		{"entries without a hard state", MemoryState{Entries: ents(1, 1)}, ProblemNoHardState, 1},
		{"snapshot without a hard state", MemoryState{Snapshot: snapshot(5, 2), HardState: &raftpb.HardState{}}, ProblemNoHardState, 5},
		{"hard state term below the log", MemoryState{Entries: ents(1, 1, 2), HardState: hardState(1, 1, 1)}, ProblemHardStateTerm, 2},
		{"hard state term below the snapshot", MemoryState{Snapshot: snapshot(5, 3), HardState: hardState(2, 0, 5)}, ProblemHardStateTerm, 5},
		{"commit beyond the log", MemoryState{Entries: ents(1, 1), HardState: hardState(1, 0, 2)}, ProblemCommit, 2},
		{"commit below the snapshot", MemoryState{Snapshot: snapshot(3, 1), LogStart: &LogPosition{}, Entries: ents(1, 1, 1, 1, 1), HardState: hardState(1, 0, 2)}, ProblemCommit, 2},
		{"commit below the log start", MemoryState{Snapshot: snapshot(5, 2), HardState: hardState(2, 0, 4)}, ProblemCommit, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMemoryFrom(tt.state)
			if err == nil {
				m.Close()
				t.Fatal("NewMemoryFrom accepted an invalid state")
			}
			if !errors.Is(err, ErrInvalidState) {
				t.Errorf("err %v does not wrap ErrInvalidState", err)
			}
			var se *StateError
			if !errors.As(err, &se) {
				t.Fatalf("err %v (%T) is not a *StateError", err, err)
			}
			if se.Problem != tt.want || se.Index != tt.wantIndex {
				t.Errorf("err %v: problem %q at %d; want %q at %d", err, se.Problem, se.Index, tt.want, tt.wantIndex)
			}
		})
	}
}

func TestNewMemoryFromKeepsClusterID(t *testing.T) {
	m, err := NewMemoryFrom(MemoryState{Entries: ents(1, 1), HardState: hardState(1, 1, 1), ClusterID: 0xc1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if id, err := m.ClusterID(); err != nil || id != 0xc1 {
		t.Fatalf("ClusterID() = %x, %v; want c1", id, err)
	}
}

// The caller's snapshot and hard state are not changed (raft's
// MemoryStorage fills in the nil fields of a snapshot it is given).
func TestNewMemoryFromLeavesItsArguments(t *testing.T) {
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(2)}}
	hs := hardState(2, 0, 5)
	before, hsBefore := proto.Clone(snap), proto.Clone(hs)
	m, err := NewMemoryFrom(MemoryState{Snapshot: snap, HardState: hs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !proto.Equal(snap, before) || snap.GetMetadata().ConfState != nil || !proto.Equal(hs, hsBefore) {
		t.Fatalf("arguments changed: snapshot %v, hard state %v", snap, hs)
	}
	if err := m.Save(hardState(3, 0, 5), nil, nil); err != nil {
		t.Fatal(err)
	}
	if hs.GetTerm() != 2 {
		t.Fatal("a later Save changed the caller's hard state")
	}
}

// TestNewMemoryFromStartsRaft checks the rules against raft itself:
// random states, mostly near valid, are either refused with a *StateError
// or start a raft node (which panics on a state it cannot use) with the
// given hard state.
func TestNewMemoryFromStartsRaft(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	logger := &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	var accepted, refused int
	for i := 0; i < 3000; i++ {
		st := randomMemoryState(rng)
		m, err := NewMemoryFrom(st)
		if err != nil {
			var se *StateError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidState) {
				t.Fatalf("seed %d, state %d: err %v (%T), want a *StateError", seed, i, err, err)
			}
			refused++
			continue
		}
		accepted++
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("seed %d, state %d: raft panicked on an accepted state %s: %v", seed, i, describeState(st), r)
				}
			}()
			rn, err := raft.NewRawNode(&raft.Config{
				ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: m,
				Applied:       st.Snapshot.GetMetadata().GetIndex(),
				MaxSizePerMsg: math.MaxUint64, MaxInflightMsgs: 16, Logger: logger,
			})
			if err != nil {
				t.Fatalf("seed %d, state %d: raft refused an accepted state %s: %v", seed, i, describeState(st), err)
			}
			if hs := rn.Status().HardState; st.HardState != nil && !raftHardStateEqual(hs, st.HardState) {
				t.Fatalf("seed %d, state %d: raft started with %v, want %v", seed, i, hs, st.HardState)
			}
		}()
	}
	// The generator must exercise both outcomes, or the test proves little.
	if accepted < 300 || refused < 300 {
		t.Fatalf("seed %d: %d states accepted, %d refused; the generator is off", seed, accepted, refused)
	}
}

// randomMemoryState draws a small state that is valid about half the time.
func randomMemoryState(rng *rand.Rand) MemoryState {
	var st MemoryState
	chance := func(p float64) bool { return rng.Float64() < p }
	var snapIndex, snapTerm uint64
	if chance(0.6) {
		snapIndex, snapTerm = 1+rng.Uint64N(8), 1+rng.Uint64N(3)
		if chance(0.05) {
			snapTerm = 0
		}
		st.Snapshot = snapshot(snapIndex, snapTerm, 1)
	}
	start := LogPosition{Index: snapIndex, Term: snapTerm}
	if chance(0.4) {
		start.Index = rng.Uint64N(snapIndex + 1)
		if chance(0.1) {
			start.Index = rng.Uint64N(10)
		}
		start.Term = 0
		if start.Index > 0 {
			start.Term = 1 + rng.Uint64N(max(snapTerm, 1))
			if start.Index == snapIndex && chance(0.8) {
				start.Term = snapTerm
			}
		}
		st.LogStart = &start
	}
	index, term := start.Index+1, start.Term
	if chance(0.1) {
		index = rng.Uint64N(12)
	}
	for n := rng.IntN(7); n > 0; n-- {
		if index == snapIndex && chance(0.9) {
			term = snapTerm
		} else if chance(0.3) {
			term++
		}
		t := term
		if chance(0.03) {
			t = rng.Uint64N(term + 1)
		}
		st.Entries = append(st.Entries, entry(index, t))
		index++
		if chance(0.02) {
			index++
		}
	}
	last, lastTerm := index-1, term
	if len(st.Entries) == 0 {
		last, lastTerm = start.Index, start.Term
	}
	if chance(0.9) {
		hsTerm := lastTerm + rng.Uint64N(2)
		if chance(0.05) {
			hsTerm = rng.Uint64N(lastTerm + 1)
		}
		lo := max(start.Index, snapIndex)
		commit := lo
		if last > lo {
			commit += rng.Uint64N(last - lo + 1)
		}
		if chance(0.05) {
			commit = rng.Uint64N(last + 3)
		}
		st.HardState = hardState(hsTerm, rng.Uint64N(3), commit)
	}
	return st
}

func describeState(st MemoryState) string {
	s := fmt.Sprintf("snapshot %d@%d", st.Snapshot.GetMetadata().GetIndex(), st.Snapshot.GetMetadata().GetTerm())
	if st.LogStart != nil {
		s += fmt.Sprintf(" log start %d@%d", st.LogStart.Index, st.LogStart.Term)
	}
	s += " entries"
	for _, e := range st.Entries {
		s += fmt.Sprintf(" %d@%d", e.GetIndex(), e.GetTerm())
	}
	return s + fmt.Sprintf(" hard state %v", st.HardState)
}
