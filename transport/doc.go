// Package transport carries raft messages between nodes over WebSockets,
// encoded as MessagePack. WebSocket is the production implementation of the
// consensus.Transport interface.
//
// # Streams and handshake
//
// Every node listens for peer streams at ws://<addr>/raft/stream, and for
// each peer it knows (AddPeer) it keeps one long-lived outbound stream that
// it dialed itself. A pair of nodes therefore shares two connections, one
// per direction; each carries data one way only, which keeps ordering and
// failure handling per direction trivial. The dialer's upgrade request
// carries four headers:
//
//	X-Consensus-From:    <dialer's raft id, decimal>
//	X-Consensus-Name:    <dialer's name>
//	X-Consensus-To:      <raft id the dialer means to reach, decimal>
//	X-Consensus-Cluster: <dialer's cluster id, hex>
//
// The acceptor answers 403 Forbidden, and counts Stats.UnknownSender, when
// From is not one of its known peers or To is not its own id (a peer dialing
// a stale address). When both ends have a cluster id and they differ, it
// answers 403 with "X-Consensus-Refused: cluster-mismatch" and its own id in
// X-Consensus-Cluster; both ends count Stats.WrongCluster and log an error
// naming both clusters, so nodes of two clusters never exchange messages.
//
// With Config.ServerTLS and Config.ClientTLS the streams run over TLS
// (wss://), normally with client certificates required on both sides; a
// plain-text or wrongly signed peer fails the TLS handshake. A node keeps one inbound stream per peer: a new one
// replaces the old. RemovePeer closes both directions.
//
// # Frames
//
// Each WebSocket binary message is one frame: a MessagePack map whose first
// key is the version,
//
//	{"v": 1, "from": <sender's raft id>, "msgs": [<message>, ...]}
//
// A decoder rejects a frame whose first key is not "v" or whose version it
// does not know, and skips keys it does not know. Each message is an array
// of its fields by position; an absent (nil) protobuf field is msgpack nil,
// and the array stops after the last field present, so a heartbeat response
// is an array of four small integers (five bytes):
//
//	0 type        int (raftpb.MessageType)
//	1 to          uint
//	2 from        uint
//	3 term        uint
//	4 logTerm     uint
//	5 index       uint
//	6 commit      uint
//	7 entries     array of entry, or nil when there are none
//	8 reject      bool
//	9 rejectHint  uint
//	10 context    bin
//	11 vote       uint
//	12 snapshot   [data bin, metadata]
//
// An entry is [term uint, index uint, type int, data bin], also truncated
// after its last present field. Snapshot metadata is [confState, index uint,
// term uint] and a conf state is [voters, learners, votersOutgoing,
// learnersNext, autoLeave bool], the id lists being arrays of uint or nil.
// Integers take the shortest msgpack form. Bytes keep proto2 presence: nil is
// msgpack nil, an empty slice an empty bin. Elements past those listed (from
// a newer peer) are skipped, so fields can be appended without a version
// bump; anything else needs a new "v". Message.Responses is local to a node
// and never sent. A stream carries only messages from its peer: frames whose
// "from", or messages whose From, is not the handshake's id are dropped and
// counted, as are messages whose To is not this node.
//
// Decoding is defensive: every declared array, map or bin length is checked
// against the bytes left in the frame before anything is allocated (the
// msgpack library would otherwise preallocate whatever a header claims),
// skipped values nest at most 16 deep, and trailing bytes are an error. A
// frame that does not decode is counted in Stats.BadFrames and dropped; the
// stream stays up. The read limit on a stream is Config.MaxFrameBytes.
//
// # Sending and backpressure
//
// Send never blocks the raft loop. It copies each message to its wire form
// in the caller's goroutine (entry and snapshot data are referenced, not
// copied, since raft never mutates them) and offers it to the peer's queue,
// a channel of Config.SendQueueSize messages. If the queue is full or the
// peer unknown, the message is dropped, counted in Stats.MessagesDropped,
// the peer reported through Handler.ReportUnreachable (once per Send call)
// and a MsgSnap also through Handler.ReportSnapshot(raft.SnapshotFailure).
// Raft retransmits what matters. Handler methods are never called with a
// lock held that Send takes.
//
// A writer goroutine per peer drains its queue: it takes whatever is queued,
// up to about 1 MiB of estimated size (always at least one message), encodes
// it as one frame and writes it with Config.WriteTimeout. Batching is what
// makes the transport fast: under load a frame carries hundreds of messages.
// After a frame with a MsgSnap is written the writer reports
// raft.SnapshotFinish (the write succeeded; the follower still has to
// apply it), and raft.SnapshotFailure if it was not.
//
// # Snapshots
//
// When the Handler is a SnapshotHandler (a consensus.Node), a MsgSnap
// carries only metadata and does not use the peer's queue or stream: Send
// starts a goroutine (one per peer at a time; a second is refused and
// reported as a failure) that dials /raft/snapshot with the same handshake
// and sends the data size with the envelope of the MsgSnap, then the data
// from OpenSnapshot in binary frames of at most 1 MiB, then its CRC-32C.
// The receiver hands the data to ReceiveSnapshot as an io.Reader that
// fails (never ends cleanly) if the stream is cut, overlong or its
// checksum differs, and answers with one text frame: "ok" or the error.
// The sender reports SnapshotFinish on "ok", SnapshotFailure otherwise.
// The peer's stream keeps carrying heartbeats while a snapshot is sent.
//
// # Failure and reconnect
//
// The writer watches its stream for the peer closing it, so a crashed peer
// is noticed at once, not at the next write. When a stream fails the peer is
// marked disconnected (ConnectedPeers), reported unreachable, and redialed
// after a jittered exponential backoff between Config.BackoffMin and
// Config.BackoffMax. Messages queued while it is down stay (the queue is
// bounded) until a dial fails, when they are dropped and reported; a
// successful redial sends them. Silent failures (a partition) surface as a
// write timeout or TCP keepalive failure.
package transport
