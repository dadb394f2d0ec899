package storage

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logStorage is the node's LogStorage seam.
type logStorage interface {
	raft.Storage
	Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) error
	SetSnapshot(snap *raftpb.Snapshot) error
	Compact(index uint64) error
	Close() error
}

var (
	_ logStorage = (*Pebble)(nil)
	_ logStorage = (*Memory)(nil)
)

// impls are the implementations that the conformance tests run against.
var impls = []struct {
	name string
	open func(t testing.TB) logStorage
}{
	{"memory", func(t testing.TB) logStorage {
		m := NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	}},
	// A Memory built by NewMemoryFrom from the empty state must be
	// indistinguishable from NewMemory's.
	{"memory-from", func(t testing.TB) logStorage {
		m, err := NewMemoryFrom(MemoryState{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}},
	{"pebble", func(t testing.TB) logStorage {
		p, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}},
}

func forEachImpl(t *testing.T, f func(t *testing.T, open func(testing.TB) logStorage)) {
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) { f(t, impl.open) })
	}
}

// entry makes an entry whose data names its index and term, so that a test
// can tell an overwritten entry from the original.
func entry(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{
		Index: proto.Uint64(index),
		Term:  proto.Uint64(term),
		Type:  raftpb.EntryType_EntryNormal.Enum(),
		Data:  fmt.Appendf(nil, "%d@%d", index, term),
	}
}

// ents makes entries from index on, one per term given.
func ents(index uint64, terms ...uint64) []*raftpb.Entry {
	out := make([]*raftpb.Entry, len(terms))
	for i, term := range terms {
		out[i] = entry(index+uint64(i), term)
	}
	return out
}

func snapshot(index, term uint64, voters ...uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: fmt.Appendf(nil, "state@%d", index),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(index),
			Term:      proto.Uint64(term),
			ConfState: &raftpb.ConfState{Voters: voters},
		},
	}
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// logWant describes a log: terms[0] is the term of the log start (first-1),
// terms[i] that of entry first-1+i.
type logWant struct {
	first uint64
	terms []uint64
}

func (w logWant) last() uint64 { return w.first - 2 + uint64(len(w.terms)) }

// checkLog checks bounds, every term, the errors just outside the range,
// and that Entries returns exactly the entries the terms describe.
func checkLog(t *testing.T, s logStorage, want logWant) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil || first != want.first {
		t.Fatalf("FirstIndex() = %d, %v; want %d", first, err, want.first)
	}
	last, err := s.LastIndex()
	if err != nil || last != want.last() {
		t.Fatalf("LastIndex() = %d, %v; want %d", last, err, want.last())
	}
	for i, wt := range want.terms {
		index := first - 1 + uint64(i)
		if term, err := s.Term(index); err != nil || term != wt {
			t.Errorf("Term(%d) = %d, %v; want %d", index, term, err, wt)
		}
	}
	if first >= 2 {
		if _, err := s.Term(first - 2); err != raft.ErrCompacted {
			t.Errorf("Term(%d) below the log start: err %v, want raft.ErrCompacted unwrapped", first-2, err)
		}
	}
	if _, err := s.Term(last + 1); err != raft.ErrUnavailable {
		t.Errorf("Term(%d) past the end: err %v, want raft.ErrUnavailable unwrapped", last+1, err)
	}
	if last < first {
		return
	}
	got, err := s.Entries(first, last+1, math.MaxUint64)
	if err != nil {
		t.Fatalf("Entries(%d, %d) = %v", first, last+1, err)
	}
	if len(got) != int(last+1-first) {
		t.Fatalf("Entries(%d, %d) returned %d entries, want %d", first, last+1, len(got), last+1-first)
	}
	for i, e := range got {
		if w := entry(first+uint64(i), want.terms[i+1]); !proto.Equal(e, w) {
			t.Errorf("entry %d = %v, want %v", first+uint64(i), e, w)
		}
	}
}

// errAny stands for "some error" in tables where the exact error is not
// part of the contract.
var errAny = errors.New("any error")

func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want == errAny && err == nil, want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}

// step is one Save (or, if compact is set, one Compact) and its expected
// error.
type step struct {
	hs      *raftpb.HardState
	ents    []*raftpb.Entry
	snap    *raftpb.Snapshot
	compact uint64
	wantErr error
}

func TestSaveAndCompact(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  logWant
	}{
		{"empty", nil, logWant{1, []uint64{0}}},
		{"nothing to save", []step{{}}, logWant{1, []uint64{0}}},
		{"append", []step{{ents: ents(1, 1, 1, 2)}}, logWant{1, []uint64{0, 1, 1, 2}}},
		{"append in two saves", []step{{ents: ents(1, 1, 1)}, {ents: ents(3, 2, 2)}},
			logWant{1, []uint64{0, 1, 1, 2, 2}}},
		{"conflicting suffix is overwritten", []step{{ents: ents(1, 1, 1, 1, 1, 1)}, {ents: ents(3, 2, 2)}},
			logWant{1, []uint64{0, 1, 1, 2, 2}}},
		{"overwrite with a longer suffix", []step{{ents: ents(1, 1, 1, 1)}, {ents: ents(2, 2, 2, 2, 2)}},
			logWant{1, []uint64{0, 1, 2, 2, 2, 2}}},
		{"rewrite of the same entries", []step{{ents: ents(1, 1, 1, 1)}, {ents: ents(1, 1, 1, 1)}},
			logWant{1, []uint64{0, 1, 1, 1}}},
		{"gap after the last index is an error", []step{{ents: ents(1, 1, 1)}, {ents: ents(4, 1), wantErr: errAny}},
			logWant{1, []uint64{0, 1, 1}}},
		{"gap on an empty log is an error", []step{{ents: ents(2, 1), wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"non-contiguous entries are an error", []step{{ents: append(ents(1, 1, 1), entry(4, 1)), wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"nil entry is an error", []step{{ents: []*raftpb.Entry{entry(1, 1), nil}, wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"entries going back in term are an error", []step{{ents: ents(1, 2, 1), wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"append below the last term is an error", []step{{ents: ents(1, 2, 2)}, {ents: ents(3, 1), wantErr: errAny}},
			logWant{1, []uint64{0, 2, 2}}},
		{"overwrite below the previous term is an error", []step{{ents: ents(1, 2, 2)}, {ents: ents(2, 1), wantErr: errAny}},
			logWant{1, []uint64{0, 2, 2}}},
		{"entries below the snapshot's term are an error", []step{{snap: snapshot(5, 3), ents: ents(6, 2), wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"invalid save writes nothing", []step{{hs: hardState(1, 1, 0), ents: ents(1, 1)},
			{hs: hardState(2, 2, 1), ents: ents(3, 2), wantErr: errAny}},
			logWant{1, []uint64{0, 1}}},
		{"snapshot on an empty log", []step{{snap: snapshot(5, 2)}}, logWant{6, []uint64{2}}},
		{"snapshot replaces a conflicting log", []step{{ents: ents(1, 1, 1, 1, 1, 1)}, {snap: snapshot(3, 2)}},
			logWant{4, []uint64{2}}},
		{"snapshot keeps the log after it when it matches", []step{{ents: ents(1, 1, 1, 1, 1, 1)}, {snap: snapshot(3, 1)}},
			logWant{4, []uint64{1, 1, 1}}},
		{"snapshot at the last index", []step{{ents: ents(1, 1, 1, 1)}, {snap: snapshot(3, 1)}},
			logWant{4, []uint64{1}}},
		{"snapshot beyond the log", []step{{ents: ents(1, 1, 1)}, {snap: snapshot(10, 3)}},
			logWant{11, []uint64{3}}},
		{"snapshot then entries in one save", []step{{ents: ents(1, 1, 1), snap: snapshot(5, 2)}},
			logWant{6, []uint64{2}}},
		{"snapshot and following entries in one save", []step{{snap: snapshot(5, 2), ents: ents(6, 2, 3)}},
			logWant{6, []uint64{2, 2, 3}}},
		{"entries below the first index are ignored", []step{{snap: snapshot(5, 2)}, {ents: ents(1, 1, 1, 1)}},
			logWant{6, []uint64{2}}},
		{"entries straddling the first index are trimmed", []step{{snap: snapshot(5, 2)}, {ents: ents(4, 2, 2, 2, 3)}},
			logWant{6, []uint64{2, 2, 3}}},
		{"older snapshot is out of date", []step{{snap: snapshot(5, 2)}, {snap: snapshot(4, 2), wantErr: raft.ErrSnapOutOfDate}},
			logWant{6, []uint64{2}}},
		{"same snapshot is out of date", []step{{snap: snapshot(5, 2)}, {snap: snapshot(5, 2), wantErr: raft.ErrSnapOutOfDate}},
			logWant{6, []uint64{2}}},
		{"snapshot older than the compaction point is out of date",
			[]step{{ents: ents(1, 1, 1, 1, 1, 1)}, {compact: 4}, {snap: snapshot(3, 1), wantErr: raft.ErrSnapOutOfDate}},
			logWant{5, []uint64{1, 1}}},
		{"snapshot at the compaction point", []step{{ents: ents(1, 1, 1, 1, 1, 1)}, {compact: 4}, {snap: snapshot(4, 1)}},
			logWant{5, []uint64{1, 1}}},
		{"empty snapshot is skipped", []step{{ents: ents(1, 1), snap: &raftpb.Snapshot{}}},
			logWant{1, []uint64{0, 1}}},
		{"hard state committing beyond the log is an error", []step{{hs: hardState(1, 1, 2), ents: ents(1, 1), wantErr: errAny}},
			logWant{1, []uint64{0}}},
		{"compact", []step{{ents: ents(1, 1, 1, 2, 2, 3)}, {compact: 3}},
			logWant{4, []uint64{2, 2, 3}}},
		{"compact at the last index", []step{{ents: ents(1, 1, 1, 2)}, {compact: 3}},
			logWant{4, []uint64{2}}},
		{"compact below the log start is a no-op", []step{{ents: ents(1, 1, 1, 2, 2)}, {compact: 3}, {compact: 2}, {compact: 3}},
			logWant{4, []uint64{2, 2}}},
		{"compact beyond the last index is an error", []step{{ents: ents(1, 1, 1)}, {compact: 3, wantErr: raft.ErrUnavailable}},
			logWant{1, []uint64{0, 1, 1}}},
		{"compact then append", []step{{ents: ents(1, 1, 1, 1)}, {compact: 3}, {ents: ents(4, 2, 2)}},
			logWant{4, []uint64{1, 2, 2}}},
		{"compact then overwrite at the first index", []step{{ents: ents(1, 1, 1, 1, 1, 1)}, {compact: 2}, {ents: ents(3, 2)}},
			logWant{3, []uint64{1, 2}}},
	}
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := open(t)
				for i, st := range tt.steps {
					var err error
					if st.compact != 0 {
						err = s.Compact(st.compact)
					} else {
						err = s.Save(st.hs, st.ents, st.snap)
					}
					checkErr(t, fmt.Sprintf("step %d", i), err, st.wantErr)
				}
				checkLog(t, s, tt.want)
			})
		}
	})
}

// testLog is the log of raft's own storage tests: log start 3 (term 3),
// then entries 4, 5, 6 with terms 4, 5, 6.
func testLog(t *testing.T, open func(testing.TB) logStorage) (logStorage, []*raftpb.Entry) {
	s := open(t)
	e := ents(4, 4, 5, 6)
	if err := s.Save(nil, e, snapshot(3, 3)); err != nil {
		t.Fatal(err)
	}
	return s, e
}

func TestEntries(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s, e := testLog(t, open)
		size := func(es ...*raftpb.Entry) uint64 {
			var n int
			for _, e := range es {
				n += proto.Size(e)
			}
			return uint64(n)
		}
		tests := []struct {
			lo, hi, maxSize uint64
			want            []*raftpb.Entry
			wantErr         error
		}{
			{2, 6, math.MaxUint64, nil, raft.ErrCompacted},
			{3, 4, math.MaxUint64, nil, raft.ErrCompacted},
			{4, 5, math.MaxUint64, e[:1], nil},
			{4, 6, math.MaxUint64, e[:2], nil},
			{4, 7, math.MaxUint64, e, nil},
			{5, 7, math.MaxUint64, e[1:], nil},
			{4, 4, math.MaxUint64, []*raftpb.Entry{}, nil},
			// At least one entry, however small maxSize is.
			{4, 7, 0, e[:1], nil},
			{4, 7, size(e[0]), e[:1], nil},
			{4, 7, size(e[0], e[1]), e[:2], nil},
			{4, 7, size(e[0], e[1]) + size(e[2])/2, e[:2], nil},
			{4, 7, size(e...) - 1, e[:2], nil},
			{4, 7, size(e...), e, nil},
			{4, 8, math.MaxUint64, nil, raft.ErrUnavailable},
			{7, 8, math.MaxUint64, nil, raft.ErrUnavailable},
			{6, 5, math.MaxUint64, nil, errAny},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("[%d,%d)/%d", tt.lo, tt.hi, tt.maxSize), func(t *testing.T) {
				got, err := s.Entries(tt.lo, tt.hi, tt.maxSize)
				if tt.wantErr == raft.ErrCompacted || tt.wantErr == raft.ErrUnavailable {
					// raft compares these with ==.
					if err != tt.wantErr {
						t.Fatalf("err %v, want %v unwrapped", err, tt.wantErr)
					}
					return
				}
				checkErr(t, "Entries", err, tt.wantErr)
				if tt.wantErr != nil {
					return
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %d entries, want %d", len(got), len(tt.want))
				}
				for i := range got {
					if !proto.Equal(got[i], tt.want[i]) {
						t.Errorf("entry %d = %v, want %v", i, got[i], tt.want[i])
					}
				}
			})
		}

		t.Run("append to the result does not change the log", func(t *testing.T) {
			got, err := s.Entries(4, 6, math.MaxUint64)
			if err != nil {
				t.Fatal(err)
			}
			_ = append(got, entry(100, 100))
			if again, _ := s.Entries(4, 7, math.MaxUint64); len(again) != 3 || again[2].GetIndex() != 6 {
				t.Fatalf("log changed: %v", again)
			}
		})
	})
}

func TestEntriesOnEmptyLog(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		if _, err := s.Entries(1, 1, math.MaxUint64); err != raft.ErrUnavailable {
			t.Errorf("empty log: err %v, want raft.ErrUnavailable", err)
		}
		if err := s.Save(nil, nil, snapshot(5, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Entries(6, 6, math.MaxUint64); err != raft.ErrUnavailable {
			t.Errorf("empty log after snapshot: err %v, want raft.ErrUnavailable", err)
		}
	})
}

func TestTerm(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s, _ := testLog(t, open)
		tests := []struct {
			i, want uint64
			wantErr error
		}{
			{2, 0, raft.ErrCompacted},
			{3, 3, nil},
			{4, 4, nil},
			{5, 5, nil},
			{6, 6, nil},
			{7, 0, raft.ErrUnavailable},
		}
		for _, tt := range tests {
			term, err := s.Term(tt.i)
			if err != tt.wantErr || term != tt.want {
				t.Errorf("Term(%d) = %d, %v; want %d, %v", tt.i, term, err, tt.want, tt.wantErr)
			}
		}
	})
}

func TestHardState(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		hs, cs, err := s.InitialState()
		if err != nil || hs == nil || cs == nil || !raft.IsEmptyHardState(hs) || len(cs.GetVoters()) != 0 {
			t.Fatalf("new store: InitialState() = %v, %v, %v; want empty, non-nil", hs, cs, err)
		}
		steps := []struct {
			save *raftpb.HardState
			want *raftpb.HardState
		}{
			{hardState(1, 2, 0), hardState(1, 2, 0)},
			{nil, hardState(1, 2, 0)},
			// An empty hard state means "unchanged", as in raft's Ready.
			{&raftpb.HardState{}, hardState(1, 2, 0)},
			{hardState(3, 0, 1), hardState(3, 0, 1)},
		}
		if err := s.Save(nil, ents(1, 1), nil); err != nil {
			t.Fatal(err)
		}
		for i, st := range steps {
			in := proto.Clone(st.save)
			if err := s.Save(st.save, nil, nil); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if st.save != nil && !proto.Equal(in, st.save) {
				t.Fatalf("step %d: Save changed its argument", i)
			}
			hs, _, err := s.InitialState()
			if err != nil || !raftHardStateEqual(hs, st.want) {
				t.Fatalf("step %d: InitialState() = %v, %v; want %v", i, hs, err, st.want)
			}
			// The caller owns the result.
			hs.Term = proto.Uint64(99)
			if again, _, _ := s.InitialState(); again.GetTerm() == 99 {
				t.Fatalf("step %d: mutating the result changed the store", i)
			}
		}
	})
}

func raftHardStateEqual(a, b *raftpb.HardState) bool {
	return a.GetTerm() == b.GetTerm() && a.GetVote() == b.GetVote() && a.GetCommit() == b.GetCommit()
}

func TestSnapshot(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		snap, err := s.Snapshot()
		if err != nil || snap.GetMetadata() == nil || !raft.IsEmptySnap(snap) || len(snap.GetData()) != 0 {
			t.Fatalf("new store: Snapshot() = %v, %v; want empty with zero metadata", snap, err)
		}
		want := snapshot(5, 2, 1, 2, 3)
		if err := s.Save(nil, ents(1, 1, 1, 1), want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Snapshot()
		if err != nil || !proto.Equal(got, raftpb.EnsureSnapshot(proto.Clone(want).(*raftpb.Snapshot))) {
			t.Fatalf("Snapshot() = %v, %v; want %v", got, err, want)
		}
		_, cs, err := s.InitialState()
		if err != nil || !proto.Equal(cs, raftpb.EnsureConfState(&raftpb.ConfState{Voters: []uint64{1, 2, 3}})) {
			t.Fatalf("InitialState() conf state = %v, %v; want voters 1 2 3", cs, err)
		}
		// A newer snapshot that matches the log replaces the old one.
		if err := s.Save(nil, ents(6, 2, 2), nil); err != nil {
			t.Fatal(err)
		}
		newer := snapshot(6, 2, 1, 2)
		if err := s.Save(nil, nil, newer); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Snapshot(); err != nil || !proto.Equal(got, raftpb.EnsureSnapshot(proto.Clone(newer).(*raftpb.Snapshot))) {
			t.Fatalf("Snapshot() = %v, %v; want %v", got, err, newer)
		}
		checkLog(t, s, logWant{7, []uint64{2, 2}})
	})
}

// SetSnapshot records a snapshot inside the log without dropping entries;
// Compact trims them later; the pair survives a reopen.
func TestSetSnapshotKeepsLog(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		if err := s.Save(hardState(2, 1, 10), ents(1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2), nil); err != nil {
			t.Fatal(err)
		}
		snap := snapshot(7, 2, 1, 2, 3)
		if err := s.SetSnapshot(snap); err != nil {
			t.Fatal(err)
		}
		checkLog(t, s, logWant{1, []uint64{0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2}})
		got, err := s.Snapshot()
		if err != nil || got.GetMetadata().GetIndex() != 7 || got.GetMetadata().GetTerm() != 2 {
			t.Fatalf("Snapshot() = %v, %v; want index 7 term 2", got, err)
		}
		checkErr(t, "SetSnapshot(same index)", s.SetSnapshot(snapshot(7, 2)), raft.ErrSnapOutOfDate)
		checkErr(t, "SetSnapshot(older)", s.SetSnapshot(snapshot(5, 1)), raft.ErrSnapOutOfDate)
		checkErr(t, "SetSnapshot(beyond last)", s.SetSnapshot(snapshot(11, 2)), raft.ErrUnavailable)
		if err := s.SetSnapshot(snapshot(8, 1)); err == nil {
			t.Fatal("SetSnapshot with a term the log does not have succeeded")
		}
		if err := s.Compact(4); err != nil {
			t.Fatal(err)
		}
		checkLog(t, s, logWant{5, []uint64{1, 2, 2, 2, 2, 2, 2}})
		// A leader's snapshot still replaces the log as before.
		if err := s.Save(nil, nil, snapshot(12, 3, 1)); err != nil {
			t.Fatal(err)
		}
		checkLog(t, s, logWant{13, []uint64{3}})
	})
}

func TestSetSnapshotSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(hardState(2, 1, 8), ents(1, 1, 1, 1, 2, 2, 2, 2, 2), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.SetSnapshot(snapshot(6, 2, 1)); err != nil {
		t.Fatal(err)
	}
	// Reopen once before any compaction: a log that was never compacted
	// still opens with a snapshot inside it.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	checkLog(t, p, logWant{1, []uint64{0, 1, 1, 1, 2, 2, 2, 2, 2}})
	if err := p.Compact(3); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	checkLog(t, p, logWant{4, []uint64{1, 2, 2, 2, 2, 2}})
	if got, err := p.Snapshot(); err != nil || got.GetMetadata().GetIndex() != 6 {
		t.Fatalf("Snapshot() after reopen = %v, %v; want index 6", got, err)
	}
}

func TestClosed(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		calls := map[string]func() error{
			"Close":        s.Close,
			"Save":         func() error { return s.Save(hardState(1, 0, 0), nil, nil) },
			"Compact":      func() error { return s.Compact(1) },
			"FirstIndex":   func() error { _, err := s.FirstIndex(); return err },
			"LastIndex":    func() error { _, err := s.LastIndex(); return err },
			"Term":         func() error { _, err := s.Term(0); return err },
			"Entries":      func() error { _, err := s.Entries(1, 1, 0); return err },
			"Snapshot":     func() error { _, err := s.Snapshot(); return err },
			"InitialState": func() error { _, _, err := s.InitialState(); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: err %v, want ErrClosed", name, err)
			}
		}
	})
}

// TestConcurrentUse runs a writer (as the raft loop would) against readers;
// it is meant for -race, and checks that readers never see a torn log.
func TestConcurrentUse(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func(testing.TB) logStorage) {
		s := open(t)
		const rounds = 200
		var wg sync.WaitGroup
		errc := make(chan error, 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= rounds; i++ {
				var err error
				switch {
				case i%50 == 0:
					err = s.Save(nil, nil, snapshot(i-1, 1))
				case i%10 == 0:
					err = s.Compact(i - 5)
				}
				if err == nil {
					err = s.Save(hardState(1, 1, i-1), ents(i, 1), nil)
				}
				if err != nil {
					errc <- fmt.Errorf("writer at %d: %w", i, err)
					return
				}
			}
		}()
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					if _, _, err := s.InitialState(); err != nil {
						errc <- err
						return
					}
					// Bounds and reads may interleave with writes, so only
					// raft's own sentinels are acceptable errors.
					first, _ := s.FirstIndex()
					last, _ := s.LastIndex()
					if _, err := s.Term(last); err != nil && err != raft.ErrCompacted && err != raft.ErrUnavailable {
						errc <- fmt.Errorf("Term(%d): %w", last, err)
						return
					}
					if last >= first {
						es, err := s.Entries(first, last+1, math.MaxUint64)
						if err != nil && err != raft.ErrCompacted && err != raft.ErrUnavailable {
							errc <- fmt.Errorf("Entries(%d, %d): %w", first, last+1, err)
							return
						}
						for i, e := range es {
							if e.GetIndex() != first+uint64(i) {
								errc <- fmt.Errorf("Entries(%d, %d) returned index %d at %d", first, last+1, e.GetIndex(), i)
								return
							}
						}
					}
					if _, err := s.Snapshot(); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		checkLog(t, s, logWant{200, []uint64{1, 1}})
	})
}

func TestClusterIDRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := p.ClusterID(); err != nil || id != 0 {
		t.Fatalf("new store: cluster id %d, %v; want 0", id, err)
	}
	if err := p.SetClusterID(0xfeedbeef); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if id, err := p.ClusterID(); err != nil || id != 0xfeedbeef {
		t.Fatalf("after reopen: cluster id %x, %v", id, err)
	}
	m := NewMemory()
	if err := m.SetClusterID(7); err != nil {
		t.Fatal(err)
	}
	if id, _ := m.ClusterID(); id != 7 {
		t.Fatalf("memory: cluster id %d", id)
	}
}

// TestTailCacheAgreesWithDisk writes more entries than the tail cache
// holds, overwrites a suffix inside the cache, and checks that reads served
// from the cache, from disk, and across both agree with a reopened store.
func TestTailCacheAgreesWithDisk(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = maxTailEntries + 500
	for lo := uint64(1); lo <= n; lo += 100 {
		batch := make([]*raftpb.Entry, 0, 100)
		for i := lo; i < lo+100 && i <= n; i++ {
			batch = append(batch, entry(i, 1))
		}
		if err := p.Save(nil, batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Replace the last 50 entries with term 2 ones.
	if err := p.Save(nil, ents(n-49, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2), nil); err != nil {
		t.Fatal(err)
	}
	read := func(s *Pebble) []uint64 {
		t.Helper()
		got, err := s.Entries(1, n+1, ^uint64(0))
		if err != nil {
			t.Fatal(err)
		}
		terms := make([]uint64, len(got))
		for i, e := range got {
			if e.GetIndex() != uint64(i+1) {
				t.Fatalf("entry %d has index %d", i+1, e.GetIndex())
			}
			terms[i] = e.GetTerm()
		}
		return terms
	}
	before := read(p)
	if tm, _ := p.Term(n); tm != 2 {
		t.Fatalf("Term(%d) = %d from the cache, want 2", n, tm)
	}
	if tm, _ := p.Term(n - 50); tm != 1 {
		t.Fatalf("Term(%d) = %d, want 1", n-50, tm)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	after := read(p)
	if len(before) != n || len(after) != n {
		t.Fatalf("read %d and %d entries, want %d", len(before), len(after), n)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("index %d: term %d with the cache, %d from disk", i+1, before[i], after[i])
		}
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(nil, ents(1, 1, 1, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(entries, nil) {
		path := dir
		if e != nil {
			path = filepath.Join(dir, e.Name())
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", path, info.Mode().Perm())
		}
	}
}
