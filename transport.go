package consensus

import (
	"io"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Transport carries raft messages between nodes. The production
// implementation is transport.WebSocket; tests use an in-memory network.
//
// Implementations deliver inbound messages to the node through the
// MessageHandler they were built with.
type Transport interface {
	// Send queues msgs for delivery and returns without blocking. The
	// transport must not retain the *raftpb.Message values after Send
	// returns (raft may reuse them); it may keep references to entry Data
	// slices, which are never mutated. A message that cannot be queued is
	// dropped and reported through MessageHandler.ReportUnreachable (and
	// ReportSnapshot with raft.SnapshotFailure for MsgSnap).
	Send(msgs []*raftpb.Message)
	// AddPeer makes the peer with raft id id, named name, reachable at addr.
	// Adding a known peer updates its address.
	AddPeer(id uint64, name, addr string)
	// RemovePeer forgets a peer and closes its streams.
	RemovePeer(id uint64)
	// ConnectedPeers returns the raft ids of peers with a live stream.
	ConnectedPeers() []uint64
	// Close stops all streams and listeners. It is safe to call once.
	Close() error
}

// MessageHandler is what a Transport calls with inbound traffic and delivery
// failures. Its methods are safe for concurrent use and return quickly.
type MessageHandler interface {
	// Deliver hands received messages to the node, in the order received
	// from one peer.
	Deliver(msgs []*raftpb.Message)
	// ReportUnreachable tells raft that a message to id could not be sent.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft whether a MsgSnap to id was delivered.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// SnapshotHandler is implemented by a MessageHandler whose node keeps
// snapshot data outside the raft messages (Node does). A MsgSnap then
// carries only the snapshot's metadata, and the transport moves the data
// beside it, in bounded chunks: it reads the data from the sender's
// OpenSnapshot and hands the receiver a stream of it through
// ReceiveSnapshot instead of Deliver.
type SnapshotHandler interface {
	// OpenSnapshot returns the data of the snapshot at (index, term) and
	// its size. The caller closes it.
	OpenSnapshot(index, term uint64) (data io.ReadCloser, size int64, err error)
	// ReceiveSnapshot reads the data of the snapshot that m (a MsgSnap)
	// announces from data, stores it, and then steps m into raft. data
	// must fail, not end early, if the stream is cut short.
	ReceiveSnapshot(m *raftpb.Message, data io.Reader) error
}

// LogStorage is durable raft state: the log, the hard state and the
// newest snapshot. The production implementation is storage.Pebble;
// storage.Memory serves tests and embedders that need no durability.
//
// Raft's Storage methods may be called concurrently with Save from the
// raft goroutine; implementations synchronise internally.
type LogStorage interface {
	raft.Storage
	// Save persists, as one atomic write, a snapshot (if not empty), then
	// entries, then the hard state (if not empty). It returns once they
	// are durable, except that a hard state changing only the commit
	// index need not be (raft's MustSync rule; losing it is harmless).
	// Entries replace any stored entries with an equal or higher index.
	// A snapshot discards every entry at or below its index.
	Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) error
	// SetSnapshot durably records the metadata of a snapshot the node took
	// of its own applied state, leaving the log as it is (Compact trims it
	// later). The snapshot must be newer than the stored one (else an
	// error wrapping raft.ErrSnapOutOfDate) and its index must be in the
	// log with its term.
	SetSnapshot(snap *raftpb.Snapshot) error
	// Compact discards entries below index, keeping index's term for
	// matching, so FirstIndex becomes index+1. Compacting at or below
	// FirstIndex()-1 is a no-op.
	Compact(index uint64) error
	// Close releases the storage. It is safe to call once.
	Close() error
}

// ClusterIDStore is implemented by LogStorage that can keep the cluster id
// beside the log. A node writes it once, when it bootstraps or joins, and
// reads it on every restart, so the id never depends on flags given later.
type ClusterIDStore interface {
	// ClusterID returns the stored cluster id, or 0 if none is stored.
	ClusterID() (uint64, error)
	// SetClusterID durably stores id.
	SetClusterID(id uint64) error
}
