package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

// readAllPages reads the list of prefix page by page with limit, calling
// between after each page but the last, and returns the items and the
// revision of the first page.
func readAllPages(t *testing.T, s *Store, prefix string, limit int, between func(page int)) ([]Item, int64) {
	t.Helper()
	ctx := context.Background()
	var out []Item
	o := ListOptions{Limit: limit}
	for page := 0; ; page++ {
		p, err := s.ListPage(ctx, prefix, Linearizable, o)
		if err != nil {
			t.Fatalf("page %d (start %q, revision %d): %v", page, o.Start, o.Revision, err)
		}
		if page > 0 && p.Revision != o.Revision {
			t.Fatalf("page %d read at revision %d, want %d", page, p.Revision, o.Revision)
		}
		if len(p.Items) > limit {
			t.Fatalf("page %d holds %d items, limit %d", page, len(p.Items), limit)
		}
		out = append(out, p.Items...)
		if !p.More {
			return out, p.Revision
		}
		o.Start, o.Revision = p.Next, p.Revision
		between(page)
	}
}

// TestListPagesSeeEveryKeyOnceAcrossChanges reads a prefix in pages while
// writes, deletes, and a snapshot restored into the machine happen
// between pages: the pages together hold exactly the items of the first
// page's revision, each once.
func TestListPagesSeeEveryKeyOnceAcrossChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	for _, limit := range []int{50, 1} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			s, _ := newLocalStore()
			m := s.Machine()
			const n = 1200
			for i := range n {
				put(t, m, fmt.Sprintf("p/%05d", rng.IntN(3*n)), fmt.Sprint(i))
				if i%7 == 0 {
					put(t, m, fmt.Sprintf("q/%d", i), "0") // outside the prefix
				}
			}
			want, rev := m.List("p/")
			var restored bool
			got, gotRev := readAllPages(t, s, "p/", limit, func(page int) {
				for range 5 {
					key := fmt.Sprintf("p/%05d", rng.IntN(3*n))
					if rng.IntN(2) == 0 {
						put(t, m, key, "99")
					} else if _, ok := m.Get(key); ok {
						del(t, m, key)
					}
				}
				if page == 3 {
					// A snapshot from elsewhere replaces the state (a
					// follower's install).
					other := NewMachine()
					if err := other.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, m))); err != nil {
						t.Fatal(err)
					}
					put(t, other, "p/zzz", "1")
					if err := m.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, other))); err != nil {
						t.Fatal(err)
					}
					restored = true
				}
			})
			if !restored {
				t.Fatal("the list ended before the restore")
			}
			if gotRev != rev {
				t.Fatalf("read at revision %d, want %d", gotRev, rev)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d items, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) || got[i].Revision != want[i].Revision {
					t.Fatalf("item %d: %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestListPageWithoutViewsFailsOnceTheRangeChanges covers the case a
// node holds no view of the revision: a later page is served while no
// change touched the rest of the list, and is ErrCompacted (List set)
// once one did or the history no longer reaches back.
func TestListPageWithoutViewsFailsOnceTheRangeChanges(t *testing.T) {
	s, _ := newLocalStore(WithListViews(0, time.Minute))
	m := s.Machine()
	for i := range 30 {
		put(t, m, fmt.Sprintf("p/%02d", i), "1")
	}
	ctx := context.Background()
	first, err := s.ListPage(ctx, "p/", Linearizable, ListOptions{Limit: 10})
	if err != nil || !first.More || first.Next != "p/10" {
		t.Fatalf("first page: %+v %v", first, err)
	}
	next := ListOptions{Limit: 10, Start: first.Next, Revision: first.Revision}
	// A change before the start and one outside the prefix leave the rest
	// of the list as it was.
	put(t, m, "p/00", "2")
	put(t, m, "q/00", "2")
	p, err := s.ListPage(ctx, "p/", Linearizable, next)
	if err != nil || len(p.Items) != 10 || p.Items[0].Key != "p/10" || p.Revision != first.Revision {
		t.Fatalf("second page: %+v %v", p, err)
	}
	put(t, m, "p/25", "2")
	_, err = s.ListPage(ctx, "p/", Linearizable, next)
	var ce *CompactedError
	if !errors.As(err, &ce) || !ce.List || ce.Requested != first.Revision || ce.Oldest != m.Revision() || !errors.Is(err, ErrCompacted) {
		t.Fatalf("page after a change in its range: %v", err)
	}
	if !strings.Contains(err.Error(), "list at revision") {
		t.Fatalf("message %q", err)
	}
	// A revision this node has not reached.
	_, err = s.ListPage(ctx, "p/", Local, ListOptions{Revision: m.Revision() + 5})
	if !errors.Is(err, ErrInvalidRevision) {
		t.Fatalf("page at a future revision: %v", err)
	}
}

// TestListViewsAreBounded checks that the views kept for paging are
// bounded in number (the oldest goes first, and its list's later pages
// are ErrCompacted once its range changed) and in time.
func TestListViewsAreBounded(t *testing.T) {
	s, _ := newLocalStore(WithListViews(2, time.Minute))
	m := s.Machine()
	now := time.Unix(1000, 0)
	m.views.now = func() time.Time { return now }
	for i := range 30 {
		put(t, m, fmt.Sprintf("p/%02d", i), "1")
	}
	ctx := context.Background()
	var firsts []ListPage
	for range 3 {
		p, err := s.ListPage(ctx, "p/", Linearizable, ListOptions{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, p)
		put(t, m, "p/29", fmt.Sprint(m.Revision())) // a change in every list's range
		now = now.Add(time.Second)
	}
	if got := m.ListViews(); got != 2 {
		t.Fatalf("%d views held, want 2", got)
	}
	if _, err := s.ListPage(ctx, "p/", Linearizable, ListOptions{Limit: 10, Start: "p/10", Revision: firsts[0].Revision}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("page of the evicted view: %v", err)
	}
	if _, err := s.ListPage(ctx, "p/", Linearizable, ListOptions{Limit: 10, Start: "p/10", Revision: firsts[2].Revision}); err != nil {
		t.Fatalf("page of a held view: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.ListPage(ctx, "p/", Linearizable, ListOptions{Limit: 10, Start: "p/20", Revision: firsts[2].Revision}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("page of an expired view: %v", err)
	}
}

func TestListPageModesAndBounds(t *testing.T) {
	s, _ := newLocalStore()
	m := s.Machine()
	big := `"` + strings.Repeat("x", 1000) + `"`
	for i := range 20 {
		put(t, m, fmt.Sprintf("p/%02d", i), big)
	}
	ctx := context.Background()
	c, err := s.ListPage(ctx, "p/", Local, ListOptions{Mode: ListCountOnly})
	if err != nil || c.Count != 20 || len(c.Items) != 0 || c.More {
		t.Fatalf("count: %+v %v", c, err)
	}
	c, err = s.ListPage(ctx, "p/", Local, ListOptions{Mode: ListCountOnly, Start: "p/15"})
	if err != nil || c.Count != 5 {
		t.Fatalf("count from p/15: %+v %v", c, err)
	}
	k, err := s.ListPage(ctx, "p/", Local, ListOptions{Mode: ListKeysOnly, Limit: 100})
	if err != nil || len(k.Items) != 20 || k.Items[3].Value != nil || k.Items[3].Key != "p/03" {
		t.Fatalf("keys only: %+v %v", k, err)
	}
	// The byte bound ends a page early; one item always fits.
	b, err := s.ListPage(ctx, "p/", Local, ListOptions{Limit: 100, MaxBytes: 3500})
	if err != nil || len(b.Items) != 3 || !b.More || b.Next != "p/03" {
		t.Fatalf("bounded page: %d items, more %v, next %q, %v", len(b.Items), b.More, b.Next, err)
	}
	b, err = s.ListPage(ctx, "p/", Local, ListOptions{MaxBytes: 1})
	if err != nil || len(b.Items) != 1 {
		t.Fatalf("page of one large item: %d items, %v", len(b.Items), err)
	}
	for _, o := range []ListOptions{{Start: "q/1"}, {Revision: -1}, {Start: "p/" + strings.Repeat("x", DefaultMaxKeyBytes)}} {
		if _, err := s.ListPage(ctx, "p/", Local, o); err == nil {
			t.Fatalf("%+v accepted", o)
		}
	}
	if got := MaxListLimit; got != (ListOptions{Limit: 1 << 30}).withDefaults().Limit {
		t.Fatalf("limit not lowered to %d", got)
	}
}

// TestReadViewIsFrozen checks that a stream's view does not see writes
// made while it is read.
func TestReadViewIsFrozen(t *testing.T) {
	s, _ := newLocalStore()
	m := s.Machine()
	for i := range 100 {
		put(t, m, fmt.Sprintf("p/%03d", i), "1")
	}
	v, err := s.ReadView(context.Background(), Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	v.Range("p/", "", func(it Item) bool {
		if n%10 == 0 {
			del(t, m, fmt.Sprintf("p/%03d", 99-n/10))
			put(t, m, fmt.Sprintf("p/%03da", n), "2")
		}
		if string(it.Value) != "1" {
			t.Fatalf("%s = %s", it.Key, it.Value)
		}
		n++
		return true
	})
	if n != 100 || v.Revision != 100 {
		t.Fatalf("ranged %d items at revision %d", n, v.Revision)
	}
}
