package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestPebbleOnMemFS checks that a store lives entirely on Options.FS: it
// creates its directory, locks and reopens there, and leaves the real disk
// alone.
func TestPebbleOnMemFS(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "/data/n1"
	p, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{FS: fs}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open on the same FS: err %v, want ErrLocked", err)
	}
	if err := p.Save(hardState(1, 1, 2), ents(1, 1, 1, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The directory itself was synced into its parent: a crash right
	// after Open keeps it.
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat(dir); err != nil {
		t.Fatalf("directory lost in a crash: %v", err)
	}
	q, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	checkLog(t, q, logWant{1, []uint64{0, 1, 1, 1}})
}

// crashSeeds are the seeds TestPebbleCrashDurability runs by default.
var crashSeeds = []uint64{1, 2, 3, 4, 5, 6}

// TestPebbleCrashDurability simulates power loss at random moments under a
// stream of Saves, Compacts and snapshots, on pebble's crashable in-memory
// file system: a crash keeps what was synced and, at random, some of what
// was not. After each crash the store must open (or fail with ErrCorrupt,
// never silently wrong), hold every Save that returned nil before the
// crash, and be exactly the state after some operation: nothing torn,
// nothing from a Save that did not finish before the crash. The recovered
// store then takes more writes and crashes again.
func TestPebbleCrashDurability(t *testing.T) {
	for _, seed := range crashSeeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			testCrashDurability(t, seed, 4)
		})
	}
}

func testCrashDurability(t *testing.T, seed uint64, rounds int) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a5))
	w := newCrashWriter(seed)
	fs := vfs.NewCrashableMem()
	const dir = "/db"
	// A 1 MiB memtable (the least Options allows) makes pebble flush and
	// compact during the run, so crashes also land in those.
	opts := Options{FS: fs, MemTableSize: 1 << 20}
	p, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("seed %d: open: %v", seed, err)
	}
	for round := range rounds {
		crashAt := 20 + rng.IntN(400)
		unsynced := []int{0, 0, 30, 100}[rng.IntN(4)]

		lo, hi := w.run(t, p, fs, crashAt, unsynced, rng)
		crashed := w.crashed
		if err := p.Close(); err != nil {
			t.Fatalf("seed %d round %d: close the crashed store: %v", seed, round, err)
		}
		opts.FS = crashed
		p, err = Open(dir, opts)
		if errors.Is(err, ErrCorrupt) && unsynced > 0 {
			// Allowed: the damage is reported, not used. A crash that kept
			// exactly the synced data must always open, though.
			t.Logf("seed %d round %d: reopened with ErrCorrupt after a crash keeping %d%% of unsynced data: %v", seed, round, unsynced, err)
			return
		}
		if err != nil {
			t.Fatalf("seed %d round %d: reopen after crash (%d%% unsynced kept): %v", seed, round, unsynced, err)
		}
		step, err := w.match(p, lo, hi)
		if err != nil {
			_ = p.Close()
			t.Fatalf("seed %d round %d: after a crash at step %d..%d (%d%% unsynced kept): %v", seed, round, lo, hi, unsynced, err)
		}
		w.resetTo(step)
		fs = crashed
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d crashes, %d operations, every acknowledged Save recovered", seed, rounds, len(w.steps))
}

// crashState is the expected content of the store after one operation.
type crashState struct {
	// op says what the operation was, for failure messages.
	op string
	// save reports whether the operation was a Save (synced) rather than
	// a Compact (not synced).
	save               bool
	term, vote, commit uint64
	first, last        uint64
	snapIndex          uint64
	snapTerm           uint64
	// terms[i] is the term of index i, for i in [first-1, last]; lower
	// indexes are compacted and may hold anything.
	terms []uint64
}

// crashWriter drives a store with a random but valid sequence of Saves
// and Compacts and keeps the expected state after each of them.
type crashWriter struct {
	seed  uint64
	rng   *rand.Rand
	steps []crashState
	// done counts the steps whose call has returned.
	done atomic.Int64
	// crashed is the file system as the last crash left it.
	crashed *vfs.MemFS
}

func newCrashWriter(seed uint64) *crashWriter {
	w := &crashWriter{seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5a7e))}
	w.steps = []crashState{{op: "open", save: true, first: 1, terms: []uint64{0}}}
	return w
}

// entryData is the data of the entry at index with term: its length and
// bytes derive from both, so a recovered entry proves its own integrity.
func (w *crashWriter) entryData(index, term uint64) []byte {
	h := (index*0x9e3779b97f4a7c15 ^ term*0xbf58476d1ce4e5b9 ^ w.seed) * 0x94d049bb133111eb
	data := fmt.Appendf(nil, "%d@%d:", index, term)
	n := int(h % 4096)
	for i := range n {
		data = append(data, byte(h>>(8*(i%8)))^byte(i))
	}
	return data
}

func (w *crashWriter) entry(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{
		Index: proto.Uint64(index),
		Term:  proto.Uint64(term),
		Type:  raftpb.EntryType_EntryNormal.Enum(),
		Data:  w.entryData(index, term),
	}
}

// next applies one random operation to p and records the state it leaves.
func (w *crashWriter) next(p *Pebble) error {
	cur := w.steps[len(w.steps)-1]
	s := cur
	s.terms = slices.Clone(cur.terms)
	lastTerm := s.terms[s.last]
	switch r := w.rng.IntN(100); {
	case r < 10 && s.commit >= s.first: // compact
		index := s.first + uint64(w.rng.Int64N(int64(s.commit-s.first+1)))
		s.op, s.save = fmt.Sprintf("Compact(%d)", index), false
		if err := p.Compact(index); err != nil {
			return fmt.Errorf("%s: %w", s.op, err)
		}
		s.first = index + 1
	case r < 15 && s.commit > max(s.snapIndex, s.first-1): // snapshot of applied state
		lo := max(s.snapIndex+1, s.first-1)
		index := lo + uint64(w.rng.Int64N(int64(s.commit-lo+1)))
		snap := snapshot(index, s.terms[index], 1, 2, 3)
		s.op, s.save = fmt.Sprintf("Save(snapshot %d)", index), true
		if err := p.Save(nil, nil, snap); err != nil {
			return fmt.Errorf("%s: %w", s.op, err)
		}
		s.snapIndex, s.snapTerm, s.first = index, s.terms[index], index+1
	case r < 25 && s.last > s.commit: // a new term replaces the uncommitted suffix
		from := s.commit + 1 + uint64(w.rng.Int64N(int64(s.last-s.commit)))
		term := max(s.term, lastTerm) + 1
		n := 1 + w.rng.IntN(6)
		es := make([]*raftpb.Entry, n)
		for i := range es {
			es[i] = w.entry(from+uint64(i), term)
		}
		s.term, s.vote = term, 1+uint64(w.rng.IntN(3))
		s.terms = s.terms[:from]
		for range n {
			s.terms = append(s.terms, term)
		}
		s.last = from + uint64(n) - 1
		s.op, s.save = fmt.Sprintf("Save(term %d, entries %d..%d)", term, from, s.last), true
		if err := p.Save(hardState(s.term, s.vote, s.commit), es, nil); err != nil {
			return fmt.Errorf("%s: %w", s.op, err)
		}
	default: // append in the current term and commit some
		term := max(s.term, lastTerm, 1)
		if s.term < term {
			s.term, s.vote = term, 1
		}
		n := 1 + w.rng.IntN(8)
		es := make([]*raftpb.Entry, n)
		for i := range es {
			es[i] = w.entry(s.last+1+uint64(i), term)
			s.terms = append(s.terms, term)
		}
		from := s.last + 1
		s.last += uint64(n)
		s.commit += uint64(w.rng.Int64N(int64(s.last - s.commit + 1)))
		s.op, s.save = fmt.Sprintf("Save(entries %d..%d, commit %d)", from, s.last, s.commit), true
		if err := p.Save(hardState(s.term, s.vote, s.commit), es, nil); err != nil {
			return fmt.Errorf("%s: %w", s.op, err)
		}
	}
	w.steps = append(w.steps, s)
	return nil
}

// run writes to p from a goroutine and crashes fs once at least crashAt
// more steps are done, keeping unsynced percent of the unsynced data. It
// returns the range of steps the crashed store may hold: from the last
// Save that had returned before the crash to the last step that had
// started by the end of it.
func (w *crashWriter) run(t *testing.T, p *Pebble, fs *vfs.MemFS, crashAt, unsynced int, rng *rand.Rand) (lo, hi int) {
	t.Helper()
	base := len(w.steps) - 1
	w.done.Store(int64(base))
	var started atomic.Int64
	started.Store(int64(base))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			started.Add(1)
			if err := w.next(p); err != nil {
				werr = err
				return
			}
			w.done.Add(1)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for w.done.Load() < int64(base+crashAt) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	doneBefore := int(w.done.Load())
	w.crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rng})
	startedAfter := int(started.Load())
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatalf("seed %d: write: %v", w.seed, werr)
	}
	// Steps after the last acknowledged Save may be lost: a Compact is not
	// synced until the next Save.
	lo = doneBefore
	for lo > 0 && !w.steps[lo].save {
		lo--
	}
	return lo, min(startedAfter, len(w.steps)-1)
}

// match returns the step in [lo, hi] whose state p holds exactly, or an
// error describing how p differs from each.
func (w *crashWriter) match(p *Pebble, lo, hi int) (int, error) {
	got, err := w.read(p)
	if err != nil {
		return 0, err
	}
	var diffs []string
	for i := hi; i >= lo; i-- {
		d := w.diff(got, w.steps[i])
		if d == "" {
			return i, nil
		}
		diffs = append(diffs, fmt.Sprintf("step %d %s: %s", i, w.steps[i].op, d))
	}
	return 0, fmt.Errorf("recovered store matches no state from the last acknowledged Save on:\n%s", joinLines(diffs))
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// read loads p's whole state, checking each entry's data against its
// index and term.
func (w *crashWriter) read(p *Pebble) (crashState, error) {
	var s crashState
	hs, _, err := p.InitialState()
	if err != nil {
		return s, err
	}
	s.term, s.vote, s.commit = hs.GetTerm(), hs.GetVote(), hs.GetCommit()
	if s.first, err = p.FirstIndex(); err != nil {
		return s, err
	}
	if s.last, err = p.LastIndex(); err != nil {
		return s, err
	}
	snap, err := p.Snapshot()
	if err != nil {
		return s, err
	}
	s.snapIndex, s.snapTerm = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	if s.snapIndex != 0 && !bytes.Equal(snap.GetData(), fmt.Appendf(nil, "state@%d", s.snapIndex)) {
		return s, fmt.Errorf("snapshot at %d has data %q", s.snapIndex, snap.GetData())
	}
	s.terms = make([]uint64, s.last+1)
	if s.terms[s.first-1], err = p.Term(s.first - 1); err != nil {
		return s, err
	}
	if s.last >= s.first {
		es, err := p.Entries(s.first, s.last+1, 1<<62)
		if err != nil {
			return s, err
		}
		if uint64(len(es)) != s.last-s.first+1 {
			return s, fmt.Errorf("Entries(%d, %d) returned %d entries", s.first, s.last+1, len(es))
		}
		for _, e := range es {
			if !bytes.Equal(e.GetData(), w.entryData(e.GetIndex(), e.GetTerm())) {
				return s, fmt.Errorf("entry %d (term %d) has wrong data", e.GetIndex(), e.GetTerm())
			}
			s.terms[e.GetIndex()] = e.GetTerm()
		}
	}
	return s, nil
}

// diff describes how got differs from want, or returns "".
func (w *crashWriter) diff(got, want crashState) string {
	switch {
	case got.term != want.term || got.vote != want.vote || got.commit != want.commit:
		return fmt.Sprintf("hard state term %d vote %d commit %d, want %d %d %d", got.term, got.vote, got.commit, want.term, want.vote, want.commit)
	case got.first != want.first || got.last != want.last:
		return fmt.Sprintf("log [%d, %d], want [%d, %d]", got.first, got.last, want.first, want.last)
	case got.snapIndex != want.snapIndex || got.snapTerm != want.snapTerm:
		return fmt.Sprintf("snapshot %d@%d, want %d@%d", got.snapIndex, got.snapTerm, want.snapIndex, want.snapTerm)
	}
	for i := got.first - 1; i <= got.last; i++ {
		if got.terms[i] != want.terms[i] {
			return fmt.Sprintf("term of %d is %d, want %d", i, got.terms[i], want.terms[i])
		}
	}
	return ""
}

// resetTo makes step the writer's current state: the recovered store's.
func (w *crashWriter) resetTo(step int) {
	w.steps = append(w.steps, w.steps[step])
	w.steps[len(w.steps)-1].op = fmt.Sprintf("recovered step %d", step)
	w.steps[len(w.steps)-1].save = true
}
