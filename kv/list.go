package kv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
)

// Paged and streamed lists.
//
// A list of any size is read without building it in memory: a stream
// walks a ReadView (an O(1) copy-on-write clone of the items), and a
// paged list answers at most a page at a time, every page at the first
// page's revision R. A later page at R is served, in this order, from:
//
//  1. the view of R this node holds for paging (listViews): taken when a
//     first page had more to come, kept for ListViewTTL after its last
//     use, at most ListViews of them;
//  2. the current state, when R is the current revision, or when the
//     watch history still holds every change after R and none of them
//     touched the rest of the list (keys from the page's start under its
//     prefix), so that the current state is R's state there;
//  3. otherwise nowhere: the page fails with a *CompactedError (List
//     set) and the caller starts the list over.
//
// Since R's state is the same on every node (the log is), a page may be
// served by any node that can do 1 or 2.

// Defaults of list paging.
const (
	// DefaultListLimit is the page size of a paged list that names none.
	DefaultListLimit = api.DefaultListLimit
	// MaxListLimit bounds a page's items: a larger limit is lowered to it.
	MaxListLimit = api.MaxListLimit
	// DefaultListPageBytes bounds the bytes of one page's keys and values.
	DefaultListPageBytes = api.DefaultListPageBytes
	// DefaultListViewTTL is how long a view kept for paging outlives its
	// last use.
	DefaultListViewTTL = 2 * time.Minute
	// DefaultListViews bounds the views kept for paging; beyond it the one
	// that would expire first is dropped.
	DefaultListViews = 32
	// listItemOverhead is what an item costs in a page beyond its key and
	// value, for the byte bound.
	listItemOverhead = api.ItemSize
)

// ListPage is one page of a paged list (defined in api).
type ListPage = api.ListPage

// ListMode selects what a list returns (defined in api).
type ListMode = api.ListMode

// List modes.
const (
	ListItems     = api.ListItems
	ListKeysOnly  = api.ListKeysOnly
	ListCountOnly = api.ListCountOnly
)

// ListOptions select a page of a list.
type ListOptions struct {
	// Limit is the page's most items: 0 is DefaultListLimit, and more
	// than MaxListLimit is MaxListLimit.
	Limit int
	// MaxBytes bounds the page's keys and values (plus a small overhead
	// per item); the page ends early, with More set, before an item that
	// would pass it, but holds at least one. 0 is DefaultListPageBytes.
	MaxBytes int
	// Start is the key the page starts at: the Next of the page before.
	// Empty starts at the prefix; otherwise it must start with the prefix.
	Start string
	// Revision is the revision to read at: the Revision of the first
	// page. 0 reads the current state.
	Revision int64
	// Mode selects items (the default), keys only (no values) or a count
	// only (the number of items from Start under the prefix, in Count).
	Mode ListMode
}

// WithListViews sets how many views the machine keeps for paged lists
// (default DefaultListViews; 0 or less keeps none, so that a later page is
// served only while its range is unchanged) and for how long after their
// last use (default DefaultListViewTTL).
func WithListViews(n int, ttl time.Duration) Option {
	return func(m *Machine) { m.views.max, m.views.ttl = n, ttl }
}

// listViews holds the views that later pages of paged lists read, by
// revision, each for a bounded time after its last use. A view is an
// immutable clone: any number of readers share it without a lock.
type listViews struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time // time.Now; tests replace it
	held  map[int64]*heldView
	timer *time.Timer // armed while held is not empty
}

type heldView struct {
	items   *itemTree
	expires time.Time
}

func (c *listViews) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// get returns the view of revision rev, if one is held, and extends its
// life.
func (c *listViews) get(rev int64) *itemTree {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.held[rev]
	if v == nil {
		return nil
	}
	now := c.clock()
	if !now.Before(v.expires) {
		delete(c.held, rev)
		return nil
	}
	v.expires = now.Add(c.ttl)
	return v.items
}

// put keeps items as the view of revision rev, dropping the view that
// would expire first when the cache is full.
func (c *listViews) put(rev int64, items *itemTree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= 0 {
		return
	}
	now := c.clock()
	c.sweepLocked(now)
	if v := c.held[rev]; v != nil {
		v.expires = now.Add(c.ttl)
		return
	}
	for len(c.held) >= c.max {
		var oldest int64
		var at time.Time
		for r, v := range c.held {
			if at.IsZero() || v.expires.Before(at) || (v.expires.Equal(at) && r < oldest) {
				oldest, at = r, v.expires
			}
		}
		delete(c.held, oldest)
	}
	if c.held == nil {
		c.held = make(map[int64]*heldView)
	}
	c.held[rev] = &heldView{items: items, expires: now.Add(c.ttl)}
	if c.timer == nil {
		c.timer = time.AfterFunc(c.ttl, c.sweep)
	}
}

// sweep drops expired views, so that memory is given back without a
// later list to notice, and re-arms itself while views remain.
func (c *listViews) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	c.sweepLocked(now)
	c.timer = nil
	if len(c.held) == 0 {
		return
	}
	next := c.ttl
	for _, v := range c.held {
		next = min(next, v.expires.Sub(now))
	}
	c.timer = time.AfterFunc(max(next, time.Millisecond), c.sweep)
}

func (c *listViews) sweepLocked(now time.Time) {
	for r, v := range c.held {
		if !now.Before(v.expires) {
			delete(c.held, r)
		}
	}
}

// len returns the number of views held.
func (c *listViews) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// ReadView is a frozen view of the items at one revision, which any
// number of goroutines may read while writes go on. Taking one is O(1)
// (a copy-on-write clone); it holds the memory of what later writes
// change until it is dropped.
type ReadView struct {
	// Revision is the revision of the last write the view includes.
	Revision int64

	items *itemTree
}

// Range calls fn for each item whose key starts with prefix and is at or
// after start, in key order, until fn returns false.
func (v *ReadView) Range(prefix, start string, fn func(Item) bool) {
	rangeItems(v.items, prefix, start, fn)
}

// NewReadView returns a view of items, which must be sorted by key with
// no key twice, at revision rev: for a backend that reads lists whole.
func NewReadView(rev int64, items []Item) *ReadView {
	t := newItemTree()
	for _, it := range items {
		t.ReplaceOrInsert(it)
	}
	return &ReadView{Revision: rev, items: t}
}

// Page returns a page of the view (o.Revision is not used).
func (v *ReadView) Page(prefix string, o ListOptions) ListPage {
	return pageOf(v.items, prefix, o.withDefaults(), v.Revision)
}

func rangeItems(t *itemTree, prefix, start string, fn func(Item) bool) {
	ascendPrefixed(t.AscendGreaterOrEqual, max(prefix, start), prefix, fn)
}

// rangeKeys is rangeItems without the values.
func rangeKeys(t *itemTree, prefix, start string, fn func(Item) bool) {
	ascendPrefixed(t.AscendKeysGreaterOrEqual, max(prefix, start), prefix, fn)
}

// ascendPrefixed calls fn, through ascend (an itemTree walk from a
// pivot), for the items from the key from on while their keys start with
// prefix, until fn returns false.
func ascendPrefixed(ascend func(Item, func(Item) bool), from, prefix string, fn func(Item) bool) {
	ascend(Item{Key: from}, func(it Item) bool { return strings.HasPrefix(it.Key, prefix) && fn(it) })
}

// ReadView captures the current state.
func (m *Machine) ReadView() *ReadView {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Clone changes the tree's copy-on-write context: it needs mu
	// exclusively.
	return &ReadView{Revision: m.revision, items: m.items.Clone()}
}

// ListPage returns a page of the items under prefix from local state, at
// o.Revision (0: now). It fails with a *CompactedError when the page can
// no longer be read at that revision, and wraps ErrInvalidRevision for a
// revision this node has not reached.
func (m *Machine) ListPage(prefix string, o ListOptions) (ListPage, error) {
	o = o.withDefaults()
	if o.Revision != 0 {
		if items := m.views.get(o.Revision); items != nil {
			return pageOf(items, prefix, o, o.Revision), nil
		}
	}
	if o.Mode == ListCountOnly {
		// Counting walks the whole range: do it on a clone, off the lock.
		m.mu.Lock()
		if o.Revision == 0 || o.Revision == m.revision {
			rev, items := m.revision, m.items.Clone()
			m.mu.Unlock()
			return pageOf(items, prefix, o, rev), nil
		}
		m.mu.Unlock()
	}
	m.mu.RLock()
	rev := m.revision
	switch {
	case o.Revision == 0 || o.Revision == rev:
	case o.Revision > rev:
		m.mu.RUnlock()
		return ListPage{}, fmt.Errorf("kv: list at revision %d: this node is at revision %d: %w", o.Revision, rev, ErrInvalidRevision)
	case o.Mode != ListCountOnly && m.hub.unchangedSince(o.Revision, prefix, max(prefix, o.Start)):
		// The rest of the list is as it was at o.Revision.
		p := pageOf(m.items, prefix, o, o.Revision)
		m.mu.RUnlock()
		return p, nil
	default:
		m.mu.RUnlock()
		return ListPage{}, &CompactedError{Requested: o.Revision, Oldest: rev, List: true}
	}
	p := pageOf(m.items, prefix, o, rev)
	m.mu.RUnlock()
	if !p.More {
		return p, nil
	}
	// More to come: keep this revision's view for the later pages.
	if m.views.get(rev) != nil {
		return p, nil // another list keeps it already
	}
	m.mu.Lock()
	items, now := m.items.Clone(), m.revision
	m.mu.Unlock()
	if now != rev {
		// A write came between the locks: read the page again from the
		// view, at its revision.
		p = pageOf(items, prefix, o, now)
	}
	m.views.put(now, items)
	return p, nil
}

func (o ListOptions) withDefaults() ListOptions {
	switch {
	case o.Limit <= 0:
		o.Limit = DefaultListLimit
	case o.Limit > MaxListLimit:
		o.Limit = MaxListLimit
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultListPageBytes
	}
	return o
}

// pageOf reads one page of t, which is at revision rev. The caller holds
// whatever keeps t from changing.
func pageOf(t *itemTree, prefix string, o ListOptions, rev int64) ListPage {
	p := ListPage{Revision: rev, Items: []Item{}}
	if o.Mode == ListCountOnly {
		rangeKeys(t, prefix, o.Start, func(Item) bool { p.Count++; return true })
		return p
	}
	bytes := 0
	walk := rangeItems
	if o.Mode == ListKeysOnly {
		walk = rangeKeys
	}
	walk(t, prefix, o.Start, func(it Item) bool {
		size := len(it.Key) + len(it.Value) + listItemOverhead
		if len(p.Items) == o.Limit || (len(p.Items) > 0 && bytes+size > o.MaxBytes) {
			p.More, p.Next = true, it.Key
			return false
		}
		p.Items = append(p.Items, it)
		bytes += size
		return true
	})
	return p
}

// ListViews returns how many views the machine holds for paged lists.
func (m *Machine) ListViews() int { return m.views.len() }

// unchangedSince reports whether the history holds every event after
// revision rev and none of them is under prefix at or after start: the
// state of that range is then what it was at rev.
func (h *watchHub) unchangedSince(rev int64, prefix, start string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rev < h.compacted {
		return false
	}
	for i := len(h.batches) - 1; i >= h.start; i-- {
		b := &h.batches[i]
		if b.last <= rev {
			break
		}
		for j := range b.events {
			ev := &b.events[j]
			if ev.Item.Revision > rev && ev.Item.Key >= start && strings.HasPrefix(ev.Item.Key, prefix) {
				return false
			}
		}
	}
	return true
}

// ListPage returns a page of the items under prefix (see ListOptions),
// read as c says; every page of one list is read at the first page's
// revision. ErrInvalidKey for a prefix ValidatePrefix refuses or a start
// that is not under the prefix; a *CompactedError (errors.Is
// ErrCompacted) when the revision can no longer be read: start over.
func (s *Store) ListPage(ctx context.Context, prefix string, c Consistency, o ListOptions) (ListPage, error) {
	if err := s.checkListPage(prefix, o); err != nil {
		return ListPage{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return ListPage{}, err
	}
	return s.machine.ListPage(prefix, o)
}

func (s *Store) checkListPage(prefix string, o ListOptions) error {
	if err := ValidatePrefix(prefix, s.machine.maxKeyBytes); err != nil {
		return err
	}
	if o.Start != "" {
		if err := ValidateStoredKey(o.Start, s.machine.maxKeyBytes); err != nil {
			return err
		}
		if !strings.HasPrefix(o.Start, prefix) {
			return fail(ErrInvalidKey, "start key %q is not under the prefix %q", o.Start, prefix)
		}
	}
	switch {
	case o.Revision < 0:
		return fmt.Errorf("kv: list at revision %d: %w", o.Revision, ErrInvalidRevision)
	case o.Mode > ListCountOnly:
		return fmt.Errorf("kv: list mode %d: %w", o.Mode, ErrBadCommand)
	}
	return nil
}

// ReadView captures the state, read as c says, for a list streamed from
// it: the caller ranges over it at its own pace while writes go on.
func (s *Store) ReadView(ctx context.Context, c Consistency) (*ReadView, error) {
	if err := s.sync(ctx, c); err != nil {
		return nil, err
	}
	return s.machine.ReadView(), nil
}
