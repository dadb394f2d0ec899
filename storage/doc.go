// Package storage keeps a raft node's durable state: the log, the hard
// state and the newest snapshot. It offers two implementations of the
// node's log storage seam (raft.Storage plus Save, Compact and Close):
//
//   - Pebble, durable, on a github.com/cockroachdb/pebble/v2 database in a
//     directory of its own;
//   - Memory, on raft's MemoryStorage, for tests and for embedders that
//     need no durability.
//
// Both follow the same rules, which a shared conformance suite checks.
// NewMemoryFrom builds a Memory directly from a state (a snapshot, a
// compaction point, entries and a hard state) instead of through Save;
// it refuses, with a *StateError, any state a raft node could not have
// stored or could not start from.
//
// # The log
//
// The log holds the entries FirstIndex() through LastIndex(). The entry
// just before FirstIndex() is the log start: its data is gone (covered by
// the snapshot, or compacted) but its term is kept, so Term answers for
// [FirstIndex()-1, LastIndex()]. A new store's log start is index 0, term
// 0, and its log is empty (LastIndex() == 0, FirstIndex() == 1).
//
// Save writes, in this order and as one atomic batch, a snapshot, entries
// and a hard state, as raft's Ready contract requires before the messages
// that depend on them are sent. The batch is synced when raft's MustSync
// rule asks for it (entries, a snapshot, or a changed term or vote); a hard
// state that only moves the commit index is written without waiting for
// the disk, and the next synced write makes it durable. A snapshot moves the log start to
// its own index and term, dropping the entries it covers, and drops the
// rest of the log as well unless the log agrees with it (holds its index
// with its term): a snapshot received from a leader replaces a
// conflicting log, while a snapshot the node took of its own applied state
// keeps the entries after it. Entries overwrite any stored entry at the
// same or a higher index, so a conflicting suffix from an old term is
// replaced. Compact moves the log start forward without a snapshot.
//
// # On-disk format (Pebble)
//
// Keys are one prefix byte, followed for entries by the index as 8
// big-endian bytes so that pebble's order is log order:
//
//	0x01              format version: uint32, big-endian (currently 1)
//	0x02              hard state: raftpb.HardState
//	0x03              snapshot: raftpb.Snapshot, data included
//	0x04              log start: index and term, uint64 big-endian each
//	0x10 <index:8>    entry: raftpb.Entry
//
// Every value is a 4-byte big-endian CRC-32C (Castagnoli) of the payload
// followed by the payload; protobuf payloads are in the standard wire
// format. The version record is written when a store is created; a store
// without one, or with another version, is refused. The directory also
// holds pebble's own files and storage.lock, which Open locks with flock
// for as long as the store is open.
//
// # Guarantees
//
//   - A Save that returns nil is on disk (fsync'd pebble WAL) and whole: a
//     crash at any point leaves either all of it or none of it.
//   - An invalid Save (stale snapshot, gap, non-contiguous entries, terms
//     going back, a hard state committing past the log) returns an error
//     and writes nothing.
//   - Open verifies every record (checksum, decoding, each entry under its
//     own index, entries contiguous from the log start with non-decreasing
//     terms, commit index within the log) and every read verifies what it
//     reads. A failure is an error wrapping ErrCorrupt that names the
//     directory, never a panic and never silently used data; corruption
//     that pebble detects in its own files (MANIFEST, WAL, sstables) is
//     reported the same way.
//   - One directory is open at most once at a time, across processes and
//     within one; a second Open fails with ErrLocked.
//   - After a failed write the store refuses further use, because what
//     reached the disk is unknown; reopening it recovers the durable state.
//   - Close flushes the memtable, so a cleanly closed store lives in
//     checksummed sstables and does not depend on its WAL; the format
//     version record is flushed the same way when a store is created, so
//     no damage to a WAL can make a used store look new.
//
// Limits: after a crash, pebble replays its WAL and, as every WAL-based
// engine must, takes a damaged record at the tail for a torn write and
// drops it; it proves damage only when a later WAL block shows the record
// was synced. Such a loss leaves a whole, older state that verification
// cannot tell from the real one. Invalid entries (going back in term, a
// gap) are refused by Save, so the checks on Open find only damage.
//
// Term and Entries return raft.ErrCompacted and raft.ErrUnavailable
// unwrapped, because raft compares them with ==.
package storage
