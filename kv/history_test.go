package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestEtcdRangeAtEqualsTheStateThen: for random command sequences (puts,
// deletes, batches, etcd transactions with range deletes, lease revokes
// and expiries that delete keys), a read at every revision the history
// covers equals the state as it was at that revision, whole and by
// range; below the history it is ErrCompacted, above the current
// revision ErrFutureRevision.
func TestEtcdRangeAtEqualsTheStateThen(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	for round := range 20 {
		m := NewMachine(WithMaxKeys(20))
		events := 40 + rng.IntN(200)
		m.SetWatchConfig(WatchConfig{HistoryEvents: events})
		cmds := randomCommands(rng, 300)
		// Etcd transactions among them: range deletes and puts.
		for i := 0; i < 60; i++ {
			k := "k" + strconv.Itoa(rng.IntN(12))
			txn := &EtcdTxn{Success: []EtcdOp{{Type: EtcdPut, Key: k, Value: EtcdStoredValue([]byte("e" + strconv.Itoa(i)))}}}
			if rng.IntN(3) == 0 {
				txn.Success = []EtcdOp{{Type: EtcdDelete, Key: "k3", End: "k7"}}
			}
			b, _ := encodeCommand(command{Op: opEtcdTxn, Etcd: txn})
			at := rng.IntN(len(cmds))
			cmds = append(cmds[:at], append([][]byte{b}, cmds[at:]...)...)
		}
		states := map[int64][]Item{}
		items, rev := m.List("")
		states[rev] = items
		for i, c := range cmds {
			m.Apply(uint64(i+1), c)
			items, rev := m.List("")
			states[rev] = items
		}
		cur := m.Revision()
		floor := m.CompactRevision()
		if round == 0 {
			t.Logf("revisions %d-%d readable", floor, cur)
		}
		if cur-floor < 10 && cur > int64(events) {
			t.Fatalf("round %d: history of %d events covers only revisions %d-%d", round, events, floor, cur)
		}
		for r := max(floor, 1); r <= cur; r++ {
			got, hdr, err := m.EtcdRangeAt("", EtcdRangeAll, r)
			if err != nil || hdr != cur {
				t.Fatalf("round %d: read at %d (floor %d, current %d): %v, header %d", round, r, floor, cur, err, hdr)
			}
			if want := states[r]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d: at revision %d got\n%v\nwant\n%v", round, r, got, want)
			}
			got, _, _ = m.EtcdRangeAt("k3", "k7", r)
			var want []Item
			for _, it := range states[r] {
				if it.Key >= "k3" && it.Key < "k7" {
					want = append(want, it)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d: range at %d got %v want %v", round, r, got, want)
			}
		}
		if floor > 1 {
			if _, _, err := m.EtcdRangeAt("k1", "", floor-1); !errors.Is(err, ErrCompacted) {
				t.Fatalf("round %d: read below the history (%d): %v", round, floor-1, err)
			}
		}
		if _, _, err := m.EtcdRangeAt("k1", "", cur+1); !errors.Is(err, ErrFutureRevision) {
			t.Fatalf("round %d: read at a future revision: %v", round, err)
		}
	}
}

// TestCompact: a compaction is a replicated command that raises the floor
// of reads (to exactly its revision, as etcd's), drops the history below
// it, ends watchers that still need it with its revision, takes no
// revision, and refuses a revision compacted already or not reached.
func TestCompact(t *testing.T) {
	ctx := context.Background()
	s, _ := newLocalStore()
	m := s.Machine()
	for i := range 10 {
		if _, err := s.Put(ctx, "k", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if it, _, err := m.EtcdRangeAt("k", "", 3); err != nil || string(it[0].Value) != "2" {
		t.Fatalf("read at 3 before compacting: %v %v", it, err)
	}
	rev, err := s.Compact(ctx, 6)
	if err != nil || rev != 10 || m.Revision() != 10 {
		t.Fatalf("compact: %d %v (revision %d)", rev, err, m.Revision())
	}
	if got := m.CompactRevision(); got != 6 {
		t.Fatalf("CompactRevision %d, want 6", got)
	}
	if _, _, err := m.EtcdRangeAt("k", "", 5); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read below the compaction: %v", err)
	}
	if it, _, err := m.EtcdRangeAt("k", "", 6); err != nil || string(it[0].Value) != "5" {
		t.Fatalf("read at the compaction: %v %v", it, err)
	}
	if st := m.WatchStats(); st.OldestRevision != 6 || st.HistoryEvents != 5 {
		t.Fatalf("history after compacting at 6: %+v", st)
	}
	var ce *CompactedError
	if _, err := m.Watch(ctx, "k", 5); !errors.As(err, &ce) || ce.Oldest != 6 {
		t.Fatalf("watch from 5: %v", err)
	}
	w, err := m.Watch(ctx, "k", 6)
	if err != nil {
		t.Fatalf("watch from 6: %v", err)
	}
	if resp := <-w.C(); resp.Events[0].Item.Revision != 6 {
		t.Fatalf("watch from 6 got %+v", resp)
	}
	w.Close()
	for _, tc := range []struct {
		rev  int64
		want error
	}{{6, ErrCompacted}, {3, ErrCompacted}, {11, ErrFutureRevision}, {0, ErrInvalidRevision}, {-1, ErrInvalidRevision}} {
		if _, err := s.Compact(ctx, tc.rev); !errors.Is(err, tc.want) {
			t.Fatalf("compact at %d: %v, want %v", tc.rev, err, tc.want)
		}
	}
	// A malformed entry (a revision not reached) is refused alike on
	// every member, and changes nothing.
	r := m.Apply(100, mustCmd(t, command{Op: opCompact, Compact: 50})).(Result)
	if !errors.Is(r.Err, ErrBadCommand) || m.CompactRevision() != 6 {
		t.Fatalf("compact beyond the revision: %+v", r)
	}
}

// TestCompactEndsWatchersBehind: a watcher whose cursor is below the
// compaction ends with ErrCompacted and the compaction's revision, after
// what it had read before. It cannot have read past revision 2304 when
// the compaction comes: nobody takes its responses until then, and its
// channel holds 8 of at most 256 events each, plus the one it is sending.
func TestCompactEndsWatchersBehind(t *testing.T) {
	ctx := context.Background()
	s, _ := newLocalStore()
	m := s.Machine()
	const writes = 3000
	for i := range writes {
		if _, err := s.Put(ctx, "k", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	behind, err := m.Watch(ctx, "k", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	if _, err := s.Compact(ctx, 2900); err != nil {
		t.Fatal(err)
	}
	last := int64(0)
	for resp := range behind.C() {
		last = resp.Revision
	}
	var ce *CompactedError
	if !errors.As(behind.Err(), &ce) || ce.Oldest != 2900 || last >= 2900 {
		t.Fatalf("watcher from 1, compacted at 2900: %v after revision %d", behind.Err(), last)
	}
}

// TestPrevItem: the item each change replaced, from the history.
func TestPrevItem(t *testing.T) {
	ctx := context.Background()
	s, _ := newLocalStore()
	m := s.Machine()
	s.Put(ctx, "a", []byte(`1`)) // 1
	s.Put(ctx, "a", []byte(`2`)) // 2
	s.Delete(ctx, "a")           // 3
	for _, tc := range []struct {
		rev    int64
		ok     bool
		value  string
		modRev int64
	}{{1, false, "", 0}, {2, true, "1", 1}, {3, true, "2", 2}} {
		it, ok, err := m.PrevItem(tc.rev, "a")
		if err != nil || ok != tc.ok || string(it.Value) != tc.value || it.Revision != tc.modRev {
			t.Fatalf("prev of a at %d: %+v %v %v", tc.rev, it, ok, err)
		}
	}
	if _, err := s.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.PrevItem(1, "a"); !errors.Is(err, ErrCompacted) {
		t.Fatalf("prev of a compacted change: %v", err)
	}
}
