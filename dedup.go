package consensus

import (
	"fmt"
	"maps"
	"slices"
)

// proposalDedup makes applying a proposal idempotent: a proposal that
// reaches the leader twice (a duplicating network, a retried forward) is
// in the log twice, and only its first copy may change the state.
//
// It is part of the replicated state: every node updates it in log order
// from the entries alone, so every node decides alike. Its bounds are
// deterministic too: per proposer it remembers the sequence numbers of the
// last dedupWindow applications exactly and treats anything at or below
// its floor as already applied (a proposal that old is skipped, not
// applied; if its proposer is still waiting, the Ready loop tells it so,
// as ErrTimeout); it tracks at most maxDedupProposers proposers,
// forgetting the one least recently applied.
type proposalDedup struct {
	proposers map[uint64]*proposerWindow
}

type proposerWindow struct {
	floor     uint64              // every seq <= floor counts as applied
	seen      map[uint64]struct{} // applied seqs above floor
	maxSeq    uint64
	lastIndex uint64 // log index of its last application, for eviction
}

const (
	dedupWindow       = 1 << 14
	maxDedupProposers = 1 << 12
)

// firstTime records that the proposal (proposer, seq) is applied at index
// and reports whether this is its first application.
func (d *proposalDedup) firstTime(proposer, seq, index uint64) bool {
	if d.proposers == nil {
		d.proposers = make(map[uint64]*proposerWindow)
	}
	w := d.proposers[proposer]
	if w == nil {
		if len(d.proposers) >= maxDedupProposers {
			d.evictOldest()
		}
		w = &proposerWindow{seen: make(map[uint64]struct{})}
		d.proposers[proposer] = w
	}
	if seq <= w.floor {
		return false
	}
	if _, dup := w.seen[seq]; dup {
		return false
	}
	w.seen[seq] = struct{}{}
	w.maxSeq = max(w.maxSeq, seq)
	w.lastIndex = index
	if len(w.seen) > dedupWindow {
		w.floor = w.maxSeq - dedupWindow/2
		for s := range w.seen {
			if s <= w.floor {
				delete(w.seen, s)
			}
		}
	}
	return true
}

// evictOldest forgets the proposer whose last application has the lowest
// log index; indexes are unique, so the choice does not depend on map
// order.
func (d *proposalDedup) evictOldest() {
	var victim uint64
	oldest := ^uint64(0)
	for id, w := range d.proposers {
		if w.lastIndex < oldest {
			victim, oldest = id, w.lastIndex
		}
	}
	delete(d.proposers, victim)
}

// dedupRecord is one proposer's window in a snapshot. Field tags are part
// of the snapshot format.
type dedupRecord struct {
	Proposer  uint64   `msgpack:"p"`
	Floor     uint64   `msgpack:"f"`
	MaxSeq    uint64   `msgpack:"x"`
	LastIndex uint64   `msgpack:"i"`
	Seen      []uint64 `msgpack:"s"`
}

// records returns the table in a deterministic order: by proposer, each
// window's sequence numbers sorted.
func (d *proposalDedup) records() []dedupRecord {
	out := make([]dedupRecord, 0, len(d.proposers))
	for _, id := range slices.Sorted(maps.Keys(d.proposers)) {
		w := d.proposers[id]
		out = append(out, dedupRecord{
			Proposer: id, Floor: w.floor, MaxSeq: w.maxSeq, LastIndex: w.lastIndex,
			Seen: slices.Sorted(maps.Keys(w.seen)),
		})
	}
	return out
}

// checkDedupRecords verifies that records respect the table's bounds, so a
// restored table behaves as the one that was saved.
func checkDedupRecords(recs []dedupRecord) error {
	if len(recs) > maxDedupProposers {
		return fmt.Errorf("dedup table of %d proposers exceeds %d", len(recs), maxDedupProposers)
	}
	for _, r := range recs {
		if len(r.Seen) > dedupWindow {
			return fmt.Errorf("dedup window of %d exceeds %d", len(r.Seen), dedupWindow)
		}
		for _, s := range r.Seen {
			if s <= r.Floor || s > r.MaxSeq {
				return fmt.Errorf("dedup sequence %d outside (%d, %d]", s, r.Floor, r.MaxSeq)
			}
		}
	}
	return nil
}

// restore replaces the table with records checked by checkDedupRecords.
func (d *proposalDedup) restore(recs []dedupRecord) {
	d.proposers = make(map[uint64]*proposerWindow, len(recs))
	for _, r := range recs {
		w := &proposerWindow{floor: r.Floor, maxSeq: r.MaxSeq, lastIndex: r.LastIndex, seen: make(map[uint64]struct{}, len(r.Seen))}
		for _, s := range r.Seen {
			w.seen[s] = struct{}{}
		}
		d.proposers[r.Proposer] = w
	}
}
