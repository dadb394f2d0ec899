package kv

import "github.com/google/btree"

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
type itemTree struct{ t *btree.BTreeG[*Item] }

func newItemTree() *itemTree { return &itemTree{btree.NewG(btreeDegree, itemRefLess)} }

func itemRefLess(a, b *Item) bool { return a.Key < b.Key }

// Get returns the item whose key is pivot's.
func (t *itemTree) Get(pivot Item) (Item, bool) {
	p, ok := t.t.Get(&pivot)
	if !ok {
		return Item{}, false
	}
	return *p, true
}

// ReplaceOrInsert stores a copy of it, returning the item it replaced.
func (t *itemTree) ReplaceOrInsert(it Item) (Item, bool) {
	p, ok := t.t.ReplaceOrInsert(&it)
	if !ok {
		return Item{}, false
	}
	return *p, true
}

// Delete removes the item whose key is pivot's and returns it.
func (t *itemTree) Delete(pivot Item) (Item, bool) {
	p, ok := t.t.Delete(&pivot)
	if !ok {
		return Item{}, false
	}
	return *p, true
}

// Ascend calls fn with every item in key order until fn returns false.
func (t *itemTree) Ascend(fn func(Item) bool) {
	t.t.Ascend(func(p *Item) bool { return fn(*p) })
}

// AscendGreaterOrEqual calls fn with every item from pivot's key on, in
// key order, until fn returns false.
func (t *itemTree) AscendGreaterOrEqual(pivot Item, fn func(Item) bool) {
	t.t.AscendGreaterOrEqual(&pivot, func(p *Item) bool { return fn(*p) })
}

// Len is the number of items.
func (t *itemTree) Len() int { return t.t.Len() }

// Clone returns a copy-on-write copy of the tree, as btree.BTreeG.Clone:
// both may then change independently; the items themselves are shared,
// which is safe because no item is changed once stored.
func (t *itemTree) Clone() *itemTree { return &itemTree{t.t.Clone()} }
