package storage

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// bounds is the shape of a log as Save validation sees it. Entries
// first..last are stored; the term of first-1 is retained for matching.
// The log is empty when last == first-1.
type bounds struct {
	first, last uint64
	// snapIndex is the index of the stored snapshot, 0 if there is none.
	snapIndex uint64
}

// savePlan is a Save that has been checked against the current log and
// can be applied without further validation. Both implementations apply
// the same plan, which is what keeps their semantics identical.
type savePlan struct {
	// snap is the snapshot to store, nil if none.
	snap *raftpb.Snapshot
	// keepLog reports that the log holds the snapshot's index with the
	// snapshot's term, so the entries after it stay; otherwise the
	// snapshot replaces the whole log.
	keepLog bool
	// entries are the entries to write, already stripped of any that fall
	// below the first index.
	entries []*raftpb.Entry
	// hardState is the hard state to store, nil if none.
	hardState *raftpb.HardState
	// before and after are the log's bounds around the Save.
	before, after bounds
}

func (p *savePlan) empty() bool {
	return p.snap == nil && len(p.entries) == 0 && p.hardState == nil
}

// planSave validates a Save against the log described by b. termAt returns
// the term of an index in [b.first-1, b.last]. Nothing is changed here; an
// error means the Save must write nothing.
func planSave(b bounds, termAt func(uint64) (uint64, error), hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) (savePlan, error) {
	p := savePlan{before: b, after: b}

	if !raft.IsEmptySnap(snap) {
		si, st := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
		if b.snapIndex != 0 && si <= b.snapIndex {
			return savePlan{}, fmt.Errorf("storage: snapshot at index %d is not newer than the stored one at %d: %w", si, b.snapIndex, raft.ErrSnapOutOfDate)
		}
		if si+1 < b.first {
			// The log was compacted past si, so the entries between si and
			// the compaction point exist nowhere any more.
			return savePlan{}, fmt.Errorf("storage: snapshot at index %d is older than the log start %d: %w", si, b.first-1, raft.ErrSnapOutOfDate)
		}
		if si <= b.last {
			t, err := termAt(si)
			if err != nil {
				return savePlan{}, err
			}
			p.keepLog = t == st
		}
		p.snap = snap
		p.after.snapIndex = si
		p.after.first = si + 1
		if !p.keepLog {
			p.after.last = si
		}
	}

	for i, e := range entries {
		if e == nil {
			return savePlan{}, fmt.Errorf("storage: entry %d of %d is nil", i, len(entries))
		}
		if i > 0 && e.GetIndex() != entries[i-1].GetIndex()+1 {
			return savePlan{}, fmt.Errorf("storage: entries are not contiguous: index %d follows %d", e.GetIndex(), entries[i-1].GetIndex())
		}
	}
	if len(entries) > 0 {
		lo := entries[0].GetIndex()
		hi := entries[len(entries)-1].GetIndex()
		// Entries wholly below the first index are already covered by the
		// snapshot or compaction; like raft's MemoryStorage, skip them.
		if hi >= p.after.first {
			if lo < p.after.first {
				entries = entries[p.after.first-lo:]
				lo = p.after.first
			}
			if lo > p.after.last+1 {
				return savePlan{}, fmt.Errorf("storage: entries start at index %d, leaving a gap after the last index %d", lo, p.after.last)
			}
			// Raft's log never goes back in term, and Open refuses a store
			// whose log does, so refuse to write one.
			prevTerm := p.snap.GetMetadata().GetTerm()
			if p.snap == nil || lo-1 > p.after.first-1 {
				t, err := termAt(lo - 1)
				if err != nil {
					return savePlan{}, err
				}
				prevTerm = t
			}
			for _, e := range entries {
				if e.GetTerm() < prevTerm {
					return savePlan{}, fmt.Errorf("storage: entry %d has term %d, below the term %d before it", e.GetIndex(), e.GetTerm(), prevTerm)
				}
				prevTerm = e.GetTerm()
			}
			p.entries = entries
			p.after.last = hi
		}
	}

	if !raft.IsEmptyHardState(hs) {
		// Raft refuses to start from a hard state that commits entries the
		// log does not have, so never store one.
		if hs.GetCommit() > p.after.last {
			return savePlan{}, fmt.Errorf("storage: hard state commits index %d beyond the last index %d", hs.GetCommit(), p.after.last)
		}
		p.hardState = hs
	}
	return p, nil
}
