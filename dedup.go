package consensus

// proposalDedup makes applying a proposal idempotent: a proposal that
// reaches the leader twice (a duplicating network, a retried forward) is
// in the log twice, and only its first copy may change the state.
//
// It is part of the replicated state: every node updates it in log order
// from the entries alone, so every node decides alike. Its bounds are
// deterministic too: per proposer it remembers the sequence numbers of the
// last dedupWindow applications exactly and treats anything at or below
// its floor as already applied (a proposal that old is long past its
// caller's deadline, so skipping it only turns "outcome unknown" into "not
// applied"); it tracks at most maxDedupProposers proposers, forgetting the
// one least recently applied.
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
