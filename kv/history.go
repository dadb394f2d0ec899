package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
)

// Reads at older revisions, and compaction.
//
// The watch history keeps, with each event, the item the event replaced
// or deleted. The state at a revision R older than the current one is
// the current state with every change after R undone: for each key
// changed after R, the item its first change after R replaced (or
// nothing, if that change created it). That needs every change after R,
// so R can be read while the history holds them all: R at or above the
// newest revision it dropped (its bounds, --watch-history-events and
// --watch-history-bytes, or a snapshot install reset it), and at or
// above the newest explicit compaction.
//
// A compaction (opCompact) is replicated, so that every member raises
// its floor at the same point in the log: reads below the floor are
// refused and watches from below it end with ErrCompacted, on every
// member alike, and the history below it is dropped at once. The floor
// is not part of the snapshot: a member that installs a snapshot starts
// its history at the snapshot's revision, which is at or above every
// compaction before it, so the floor it derives is never lower.

// opCompact raises the compaction floor to command.Compact; it changes
// no key and takes no revision. Numbered with the etcd API's operations
// (opEtcdTxn).
const opCompact op = 33

// ErrFutureRevision means a read or compaction at a revision this node
// has not reached.
var ErrFutureRevision = errors.New("required revision is a future revision")

// readFloorLocked is the oldest revision that can be read. The caller
// holds mu (shared is enough).
func (h *watchHub) readFloorLocked() int64 { return max(h.floor, h.compacted) }

// itemsAt returns, for every key for which in is true and that changed
// after revision rev, its item at rev (an empty Key: it did not exist);
// or a *CompactedError when the history no longer holds every change
// after rev. The caller holds the machine's lock, so that the history
// matches its state.
func (h *watchHub) itemsAt(rev int64, in func(key string) bool) (map[string]Item, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if floor := h.readFloorLocked(); rev < floor {
		return nil, compactedRead(rev, floor)
	}
	var at map[string]Item
	// Newest first, so that the last item recorded for a key is the one
	// its first change after rev replaced.
	for i := len(h.batches) - 1; i >= h.start; i-- {
		b := &h.batches[i]
		if b.last <= rev {
			break
		}
		for j := len(b.events) - 1; j >= 0; j-- {
			ev := &b.events[j]
			if ev.Item.Revision <= rev || !in(ev.Item.Key) {
				continue
			}
			if b.prev == nil {
				// Not known (published without them): cannot undo.
				return nil, compactedRead(rev, b.last)
			}
			if at == nil {
				at = make(map[string]Item)
			}
			at[ev.Item.Key] = b.prev[j]
		}
	}
	return at, nil
}

// compactedRead is the error of a read at rev below floor, the oldest
// revision that can be read.
func compactedRead(rev, floor int64) error {
	return fmt.Errorf("kv: read at revision %d: %w; the oldest readable is %d", rev, ErrCompacted, floor)
}

// prevItem returns the item that the change of key at revision rev
// replaced or deleted, and whether there was one; a *CompactedError when
// the history no longer holds that change.
func (h *watchHub) prevItem(rev int64, key string) (Item, bool, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	live := h.batches[h.start:]
	i := sortSearchBatches(live, rev)
	for ; i < len(live) && live[i].first <= rev; i++ {
		b := &live[i]
		for j := range b.events {
			ev := &b.events[j]
			if ev.Item.Revision != rev || ev.Item.Key != key {
				continue
			}
			if b.prev == nil {
				break
			}
			p := b.prev[j]
			return p, p.Key != "", nil
		}
	}
	return Item{}, false, &CompactedError{Requested: rev, Oldest: h.compacted + 1}
}

// sortSearchBatches returns the index of the first batch whose last
// revision is at or after rev.
func sortSearchBatches(live []histBatch, rev int64) int {
	i, _ := slices.BinarySearchFunc(live, rev, func(b histBatch, rev int64) int {
		return compareInt(b.last, rev)
	})
	return i
}

// compact raises the floor to rev and drops the history below it;
// watchers that still need a revision below it end with ErrCompacted.
func (h *watchHub) compact(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.floor {
		return
	}
	h.floor = rev
	for h.start < len(h.batches) && h.batches[h.start].last < rev {
		h.dropOldestLocked()
	}
	// Every event at rev or later is still held, so a watch can start at
	// rev, as etcd allows.
	h.compacted = max(h.compacted, min(rev-1, h.last))
	h.trimLocked()
	for _, g := range h.groups {
		for _, w := range g.watchers {
			if w.next <= h.compacted {
				w.wake() // it will read and find ErrCompacted
			}
		}
	}
}

// inEtcdRange reports whether k is in etcd's range [key, end): key alone
// when end is empty, every key from key on when end is EtcdRangeAll.
func inEtcdRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case EtcdRangeAll:
		return k >= key
	}
	return k >= key && k < end
}

// EtcdRangeAt returns the items in [key, end) (key alone if end is
// empty) as they were at revision rev (0: now), in key order, and the
// current revision. A revision below the oldest that can be read
// (CompactRevision, or the watch history's start) wraps ErrCompacted; one
// above the current revision wraps ErrFutureRevision.
func (m *Machine) EtcdRangeAt(key, end string, rev int64) ([]Item, int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	items, err := m.etcdRangeAtLocked(key, end, rev)
	return items, m.revision, err
}

// etcdRangeAtLocked is EtcdRangeAt's read; the caller holds m.mu.
func (m *Machine) etcdRangeAtLocked(key, end string, rev int64) ([]Item, error) {
	cur := m.revision
	items := m.etcdRange(key, end)
	switch {
	case rev <= 0 || rev == cur:
		return items, nil
	case rev > cur:
		return nil, fmt.Errorf("kv: read at revision %d: the state is at %d: %w", rev, cur, ErrFutureRevision)
	}
	at, err := m.hub.itemsAt(rev, func(k string) bool { return inEtcdRange(k, key, end) })
	if err != nil || len(at) == 0 {
		return items, err
	}
	out := items[:0:0]
	for _, it := range items {
		if _, changed := at[it.Key]; !changed {
			out = append(out, it)
		}
	}
	for _, it := range at { // sorted below
		if it.Key != "" {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b Item) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// PrevItem returns the item that the change of key at revision rev (an
// event a watcher delivered) replaced or deleted, and whether there was
// one. It fails with a *CompactedError (errors.Is ErrCompacted) once the
// watch history no longer holds that change.
func (m *Machine) PrevItem(rev int64, key string) (Item, bool, error) {
	return m.hub.prevItem(rev, key)
}

// CompactRevision returns the oldest revision that can be read: that of
// the newest compaction, or the watch history's start if it is newer.
func (m *Machine) CompactRevision() int64 {
	h := &m.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.readFloorLocked()
}

// applyCompact raises the compaction floor. The proposer checked that
// the revision was reached (and revisions only grow along the log), so a
// later one is a malformed entry.
func (m *Machine) applyCompact(c *command) *applyError {
	if c.Compact <= 0 || c.Compact > m.revision {
		return fail(ErrBadCommand, "compact at revision %d, the state is at %d", c.Compact, m.revision)
	}
	m.hub.compact(c.Compact)
	return nil
}

// Compact compacts the state's history at revision rev, on every member:
// reads at a revision below rev then fail with ErrCompacted, and watches
// from below it end with a *CompactedError whose Oldest is rev. It
// returns the revision of the state when it was applied. A revision at
// or below the last compaction (CompactRevision) wraps ErrCompacted; one
// not yet reached ErrFutureRevision; a negative one ErrInvalidRevision.
// Compacting the same revision twice at once may succeed twice.
func (s *Store) Compact(ctx context.Context, rev int64) (int64, error) {
	if rev <= 0 {
		return 0, fmt.Errorf("kv: compact at revision %d: %w", rev, ErrInvalidRevision)
	}
	if err := s.sync(ctx, Linearizable); err != nil {
		return 0, err
	}
	if floor := s.machine.compactFloor(); rev <= floor {
		return 0, fmt.Errorf("kv: compact at revision %d: %w; compacted at %d", rev, ErrCompacted, floor)
	}
	if cur := s.machine.Revision(); rev > cur {
		return 0, fmt.Errorf("kv: compact at revision %d: the state is at %d: %w", rev, cur, ErrFutureRevision)
	}
	b, err := encodeCommand(command{Op: opCompact, Compact: rev})
	if err != nil {
		return 0, err
	}
	res, err := s.node.Propose(ctx, b)
	if err != nil {
		return 0, err
	}
	r, ok := res.(Result)
	if !ok {
		return 0, fmt.Errorf("kv: unexpected apply result %T", res)
	}
	return r.Revision, r.Err
}

// compactFloor is the revision of the newest explicit compaction.
func (m *Machine) compactFloor() int64 {
	h := &m.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.floor
}

// EtcdHashKV hashes the keys and values as they were at revision rev (0:
// now), with their revisions, versions and leases: equal on every member
// for the same revision, since the state at a revision is the same
// everywhere. It returns the hash, the revision hashed and the oldest
// revision that can be read (CompactRevision); rev fails as EtcdRangeAt.
// The hash is CRC-32C of the items in key order; it is not etcd's (which
// hashes its own storage), so compare members of one cluster only.
func (m *Machine) EtcdHashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	items, cur, err := m.EtcdRangeAt("", EtcdRangeAll, rev)
	if err != nil {
		return 0, 0, 0, err
	}
	if rev <= 0 {
		rev = cur
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	var buf []byte
	for _, it := range items {
		buf = binary.AppendUvarint(buf[:0], uint64(len(it.Key)))
		buf = append(buf, it.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(it.Value)))
		buf = append(buf, it.Value...)
		for _, n := range []int64{it.CreateRevision, it.Revision, it.Version, int64(it.Lease)} {
			buf = binary.AppendVarint(buf, n)
		}
		h.Write(buf) // a hash.Hash does not fail
	}
	return h.Sum32(), rev, m.CompactRevision(), nil
}
