package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Save durably writes, as one atomic synced pebble batch, a snapshot (if
// not empty), then entries, then the hard state (if not empty):
//
//   - A snapshot must be newer than the stored one and not older than the
//     log start (else an error wrapping raft.ErrSnapOutOfDate). It
//     discards every entry at or below its index, and the whole log unless
//     the log holds the snapshot's index with the snapshot's term.
//   - Entries must be contiguous and must not go back in term, from the
//     entry before them on. An entry with index i replaces every
//     stored entry at i or above. Entries below FirstIndex() are ignored;
//     entries starting beyond LastIndex()+1 are an error.
//   - A hard state may not commit an index beyond the resulting last index.
//
// An invalid Save writes nothing. Nil or empty arguments are skipped, and
// a Save with nothing to do does not touch the disk. Save keeps the newest
// entries in memory (the tail cache) and hands the same *Entry values back
// from Entries; like raft's MemoryStorage it relies on nobody mutating
// them, which raft's Storage contract requires of both sides.
//
// Save syncs only when raft needs it (raft.MustSync): when it stores
// entries, a snapshot, or a new term or vote. A hard state that only
// advances the commit index is written without waiting for the disk; a
// power loss may take it back, which raft tolerates, and the next synced
// write makes it durable with everything before it. Readers are not held
// up while the batch is written: raft never reads the indexes a Save is
// replacing (they are still in its unstable log), and the bounds readers
// see change only once the batch is durable.
func (p *Pebble) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	defer p.catchFatalUnlocked(&err)
	p.mu.RLock()
	if err := p.usable(); err != nil {
		p.mu.RUnlock()
		return err
	}
	plan, err := planSave(bounds{first: p.first, last: p.last, snapIndex: p.snapMeta.GetIndex()}, p.term, hs, entries, snap)
	last, prevHS := p.last, p.hardState
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	if plan.empty() {
		return nil
	}

	w := newBatchWriter(p.db)
	defer w.close()
	var newStart logStart
	var newSnapMeta *raftpb.SnapshotMetadata
	if plan.snap != nil {
		newSnapMeta = raftpb.EnsureSnapshotMetadata(proto.Clone(plan.snap.GetMetadata()).(*raftpb.SnapshotMetadata))
		newStart = logStart{index: newSnapMeta.GetIndex(), term: newSnapMeta.GetTerm()}
		w.setProto(keySnapshot, plan.snap)
		w.set(keyLogStart, encodeLogStart(newStart))
		end := entryKeysEnd
		if plan.keepLog {
			end = entryKey(newStart.index + 1)
		}
		w.deleteRange(entryKeysStart, end)
	}
	if n := len(plan.entries); n > 0 {
		for _, e := range plan.entries {
			w.setProto(entryKey(e.GetIndex()), e)
		}
		// The sets above overwrite the conflicting entries they share an
		// index with; what is left of the old suffix goes here.
		if hi := plan.entries[n-1].GetIndex(); last > hi {
			w.deleteRange(entryKey(hi+1), entryKeysEnd)
		}
	}
	var newHardState *raftpb.HardState
	if plan.hardState != nil {
		newHardState = &raftpb.HardState{
			Term:   proto.Uint64(plan.hardState.GetTerm()),
			Vote:   proto.Uint64(plan.hardState.GetVote()),
			Commit: proto.Uint64(plan.hardState.GetCommit()),
		}
		w.setProto(keyHardState, newHardState)
	}
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	sync := pebble.NoSync
	if plan.snap != nil || len(plan.entries) > 0 || (newHardState != nil &&
		(newHardState.GetTerm() != prevHS.GetTerm() || newHardState.GetVote() != prevHS.GetVote())) {
		sync = pebble.Sync
	}
	if err := w.b.Commit(sync); err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.writeFailed(err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if newSnapMeta != nil {
		p.snapMeta = newSnapMeta
		p.start = newStart
	}
	if newHardState != nil {
		p.hardState = newHardState
	}
	if newSnapMeta != nil {
		p.tail, p.tailBytes = nil, 0
	}
	if len(plan.entries) > 0 {
		p.cacheTail(plan.entries)
	}
	p.first, p.last = plan.after.first, plan.after.last
	return nil
}

// SetSnapshot durably records snap, a snapshot the node took of its own
// applied state, without touching the log: the entries it covers stay
// until Compact, so followers slightly behind can still be sent entries
// rather than the whole snapshot. snap's index must be in the log with
// snap's term, and newer than the stored snapshot (else an error wrapping
// raft.ErrSnapOutOfDate). Only the metadata is meaningful to the node;
// the snapshot's data is kept elsewhere (see SnapshotDir).
func (p *Pebble) SetSnapshot(snap *raftpb.Snapshot) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.catchFatal(&err, true)
	if err := p.usable(); err != nil {
		return err
	}
	if err := checkSetSnapshot(snap, p.snapMeta.GetIndex(), p.start.index, p.last, p.term); err != nil {
		return fmt.Errorf("storage: %s: %w", p.dir, err)
	}
	w := newBatchWriter(p.db)
	defer w.close()
	w.setProto(keySnapshot, snap)
	// Open requires a log start beside a snapshot; a log never compacted
	// has none stored yet, so store the current one (unchanged).
	w.set(keyLogStart, encodeLogStart(p.start))
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	// Synced: once this returns the node deletes older snapshot files, so
	// the record must not fall back to one of them in a crash.
	if err := w.b.Commit(pebble.Sync); err != nil {
		return p.writeFailed(err)
	}
	p.snapMeta = raftpb.EnsureSnapshotMetadata(proto.Clone(snap.GetMetadata()).(*raftpb.SnapshotMetadata))
	return nil
}

// checkSetSnapshot validates SetSnapshot's argument against a log whose
// start (the compaction point) is start and whose last index is last.
func checkSetSnapshot(snap *raftpb.Snapshot, stored, start, last uint64, termAt func(uint64) (uint64, error)) error {
	if raft.IsEmptySnap(snap) {
		return errors.New("set snapshot: empty snapshot")
	}
	si, st := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	if si <= stored || si < start {
		return fmt.Errorf("set snapshot at index %d: stored snapshot %d, log start %d: %w", si, stored, start, raft.ErrSnapOutOfDate)
	}
	if si > last {
		return fmt.Errorf("set snapshot at index %d beyond the last index %d: %w", si, last, raft.ErrUnavailable)
	}
	t, err := termAt(si)
	if err != nil {
		return fmt.Errorf("set snapshot at index %d: %w", si, err)
	}
	if t != st {
		return fmt.Errorf("set snapshot at index %d: term %d, the log has %d", si, st, t)
	}
	return nil
}

// Compact discards the entries at and below index, keeping index's term:
// afterwards FirstIndex() is index+1 and Term(index) still answers.
// Compacting at or below the current log start is a no-op; compacting
// beyond LastIndex() is an error wrapping raft.ErrUnavailable.
func (p *Pebble) Compact(index uint64) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.catchFatal(&err, true)
	if err := p.usable(); err != nil {
		return err
	}
	if index <= p.start.index {
		return nil
	}
	if index > p.last {
		return fmt.Errorf("storage: %s: compact %d beyond the last index %d: %w", p.dir, index, p.last, raft.ErrUnavailable)
	}
	term, err := p.term(index)
	if err != nil {
		return err
	}
	newStart := logStart{index: index, term: term}
	w := newBatchWriter(p.db)
	defer w.close()
	w.deleteRange(entryKeysStart, entryKey(index+1))
	w.set(keyLogStart, encodeLogStart(newStart))
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	// No sync: losing this batch in a crash only brings back entries that
	// are already applied, and the next synced Save makes it durable
	// anyway because pebble's WAL is ordered.
	if err := w.b.Commit(pebble.NoSync); err != nil {
		return p.writeFailed(err)
	}
	p.start = newStart
	p.first = index + 1
	p.dropTailBelow(p.first)
	return nil
}

// batchWriter builds a pebble batch, keeping the first error so that a
// Save reads as the list of records it writes.
type batchWriter struct {
	b   *pebble.Batch
	err error
}

func newBatchWriter(db *pebble.DB) *batchWriter {
	return &batchWriter{b: db.NewBatch()}
}

func (w *batchWriter) set(key, value []byte) {
	if w.err == nil {
		w.err = w.b.Set(key, value, nil)
	}
}

func (w *batchWriter) setProto(key []byte, m proto.Message) {
	if w.err != nil {
		return
	}
	v, err := encodeProto(m)
	if err != nil {
		w.err = err
		return
	}
	w.set(key, v)
}

func (w *batchWriter) deleteRange(start, end []byte) {
	if w.err == nil {
		w.err = w.b.DeleteRange(start, end, nil)
	}
}

func (w *batchWriter) close() { _ = w.b.Close() }

// writeFailed records a failed write. Whether any of it reached the disk
// is unknown, so the in-memory state can no longer be trusted to match it
// and the store refuses further use.
func (p *Pebble) writeFailed(err error) error {
	p.failed = fmt.Errorf("storage: %s: write failed, store unusable until reopened: %w", p.dir, err)
	p.log.Error("storage: write failed", "dir", p.dir, "err", err)
	return p.failed
}
