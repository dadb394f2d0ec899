package storage

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MemoryState is the content NewMemoryFrom builds a Memory from: a state
// that a raft node could have stored, given directly instead of through a
// series of Save, SetSnapshot and Compact calls.
//
// The log holds Entries, which follow the log start (see LogStart). The
// zero MemoryState is an empty store, as NewMemory returns.
type MemoryState struct {
	// Snapshot is the newest snapshot (only its metadata matters to raft;
	// a node keeps the data in its SnapshotStore). Nil or empty for none.
	Snapshot *raftpb.Snapshot
	// LogStart is the compaction point: the index and term of the entry
	// just before Entries, whose data is gone but whose term is kept for
	// matching. Nil means the snapshot's index and term (0 and 0 without
	// a snapshot), so that Entries start right after the snapshot, as
	// they do after a leader's snapshot was installed. A node that took
	// its own snapshot keeps some entries below it for followers a little
	// behind; such a log has a LogStart below the snapshot's index. A log
	// start above 0 needs a snapshot at or above it: without one the state
	// of the compacted entries would exist nowhere.
	LogStart *LogPosition
	// Entries are the log after the log start: contiguous, the first at
	// LogStart's index + 1, terms never going back.
	Entries []*raftpb.Entry
	// HardState is the term, vote and commit index. It is required as soon
	// as there is a snapshot or a log: its term is at least the last
	// entry's (or the log start's), and its commit index is in the log and
	// covers the snapshot, which only ever holds committed state.
	HardState *raftpb.HardState
	// ClusterID is the id of the cluster the state belongs to, 0 if none
	// (see consensus.ClusterIDStore).
	ClusterID uint64
}

// LogPosition is an index in the log with the term of its entry.
type LogPosition struct {
	Index, Term uint64
}

// StateProblem says which rule a MemoryState breaks.
type StateProblem uint8

// The rules NewMemoryFrom checks.
const (
	// ProblemNilEntry: an entry is nil.
	ProblemNilEntry StateProblem = iota + 1
	// ProblemNotContiguous: an entry's index is not the previous one's + 1.
	ProblemNotContiguous
	// ProblemMisplacedEntries: the first entry is not right after the log
	// start (a gap, or an overlap with what the log start covers).
	ProblemMisplacedEntries
	// ProblemTermGoesBack: an entry's term is below the term before it.
	ProblemTermGoesBack
	// ProblemZeroTerm: a snapshot, log start or entry at a positive index
	// has term 0, which raft never writes.
	ProblemZeroTerm
	// ProblemLogStart: a log start above 0 without a snapshot, or above
	// the snapshot's index.
	ProblemLogStart
	// ProblemSnapshotBeyondLog: the log start is below the snapshot but
	// the log ends before it.
	ProblemSnapshotBeyondLog
	// ProblemSnapshotTerm: the log holds the snapshot's index with
	// another term.
	ProblemSnapshotTerm
	// ProblemNoHardState: a snapshot or a log without a hard state.
	ProblemNoHardState
	// ProblemHardStateTerm: the hard state's term is below the log's
	// last term.
	ProblemHardStateTerm
	// ProblemCommit: the hard state commits an index beyond the log, or
	// below the log start or the snapshot (raft refuses to start from it).
	ProblemCommit
)

var stateProblemNames = [...]string{
	ProblemNilEntry:          "nil entry",
	ProblemNotContiguous:     "entries not contiguous",
	ProblemMisplacedEntries:  "entries not right after the log start",
	ProblemTermGoesBack:      "term goes back",
	ProblemZeroTerm:          "zero term",
	ProblemLogStart:          "log start not covered by the snapshot",
	ProblemSnapshotBeyondLog: "snapshot beyond the log",
	ProblemSnapshotTerm:      "snapshot term disagrees with the log",
	ProblemNoHardState:       "no hard state",
	ProblemHardStateTerm:     "hard state term below the log",
	ProblemCommit:            "commit index out of range",
}

func (p StateProblem) String() string {
	if int(p) < len(stateProblemNames) && stateProblemNames[p] != "" {
		return stateProblemNames[p]
	}
	return fmt.Sprintf("StateProblem(%d)", uint8(p))
}

// StateError is the error NewMemoryFrom returns for a MemoryState that
// breaks a rule. It wraps ErrInvalidState.
type StateError struct {
	// Problem is the rule broken.
	Problem StateProblem
	// Index is the log index at fault (an entry's, the snapshot's or the
	// commit index), 0 if none.
	Index uint64
	// Detail says what was found, for people.
	Detail string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("storage: memory state: %s at index %d: %s", e.Problem, e.Index, e.Detail)
}

// Unwrap returns ErrInvalidState.
func (e *StateError) Unwrap() error { return ErrInvalidState }

func stateErr(p StateProblem, index uint64, format string, args ...any) error {
	return &StateError{Problem: p, Index: index, Detail: fmt.Sprintf(format, args...)}
}

// NewMemoryFrom returns a Memory holding s, or a *StateError (wrapping
// ErrInvalidState) naming the first rule s breaks; it never panics on bad
// input. The Memory keeps s's entries and snapshot data rather than
// copies, as Save does: neither the caller nor raft may change them
// afterwards.
func NewMemoryFrom(s MemoryState) (*Memory, error) {
	start, err := checkMemoryState(s)
	if err != nil {
		return nil, err
	}
	m := NewMemory()
	m.clusterID = s.ClusterID
	// Every call below is within the bounds checkMemoryState established,
	// so MemoryStorage's panics cannot fire; its errors are still passed on.
	snap := s.Snapshot
	hasSnap := !raft.IsEmptySnap(snap)
	if start.Index > 0 {
		// MemoryStorage keeps its log start as its snapshot's position:
		// record it as a snapshot without data, which the real snapshot
		// (at or above it) replaces below.
		var at *raftpb.Snapshot
		if start.Index != snap.GetMetadata().GetIndex() {
			at = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
				Index: proto.Uint64(start.Index), Term: proto.Uint64(start.Term),
				ConfState: &raftpb.ConfState{},
			}}
		} else {
			// A shallow copy: ApplySnapshot fills in nil fields of its
			// argument, which belongs to the caller.
			at = &raftpb.Snapshot{Data: snap.GetData(), Metadata: proto.Clone(snap.GetMetadata()).(*raftpb.SnapshotMetadata)}
		}
		if err := m.ms.ApplySnapshot(at); err != nil {
			return nil, fmt.Errorf("storage: memory state: %w", err)
		}
	}
	if err := m.ms.Append(s.Entries); err != nil {
		return nil, fmt.Errorf("storage: memory state: %w", err)
	}
	if hasSnap {
		if snap.GetMetadata().GetIndex() != start.Index {
			if err := m.createSnapshot(snap); err != nil {
				return nil, err
			}
		}
		m.snapIndex = snap.GetMetadata().GetIndex()
	}
	if !raft.IsEmptyHardState(s.HardState) {
		hs := &raftpb.HardState{
			Term:   proto.Uint64(s.HardState.GetTerm()),
			Vote:   proto.Uint64(s.HardState.GetVote()),
			Commit: proto.Uint64(s.HardState.GetCommit()),
		}
		if err := m.ms.SetHardState(hs); err != nil {
			return nil, fmt.Errorf("storage: memory state: %w", err)
		}
		m.hardState = hs
	}
	return m, nil
}

// checkMemoryState validates s and returns its log start.
func checkMemoryState(s MemoryState) (LogPosition, error) {
	var snapIndex, snapTerm uint64
	hasSnap := !raft.IsEmptySnap(s.Snapshot)
	if hasSnap {
		snapIndex, snapTerm = s.Snapshot.GetMetadata().GetIndex(), s.Snapshot.GetMetadata().GetTerm()
		if snapTerm == 0 {
			return LogPosition{}, stateErr(ProblemZeroTerm, snapIndex, "the snapshot has term 0")
		}
	}

	start := LogPosition{Index: snapIndex, Term: snapTerm}
	if s.LogStart != nil {
		start = *s.LogStart
		switch {
		case start.Index > 0 && start.Term == 0:
			return LogPosition{}, stateErr(ProblemZeroTerm, start.Index, "the log start has term 0")
		case start.Index == 0 && start.Term != 0:
			return LogPosition{}, stateErr(ProblemLogStart, 0, "the log start at index 0 has term %d, not 0", start.Term)
		case start.Index > 0 && !hasSnap:
			return LogPosition{}, stateErr(ProblemLogStart, start.Index, "the log starts after index %d but there is no snapshot", start.Index)
		case start.Index > snapIndex:
			return LogPosition{}, stateErr(ProblemLogStart, start.Index, "the log starts after index %d, above the snapshot at %d", start.Index, snapIndex)
		case hasSnap && start.Index == snapIndex && start.Term != snapTerm:
			return LogPosition{}, stateErr(ProblemSnapshotTerm, snapIndex, "the log start has term %d, the snapshot %d", start.Term, snapTerm)
		}
	}

	// The log: contiguous entries from start.Index+1, terms not going back.
	last, lastTerm := start.Index, start.Term
	for i, e := range s.Entries {
		if e == nil {
			return LogPosition{}, stateErr(ProblemNilEntry, last+1, "entry %d of %d is nil", i, len(s.Entries))
		}
		switch {
		case i == 0 && e.GetIndex() != start.Index+1:
			return LogPosition{}, stateErr(ProblemMisplacedEntries, e.GetIndex(), "the first entry must be at index %d, after the log start", start.Index+1)
		case i > 0 && e.GetIndex() != last+1:
			return LogPosition{}, stateErr(ProblemNotContiguous, e.GetIndex(), "entry follows index %d", last)
		case e.GetTerm() == 0:
			return LogPosition{}, stateErr(ProblemZeroTerm, e.GetIndex(), "the entry has term 0")
		case e.GetTerm() < lastTerm:
			return LogPosition{}, stateErr(ProblemTermGoesBack, e.GetIndex(), "term %d is below the term %d before it", e.GetTerm(), lastTerm)
		}
		if hasSnap && e.GetIndex() == snapIndex && e.GetTerm() != snapTerm {
			return LogPosition{}, stateErr(ProblemSnapshotTerm, snapIndex, "the entry has term %d, the snapshot %d", e.GetTerm(), snapTerm)
		}
		last, lastTerm = e.GetIndex(), e.GetTerm()
	}
	if hasSnap && snapIndex > last {
		return LogPosition{}, stateErr(ProblemSnapshotBeyondLog, snapIndex, "the log runs from %d to %d, below the snapshot", start.Index+1, last)
	}

	hs := s.HardState
	if raft.IsEmptyHardState(hs) {
		if hasSnap || last > 0 {
			return LogPosition{}, stateErr(ProblemNoHardState, last, "a log or snapshot needs the hard state (term, vote, commit) stored with it")
		}
		return start, nil
	}
	if hs.GetTerm() < lastTerm {
		return LogPosition{}, stateErr(ProblemHardStateTerm, last, "hard state term %d is below the log's last term %d", hs.GetTerm(), lastTerm)
	}
	// Raft starts its commit index at the log start and refuses a stored
	// one below it or beyond the log; the node counts the snapshot as
	// applied, and nothing is applied before it is committed.
	low := max(start.Index, snapIndex)
	if c := hs.GetCommit(); c < low || c > last {
		return LogPosition{}, stateErr(ProblemCommit, c, "commit index %d is outside [%d, %d] (log start or snapshot, last index)", c, low, last)
	}
	return start, nil
}
