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
// from the entries alone, so every node decides alike. Per proposer it
// keeps a floor, every sequence number at or below which counts as
// applied, and the few numbers applied above it out of order. Proposals
// reach the log nearly in order, so the floor follows them and the set
// stays small; it grows only behind a gap, a number that never reached the
// log (its proposer gave up on it). Its bounds are deterministic too:
//
//   - a gap that has stayed open for dedupGapEntries log entries is closed:
//     the floor moves past it, so a proposal that late is skipped, not
//     applied (if its proposer still waits, the Ready loop tells it so, as
//     ErrTimeout);
//   - the set never holds more than dedupWindow numbers: past that the
//     floor jumps to half a window below the highest;
//   - a proposer with no application in dedupIdleEntries log entries is
//     forgotten, and so is the one least recently applied when
//     maxDedupProposers are tracked.
type proposalDedup struct {
	proposers map[uint64]*proposerWindow
	// swept is the log index bucket (index >> dedupSweepShift) of the
	// last sweep of idle proposers. Forgetting an idle proposer early or
	// late changes no decision (see live), so it is not replicated.
	swept uint64
}

type proposerWindow struct {
	floor uint64              // every seq <= floor counts as applied
	seen  map[uint64]struct{} // applied seqs above floor+1; nil when none
	// gapSince is the log index at which seen last became non-empty: the
	// age of the gap below it.
	gapSince  uint64
	maxSeq    uint64
	lastIndex uint64 // log index of its last application, for eviction
}

const (
	dedupWindow       = 1 << 14
	dedupGapEntries   = 1 << 14
	dedupIdleEntries  = 1 << 22
	dedupSweepShift   = 16
	maxDedupProposers = 1 << 12
)

// live reports whether w still counts at log index: a window whose last
// application is more than dedupIdleEntries behind is forgotten, whether
// or not a sweep has removed it yet.
func (w *proposerWindow) live(index uint64) bool {
	return w.lastIndex+dedupIdleEntries >= index
}

// firstTime records that the proposal (proposer, seq) is applied at index
// and reports whether this is its first application.
func (d *proposalDedup) firstTime(proposer, seq, index uint64) bool {
	if d.proposers == nil {
		d.proposers = make(map[uint64]*proposerWindow)
	}
	if b := index >> dedupSweepShift; b != d.swept {
		d.swept = b
		d.sweep(index)
	}
	w := d.proposers[proposer]
	if w != nil && !w.live(index) {
		delete(d.proposers, proposer)
		w = nil
	}
	if w == nil {
		if len(d.proposers) >= maxDedupProposers {
			// Idle windows go first, so that whether a node had
			// swept them changes nothing.
			d.sweep(index)
			if len(d.proposers) >= maxDedupProposers {
				d.evictOldest()
			}
		}
		w = &proposerWindow{}
		d.proposers[proposer] = w
	}
	if seq <= w.floor {
		return false
	}
	if _, dup := w.seen[seq]; dup {
		return false
	}
	w.maxSeq = max(w.maxSeq, seq)
	w.lastIndex = index
	if seq == w.floor+1 {
		w.floor = seq
		w.absorb()
	} else {
		if len(w.seen) == 0 {
			w.gapSince = index
		}
		if w.seen == nil {
			w.seen = make(map[uint64]struct{})
		}
		w.seen[seq] = struct{}{}
	}
	switch {
	case len(w.seen) > dedupWindow:
		w.raiseFloor(w.maxSeq - dedupWindow/2)
	case len(w.seen) > 0 && index-w.gapSince >= dedupGapEntries:
		w.raiseFloor(slices.Min(slices.Collect(maps.Keys(w.seen))) - 1)
		if len(w.seen) > 0 {
			w.gapSince = index
		}
	}
	return true
}

// absorb moves the floor over the numbers in seen that continue it.
func (w *proposerWindow) absorb() {
	for len(w.seen) > 0 {
		next := w.floor + 1
		if _, ok := w.seen[next]; !ok {
			return
		}
		delete(w.seen, next)
		w.floor = next
	}
}

// raiseFloor moves the floor up to floor (closing the gaps below it) and
// over what then continues it.
func (w *proposerWindow) raiseFloor(floor uint64) {
	w.floor = max(w.floor, floor)
	for s := range w.seen {
		if s <= w.floor {
			delete(w.seen, s)
		}
	}
	w.absorb()
	if len(w.seen) == 0 {
		w.seen = nil
	}
}

// sweep forgets the proposers that are no longer live at index.
func (d *proposalDedup) sweep(index uint64) {
	for id, w := range d.proposers {
		if !w.live(index) {
			delete(d.proposers, id)
		}
	}
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
// of the snapshot format. GapSince is absent from snapshots written before
// the floor followed the log; restore then takes LastIndex.
type dedupRecord struct {
	Proposer  uint64   `msgpack:"p"`
	Floor     uint64   `msgpack:"f"`
	MaxSeq    uint64   `msgpack:"x"`
	LastIndex uint64   `msgpack:"i"`
	Seen      []uint64 `msgpack:"s,omitempty"`
	GapSince  uint64   `msgpack:"g,omitempty"`
}

// records returns the table in a deterministic order: by proposer, each
// window's sequence numbers sorted.
func (d *proposalDedup) records() []dedupRecord {
	out := make([]dedupRecord, 0, len(d.proposers))
	for _, id := range slices.Sorted(maps.Keys(d.proposers)) {
		w := d.proposers[id]
		r := dedupRecord{Proposer: id, Floor: w.floor, MaxSeq: w.maxSeq, LastIndex: w.lastIndex}
		if len(w.seen) > 0 {
			r.Seen = slices.Sorted(maps.Keys(w.seen))
			r.GapSince = w.gapSince
		}
		out = append(out, r)
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
		if r.GapSince > r.LastIndex {
			return fmt.Errorf("dedup gap since index %d, after the last application at %d", r.GapSince, r.LastIndex)
		}
	}
	return nil
}

// restore replaces the table with records checked by checkDedupRecords.
// A record from an older snapshot may hold numbers that continue its
// floor; they are absorbed, as they would have been when applied.
func (d *proposalDedup) restore(recs []dedupRecord) {
	d.proposers = make(map[uint64]*proposerWindow, len(recs))
	for _, r := range recs {
		w := &proposerWindow{floor: r.Floor, maxSeq: r.MaxSeq, lastIndex: r.LastIndex, gapSince: r.GapSince}
		if len(r.Seen) > 0 {
			if r.GapSince == 0 {
				w.gapSince = r.LastIndex
			}
			w.seen = make(map[uint64]struct{}, len(r.Seen))
			for _, s := range r.Seen {
				w.seen[s] = struct{}{}
			}
			w.absorb()
			if len(w.seen) == 0 {
				w.seen = nil
			}
		}
		d.proposers[r.Proposer] = w
	}
}
