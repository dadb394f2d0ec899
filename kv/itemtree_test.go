package kv

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"unsafe"
)

// TestItemTreeMemory measures what the tree itself costs a key when keys
// arrive in order (generated ids: B-tree nodes split that way stay half
// full): the heap it adds beyond the keys and values, which are allocated
// before. Slots of whole 72-byte items cost some 157 B a key; pointers to
// 80-byte items allocated once some 97 B; pointers to 64-byte treeItems
// some 80 B, plus the item's own copy of key and value without a value
// store.
func TestItemTreeMemory(t *testing.T) {
	if size := unsafe.Sizeof(treeItem{}); size != 64 {
		t.Errorf("a stored item takes %d bytes, want 64 (an allocation of its own size class)", size)
	}
	for _, store := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", store), func(t *testing.T) { testItemTreeMemory(t, store) })
	}
}

func testItemTreeMemory(t *testing.T, store bool) {
	const n = 50_000
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{Key: fmt.Sprintf("bench/%06d", i), Value: json.RawMessage(`"v"`), Revision: int64(i + 1), Version: 1}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var vs *ValueStore
	if store {
		vs = openTestValues(t, 0)
	}
	tree := newItemTreeIn(vs)
	for _, it := range items {
		tree.ReplaceOrInsert(it)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d keys in order: %d B of heap a key", tree.Len(), perKey)
	// Without a store the tree's own copy of key and value adds 16 B.
	limit := int64(115)
	if store {
		limit = 95
	}
	if perKey > limit {
		t.Errorf("the tree costs %d B a key, want at most %d", perKey, limit)
	}
	runtime.KeepAlive(items)
	runtime.KeepAlive(tree)
}

// TestItemTreeCopies checks that the tree keeps its own copies: changing
// an item a caller passed in or got back changes nothing stored, and a
// clone does not see later writes to its origin.
func TestItemTreeCopies(t *testing.T) {
	tree := newItemTree()
	it := Item{Key: "a", Value: json.RawMessage(`1`), Revision: 1}
	tree.ReplaceOrInsert(it)
	it.Revision = 99
	got, ok := tree.Get(Item{Key: "a"})
	if !ok || got.Revision != 1 {
		t.Fatalf("Get after changing the caller's item: %+v, %v", got, ok)
	}
	got.Revision = 98
	if again, _ := tree.Get(Item{Key: "a"}); again.Revision != 1 {
		t.Fatalf("Get after changing a returned item: %+v", again)
	}
	clone := tree.Clone()
	tree.ReplaceOrInsert(Item{Key: "a", Revision: 2})
	tree.ReplaceOrInsert(Item{Key: "b", Revision: 3})
	if old, _ := clone.Get(Item{Key: "a"}); old.Revision != 1 || clone.Len() != 1 {
		t.Fatalf("clone saw later writes: a=%+v, len %d", old, clone.Len())
	}
	if prev, ok := tree.Delete(Item{Key: "a"}); !ok || prev.Revision != 2 || tree.Len() != 1 {
		t.Fatalf("Delete: %+v, %v, len %d", prev, ok, tree.Len())
	}
	var keys []string
	tree.AscendGreaterOrEqual(Item{Key: ""}, func(it Item) bool { keys = append(keys, it.Key); return true })
	if fmt.Sprint(keys) != "[b]" {
		t.Fatalf("AscendGreaterOrEqual: %v", keys)
	}
}
