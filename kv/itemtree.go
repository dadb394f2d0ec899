package kv

import (
	"unsafe"

	"github.com/google/btree"
)

// itemTree is the key space: the items ordered by key in a copy-on-write
// B-tree. It holds pointers to items, each allocated once when it is
// written and never changed after, rather than the 72-byte items
// themselves: a B-tree node's slots are allocated for its full 63 items,
// and nodes split by keys written in order (the usual case: generated
// ids, timestamps) stay half full, so slots of items cost some 157 bytes
// a key where a pointer's cost 16 and the item 80 (BENCHMARKS.md, "Memory
// per node"). The methods take and return items by value, as
// btree.BTreeG[Item] did, so callers never share an item they could
// change. Safe for concurrent reads; writes need the caller's exclusion,
// and Clone gives an independent tree, as btree.BTreeG's.
//
// The stored items are treeItems, which keep a value either in the item
// (after the key, in kv) or, with a ValueStore (WithValueStore), as the place of its
// record there (seg, off, n): every method that returns an item then
// reads its value back. A Clone reads the values as they were when it
// was taken, and is read-only.
type itemTree struct {
	t    *btree.BTreeG[*treeItem]
	vals *valueSpace // nil: the values are in the items
}

// treeItem is an Item as the tree keeps it, in 64 bytes where an Item
// takes 72 (an 80-byte allocation): the key and, without a value store,
// the value are one string.
type treeItem struct {
	// kv is the key followed, without a value store, by the value (one
	// allocation; with a store it is the Item's key string itself).
	kv          string
	rev, create int64
	ver         int64
	lease       LeaseID
	// klen is the key's length in kv. With a value store, seg, off and n
	// place the value's record there: its segment, offset and the
	// value's length.
	klen, seg, off, n uint32
}

func (p *treeItem) key() string { return p.kv[:p.klen] }

func newItemTree() *itemTree { return &itemTree{t: btree.NewG(btreeDegree, itemRefLess)} }

// newItemTreeIn returns an empty tree whose values go to vs (nil: in
// the items).
func newItemTreeIn(vs *ValueStore) *itemTree {
	t := newItemTree()
	if vs != nil {
		t.vals = vs.newSpace()
	}
	return t
}

func itemRefLess(a, b *treeItem) bool { return a.key() < b.key() }

func pivotOf(it Item) *treeItem { return &treeItem{kv: it.Key, klen: uint32(len(it.Key))} }

// load returns the item p stores, its value read back.
func (t *itemTree) load(p *treeItem) Item {
	it := loadKey(p)
	switch {
	case t.vals != nil:
		it.Value = t.vals.read(p)
	case len(p.kv) > int(p.klen):
		// Shared, not copied: a stored value is never changed in place.
		v := p.kv[p.klen:]
		it.Value = unsafe.Slice(unsafe.StringData(v), len(v))
	}
	return it
}

// loadKey is load without the value.
func loadKey(p *treeItem) Item {
	return Item{Key: p.key(), Revision: p.rev, CreateRevision: p.create, Version: p.ver, Lease: p.lease}
}

// Get returns the item whose key is pivot's.
func (t *itemTree) Get(pivot Item) (Item, bool) {
	p, ok := t.t.Get(pivotOf(pivot))
	if !ok {
		return Item{}, false
	}
	return t.load(p), true
}

// GetKey is Get without the value (Value is nil): for callers that need
// only whether the key exists, its revisions or its lease, which a value
// store would otherwise read from disk for nothing.
func (t *itemTree) GetKey(pivot Item) (Item, bool) {
	p, ok := t.t.Get(pivotOf(pivot))
	if !ok {
		return Item{}, false
	}
	return loadKey(p), true
}

// ReplaceOrInsert stores it, replacing the item with its key.
func (t *itemTree) ReplaceOrInsert(it Item) {
	p := &treeItem{kv: it.Key, klen: uint32(len(it.Key)), rev: it.Revision, create: it.CreateRevision, ver: it.Version, lease: it.Lease}
	if t.vals != nil {
		p.seg, p.off = t.vals.append(it.Key, it.Value)
		p.n = uint32(len(it.Value))
	} else if len(it.Value) > 0 {
		p.kv = it.Key + string(it.Value)
	}
	if old, ok := t.t.ReplaceOrInsert(p); ok && t.vals != nil {
		t.vals.forget(old)
	}
}

// Delete removes the item whose key is pivot's and returns it.
func (t *itemTree) Delete(pivot Item) (Item, bool) {
	p, ok := t.t.Delete(pivotOf(pivot))
	if !ok {
		return Item{}, false
	}
	it := t.load(p)
	if t.vals != nil {
		t.vals.forget(p)
	}
	return it, true
}

// loader returns how a walk in key order loads its items: with a value
// store, reading ahead where records follow each other.
func (t *itemTree) loader() func(*treeItem) Item {
	if t.vals == nil {
		return t.load
	}
	ra := newReadAhead()
	return func(p *treeItem) Item {
		it := loadKey(p)
		it.Value = t.vals.readNext(ra, p)
		return it
	}
}

// Ascend calls fn with every item in key order until fn returns false.
func (t *itemTree) Ascend(fn func(Item) bool) {
	load := t.loader()
	t.t.Ascend(func(p *treeItem) bool { return fn(load(p)) })
}

// AscendKeys is Ascend without the values (Value is nil): for walks that
// need only keys and revisions.
func (t *itemTree) AscendKeys(fn func(Item) bool) {
	t.t.Ascend(func(p *treeItem) bool { return fn(loadKey(p)) })
}

// AscendGreaterOrEqual calls fn with every item from pivot's key on, in
// key order, until fn returns false.
func (t *itemTree) AscendGreaterOrEqual(pivot Item, fn func(Item) bool) {
	load := t.loader()
	t.t.AscendGreaterOrEqual(pivotOf(pivot), func(p *treeItem) bool { return fn(load(p)) })
}

// AscendKeysGreaterOrEqual is AscendGreaterOrEqual without the values.
func (t *itemTree) AscendKeysGreaterOrEqual(pivot Item, fn func(Item) bool) {
	t.t.AscendGreaterOrEqual(pivotOf(pivot), func(p *treeItem) bool { return fn(loadKey(p)) })
}

// Len is the number of items.
func (t *itemTree) Len() int { return t.t.Len() }

// Clone returns a copy-on-write copy of the tree, as btree.BTreeG.Clone:
// both may then change independently; the items themselves are shared,
// which is safe because no item is changed once stored. With a value
// store the copy reads the values as they are now and must not be
// written. The caller excludes writers of t.
func (t *itemTree) Clone() *itemTree {
	c := &itemTree{t: t.t.Clone()}
	if t.vals != nil {
		c.vals = t.vals.frozen()
	}
	return c
}

// drop lets go of the tree's values in the value store, if any: the tree
// is no longer the state (read-only copies keep theirs).
func (t *itemTree) drop() {
	if t.vals != nil && !t.vals.readOnly {
		t.vals.drop()
	}
}
