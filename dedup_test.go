package consensus

import (
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestDedupInOrderKeepsOnlyAFloor: proposals applied in order leave one
// floor per proposer and nothing else, so the snapshot's table stays a few
// bytes however many were applied (it was 7.3 KB after 800).
func TestDedupInOrderKeepsOnlyAFloor(t *testing.T) {
	var d proposalDedup
	index := uint64(0)
	for proposer := uint64(1); proposer <= 3; proposer++ {
		for seq := uint64(1); seq <= 800; seq++ {
			index++
			if !d.firstTime(proposer, seq, index) {
				t.Fatalf("proposer %d seq %d skipped", proposer, seq)
			}
		}
	}
	b, err := msgpack.Marshal(d.records())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 200 {
		t.Fatalf("table of 3 proposers after 2,400 proposals is %d bytes, want <= 200", len(b))
	}
	for _, r := range d.records() {
		if r.Floor != 800 || len(r.Seen) != 0 {
			t.Fatalf("record %+v, want floor 800 and nothing seen", r)
		}
	}
	if d.firstTime(2, 800, index+1) || d.firstTime(2, 1, index+1) {
		t.Fatal("an applied proposal was applied again")
	}
}

// TestDedupOutOfOrderAndGaps: a number applied out of order is absorbed
// once the gap below it fills; a gap that never fills is closed after
// dedupGapEntries log entries, and a proposal that late is skipped.
func TestDedupOutOfOrderAndGaps(t *testing.T) {
	var d proposalDedup
	index := uint64(0)
	apply := func(seq uint64) bool { index++; return d.firstTime(9, seq, index) }
	for _, seq := range []uint64{1, 3, 2, 4} {
		if !apply(seq) {
			t.Fatalf("seq %d skipped", seq)
		}
	}
	if r := d.records()[0]; r.Floor != 4 || len(r.Seen) != 0 {
		t.Fatalf("after 1,3,2,4: %+v, want floor 4, nothing seen", r)
	}
	// 5 never reaches the log; 6 onwards do.
	seq := uint64(6)
	for index < 5+dedupGapEntries-1 { // 6 is applied at index 5
		if !apply(seq) {
			t.Fatalf("seq %d skipped", seq)
		}
		seq++
	}
	if r := d.records()[0]; r.Floor != 4 || len(r.Seen) == 0 {
		t.Fatalf("gap closed early: floor %d, %d seen", r.Floor, len(r.Seen))
	}
	// Inside the gap's time a late 5 is still applied once.
	late := d
	late.proposers = map[uint64]*proposerWindow{9: cloneWindow(d.proposers[9])}
	if !late.firstTime(9, 5, index+1) || late.firstTime(9, 5, index+2) {
		t.Fatal("late seq 5 inside the gap's time: want applied exactly once")
	}
	if !apply(seq) { // this application reaches the gap's age
		t.Fatalf("seq %d skipped", seq)
	}
	r := d.records()[0]
	if r.Floor != seq || len(r.Seen) != 0 {
		t.Fatalf("after the gap's age: floor %d, %d seen; want floor %d and nothing seen", r.Floor, len(r.Seen), seq)
	}
	if apply(5) {
		t.Fatal("seq 5, after its gap was closed, was applied")
	}
}

func cloneWindow(w *proposerWindow) *proposerWindow {
	c := *w
	c.seen = make(map[uint64]struct{}, len(w.seen))
	for s := range w.seen {
		c.seen[s] = struct{}{}
	}
	return &c
}

// TestDedupForgetsIdleProposers: a proposer with no application for
// dedupIdleEntries log entries is forgotten, swept or not.
func TestDedupForgetsIdleProposers(t *testing.T) {
	var d proposalDedup
	d.firstTime(1, 1, 1)
	d.firstTime(2, 1, 2)
	far := uint64(2 + dedupIdleEntries + 1)
	if !d.firstTime(1, 1, far) {
		t.Fatal("an idle proposer's number was still remembered")
	}
	if _, ok := d.proposers[2]; ok {
		t.Fatal("an idle proposer was kept past the sweep")
	}
	if len(d.proposers) != 1 {
		t.Fatalf("%d proposers, want 1", len(d.proposers))
	}
}

// TestDedupDecisionsDoNotDependOnSnapshots: two tables fed the same
// applications, one of them saved and restored at random points (which
// also drops its sweep bookkeeping), decide alike at every step. Seeded;
// the seed is printed.
func TestDedupDecisionsDoNotDependOnSnapshots(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var a, b proposalDedup
	next := map[uint64]uint64{}
	index := uint64(0)
	for i := 0; i < 200_000; i++ {
		proposer := uint64(rng.IntN(6) + 1)
		if rng.IntN(1000) == 0 {
			proposer = uint64(rng.IntN(1<<20) + 100) // a short-lived proposer
		}
		var seq uint64
		switch r := rng.IntN(100); {
		case r < 3: // a duplicate or a late one
			seq = uint64(rng.Int64N(int64(next[proposer]) + 1))
		case r < 5: // a gap: a number that never reaches the log
			next[proposer] += 2
			seq = next[proposer]
		default:
			next[proposer]++
			seq = next[proposer]
		}
		index += uint64(rng.IntN(200) + 1)
		if ga, gb := a.firstTime(proposer, seq, index), b.firstTime(proposer, seq, index); ga != gb {
			t.Fatalf("step %d: proposer %d seq %d at %d: %v against %v after restores", i, proposer, seq, index, ga, gb)
		}
		if rng.IntN(5000) == 0 {
			recs := b.records()
			if err := checkDedupRecords(recs); err != nil {
				t.Fatal(err)
			}
			b = proposalDedup{}
			b.restore(recs)
		}
	}
}

// TestDedupRestoresOlderRecords: a record written before the floor
// followed the log (no GapSince, numbers continuing the floor) restores
// to the table the new rules would hold.
func TestDedupRestoresOlderRecords(t *testing.T) {
	var d proposalDedup
	d.restore([]dedupRecord{{Proposer: 4, Floor: 0, MaxSeq: 7, LastIndex: 70, Seen: []uint64{1, 2, 3, 5, 7}}})
	r := d.records()[0]
	if r.Floor != 3 || len(r.Seen) != 2 || r.GapSince != 70 {
		t.Fatalf("restored %+v, want floor 3, seen [5 7], gap since 70", r)
	}
	if !d.firstTime(4, 4, 71) || d.records()[0].Floor != 5 {
		t.Fatalf("filling the gap: %+v", d.records()[0])
	}
}
