package consensus

import "io"

// Snapshotter is implemented by a StateMachine whose state can be saved
// and restored. A node whose state machine implements it snapshots every
// Config.SnapshotThreshold applied entries, compacts its log, and sends a
// new or far-behind follower the snapshot instead of the whole log.
type Snapshotter interface {
	// Snapshot captures the state as of the last applied command, the
	// entry at at. It is called from the raft loop between two Applies
	// and must be cheap (a copy-on-write clone, not a serialisation): the
	// returned view is written out by another goroutine while Apply goes
	// on.
	Snapshot(at Position) (StateSnapshot, error)
	// Restore replaces the entire state with one written by
	// StateSnapshot.WriteTo, of the snapshot at at (the next Apply is of
	// the entry after at.Index). It is called from the raft loop, never
	// concurrently with Apply. It rejects malformed input with an error
	// (never a panic) and leaves the state unchanged when it fails.
	Restore(at Position, r io.Reader) error
}

// StateSnapshot is a frozen view of a state machine's state.
type StateSnapshot interface {
	// WriteTo writes the state in a deterministic encoding: equal states
	// give equal bytes. It may run concurrently with Apply.
	WriteTo(w io.Writer) (int64, error)
	// Release frees the view. It is called once, after WriteTo or instead
	// of it.
	Release()
}

// SnapshotStore keeps the data of snapshots, keyed by the raft index and
// term they were taken at. The node writes its own snapshots and those it
// receives from a leader here; the raft log storage keeps only their
// metadata. storage.SnapshotDir is the durable implementation; a node
// whose Config has none keeps snapshots in memory.
//
// Implementations are safe for concurrent use.
type SnapshotStore interface {
	// Create starts writing the snapshot at (index, term). Nothing is
	// visible to Open until the sink's Commit returns nil.
	Create(index, term uint64) (SnapshotSink, error)
	// Open returns the data of the snapshot at (index, term), verified,
	// and its size. The caller closes it.
	Open(index, term uint64) (data io.ReadCloser, size int64, err error)
	// Prune deletes snapshots older than keep, except the newest retain-1
	// of them; keep itself and anything newer stay.
	Prune(keep uint64, retain int) error
}

// SnapshotSink receives the data of one snapshot being written.
type SnapshotSink interface {
	io.Writer
	// Commit makes the snapshot durable and visible to Open.
	Commit() error
	// Abort discards what was written. It is a no-op after Commit.
	Abort()
}
