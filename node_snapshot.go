package consensus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// SnapshotEventType says what happened to a snapshot.
type SnapshotEventType uint8

// Snapshot event types: the seed's snapshot_created and snapshot_restored.
const (
	// SnapshotCreated: the node snapshotted its state and compacted its log.
	SnapshotCreated SnapshotEventType = 1
	// SnapshotRestored: the node replaced its state with a snapshot, one a
	// leader sent it or, at start, its own newest.
	SnapshotRestored SnapshotEventType = 2
)

// String returns the seed's event name.
func (t SnapshotEventType) String() string {
	switch t {
	case SnapshotCreated:
		return "snapshot_created"
	case SnapshotRestored:
		return "snapshot_restored"
	}
	return "unknown"
}

// SnapshotEvent reports a snapshot taken or restored.
type SnapshotEvent struct {
	Type SnapshotEventType
	// Index and Term are the last log entry the snapshot covers.
	Index, Term uint64
	// Bytes is the size of the snapshot's data: the node's part and the
	// state machine's. StateBytes is the state machine's part alone
	// (what its StateSnapshot wrote); it is 0 for a restored snapshot.
	Bytes, StateBytes int64
	// Duration is how long writing or restoring it took.
	Duration time.Duration
}

// snapshots is the node's snapshotting: when to take one, the one being
// written, and installing one a leader sent. The Ready loop owns the
// plain fields (it captures, and installs, between two applies; NewNode
// sets them before the loop runs); the atomics are read by any goroutine
// and written by the Ready loop and the one writer goroutine a snapshot
// runs on (at most one at a time: inFlight). Outside node_snapshot.go
// only the Ready loop touches them (ready.go: it selects on wake, adds
// applied bytes, checks afterAdd and records conf changes through
// confChanged), and NewNode, before the loop runs.
type snapshots struct {
	// snapper is the state machine as a Snapshotter, nil if it cannot
	// snapshot; store keeps snapshot data. Both are set by init.
	snapper Snapshotter
	store   SnapshotStore
	// confState is the configuration as of the last applied entry; base
	// is the index of the newest snapshot taken or installed, bytes the
	// entry bytes applied since.
	confState *raftpb.ConfState
	base      uint64
	bytes     uint64
	// afterAdd is set when a conf change that adds a member is applied
	// and cleared when a snapshot taken after it starts: the newest
	// snapshot, the one a leader sends a node whose entries it has
	// compacted, must list that node, or the node refuses it and never
	// catches up (bug B3 in docs/TESTING.md).
	afterAdd bool
	// adds counts the conf changes adding a member applied so far, and
	// listed how many of them the stored snapshot includes. While listed
	// is behind, raft is told no snapshot is available (raftStorage):
	// the stored one does not list the new member, which would refuse it
	// after the whole transfer ("not in the ConfState"), and the leader
	// would send it again until the one afterAdd asks for is recorded.
	// With a million keys that is 125 MB sent, stored and thrown away
	// per try. Every end of a snapshot attempt, failed or not, catches
	// listed up with the adds seen when it was captured, so a failing
	// disk falls back to sending the old snapshot rather than none.
	adds   atomic.Uint64
	listed atomic.Uint64
	// pending are Snapshot calls waiting for the next snapshot to start
	// (the Ready loop takes them from requests).
	pending  []snapshotRequest
	requests chan snapshotRequest
	// wake fires when a due snapshot that had to wait may start (the
	// Ready loop selects on it).
	wake <-chan time.Time
	// inFlight is set while a snapshot is being written.
	inFlight atomic.Bool
	// notBefore (Unix nanoseconds) is when the next snapshot may start,
	// set as one ends (Config.SnapshotSpacing).
	notBefore atomic.Int64
	// index is the newest snapshot's index (Status.SnapshotIndex).
	index atomic.Uint64
	// installs counts snapshots installed (proposal.go: awaitInTerm).
	installs atomic.Uint64
	events   Feed[SnapshotEvent]
}

// init sets the state machine and the snapshot store (in memory if nil).
func (s *snapshots) init(sm StateMachine, store SnapshotStore) {
	s.snapper, _ = sm.(Snapshotter)
	s.store = store
	s.requests = make(chan snapshotRequest)
	if s.store == nil {
		s.store = newMemorySnapshots()
	}
}

// confChanged records cs, the configuration after the conf change cc was
// applied, for the next snapshot. Ready loop only.
func (s *snapshots) confChanged(cs *raftpb.ConfState, cc *raftpb.ConfChangeV2) {
	s.confState = proto.Clone(cs).(*raftpb.ConfState)
	for _, ch := range cc.GetChanges() {
		if t := ch.GetType(); t == raftpb.ConfChangeAddNode || t == raftpb.ConfChangeAddLearnerNode {
			s.afterAdd = true
			s.adds.Add(1)
		}
	}
}

// markListed records that the stored snapshot includes the first adds
// member additions (it never goes back).
func (s *snapshots) markListed(adds uint64) {
	for {
		cur := s.listed.Load()
		if cur >= adds || s.listed.CompareAndSwap(cur, adds) {
			return
		}
	}
}

// unlisted says whether a member was added after the stored snapshot
// was taken and the snapshot that lists it is not recorded yet.
func (s *snapshots) unlisted() bool { return s.listed.Load() < s.adds.Load() }

// raftStorage is the log storage as raft reads it: while the stored
// snapshot predates a member's addition (snapshots.unlisted), Snapshot
// answers raft.ErrSnapshotTemporarilyUnavailable, and raft retries at
// the next heartbeat response instead of sending a snapshot the new
// member must refuse.
type raftStorage struct {
	LogStorage
	snaps *snapshots
}

// Snapshot is the stored snapshot, unless it does not list a member
// added since.
func (r raftStorage) Snapshot() (*raftpb.Snapshot, error) {
	if r.snaps.unlisted() {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return r.LogStorage.Snapshot()
}

// SubscribeSnapshots returns a subscription to snapshot events, holding up
// to buffer of them (DefaultSubscriptionBuffer if buffer <= 0); events
// that do not fit are dropped and counted, never waited for.
func (n *Node) SubscribeSnapshots(buffer int) *Subscription[SnapshotEvent] {
	return n.snaps.events.Subscribe(buffer)
}

// A node's snapshot data is its own replicated state (membership, proposal
// dedup) followed by the state machine's:
//
//	magic (8) | length of node state (4, big-endian) | node state (MessagePack) | state machine data
var nodeSnapMagic = [8]byte{'C', 'N', 'O', 'D', 'E', 0, 0, 1}

// nodeSnapHeaderLen is the size of the magic and the length.
const nodeSnapHeaderLen = 12

// maxNodeStateBytes bounds the node state a snapshot may declare, so a
// damaged length cannot make the decoder allocate without limit. The
// dedup table at its bounds stays far below it in practice.
const maxNodeStateBytes = 512 << 20

// nodeSnapshotState is the node's part of a snapshot. Field tags are part
// of the snapshot format.
type nodeSnapshotState struct {
	Members []Member      `msgpack:"m"`
	Removed []uint64      `msgpack:"r"`
	Dedup   []dedupRecord `msgpack:"d"`
	// KeepLearner lists the learners the leader does not promote by
	// itself (memberTable.keepLearner); absent in older snapshots.
	KeepLearner []uint64 `msgpack:"kl,omitempty"`
}

// ErrBadSnapshot means snapshot data did not decode or did not verify.
var ErrBadSnapshot = errors.New("bad snapshot")

// encodeNodeState captures the node's replicated state. Called from the
// raft loop, so it sees the state as of the last applied entry.
func (n *Node) encodeNodeState() ([]byte, error) {
	st := n.nodeState()
	return st.encode()
}

// nodeState returns the node's replicated state.
func (n *Node) nodeState() nodeSnapshotState {
	st := nodeSnapshotState{Dedup: n.proposals.dedup.records()}
	n.members.mu.RLock()
	for _, m := range n.members.byID {
		st.Members = append(st.Members, m)
	}
	for id := range n.members.removed {
		st.Removed = append(st.Removed, id)
	}
	for id := range n.members.keepLearner {
		st.KeepLearner = append(st.KeepLearner, id)
	}
	n.members.mu.RUnlock()
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	slices.Sort(st.Removed)
	slices.Sort(st.KeepLearner)
	return st
}

func (st *nodeSnapshotState) encode() ([]byte, error) {
	b, err := msgpack.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("node: encode snapshot state: %w", err)
	}
	return b, nil
}

// readNodeState reads the node's part of snapshot data from r, leaving r
// at the state machine's part.
func readNodeState(r io.Reader) (nodeSnapshotState, error) {
	var hdr [nodeSnapHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nodeSnapshotState{}, fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if [8]byte(hdr[:8]) != nodeSnapMagic {
		return nodeSnapshotState{}, fmt.Errorf("%w: unknown format %x", ErrBadSnapshot, hdr[:8])
	}
	size := binary.BigEndian.Uint32(hdr[8:])
	if size > maxNodeStateBytes {
		return nodeSnapshotState{}, fmt.Errorf("%w: node state of %d bytes exceeds %d", ErrBadSnapshot, size, maxNodeStateBytes)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nodeSnapshotState{}, fmt.Errorf("%w: node state: %w", ErrBadSnapshot, err)
	}
	if err := msgpackcheck.Validate(b, msgpackcheck.DefaultMaxDepth); err != nil {
		return nodeSnapshotState{}, fmt.Errorf("%w: node state: %w", ErrBadSnapshot, err)
	}
	var st nodeSnapshotState
	if err := msgpack.Unmarshal(b, &st); err != nil {
		return nodeSnapshotState{}, fmt.Errorf("%w: node state: %w", ErrBadSnapshot, err)
	}
	if err := checkDedupRecords(st.Dedup); err != nil {
		return nodeSnapshotState{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	for _, m := range st.Members {
		if m.ID == "" {
			return nodeSnapshotState{}, fmt.Errorf("%w: member with no name", ErrBadSnapshot)
		}
	}
	return st, nil
}

// snapshotRecheck is how soon a due snapshot is looked at again while
// the previous one is still being written.
const snapshotRecheck = 50 * time.Millisecond

// snapshotRequest is a call of Node.Snapshot waiting for its snapshot.
type snapshotRequest struct {
	done chan snapshotResult // buffered: answered once, never blocking
}

type snapshotResult struct {
	pos Position
	err error
}

func answerSnapshots(reqs []snapshotRequest, pos Position, err error) {
	for _, r := range reqs {
		r.done <- snapshotResult{pos, err}
	}
}

// ErrCannotSnapshot means the state machine does not implement
// Snapshotter, so the node cannot snapshot.
var ErrCannotSnapshot = errors.New("the state machine cannot snapshot")

// Snapshot takes a snapshot of the state as of the last applied entry now,
// whatever the thresholds, compacts the log behind it as a threshold's
// snapshot does, and returns its position once it is written. If one is
// being written, it waits for it and takes another; if the newest
// snapshot is already at the applied index, it returns that one. ctx
// bounds only the wait.
func (n *Node) Snapshot(ctx context.Context) (Position, error) {
	if n.snaps.snapper == nil {
		return Position{}, fmt.Errorf("node: snapshot: %w", ErrCannotSnapshot)
	}
	req := snapshotRequest{done: make(chan snapshotResult, 1)}
	select {
	case n.snaps.requests <- req:
	case <-ctx.Done():
		return Position{}, fmt.Errorf("node: snapshot: %w: %w", ErrTimeout, ctx.Err())
	case <-n.stopc:
		return Position{}, fmt.Errorf("node: snapshot: %w", ErrStopped)
	}
	select {
	case r := <-req.done:
		if r.err != nil {
			return Position{}, fmt.Errorf("node: snapshot: %w", r.err)
		}
		return r.pos, nil
	case <-ctx.Done():
		return Position{}, fmt.Errorf("node: snapshot: %w: %w", ErrTimeout, ctx.Err())
	case <-n.stopc:
		return Position{}, fmt.Errorf("node: snapshot: %w", ErrStopped)
	}
}

// maybeSnapshot starts a snapshot if one was asked for (Snapshot), enough
// was applied since the last one (and the last one ended long enough ago:
// Config.SnapshotSpacing), or a member was added since (see
// snapshots.afterAdd), and none is being written. Called from the raft
// loop after each Ready: it captures the state there (cheaply: the state
// machine clones copy-on-write) and writes it out on another goroutine.
func (n *Node) maybeSnapshot() {
	asked := len(n.snaps.pending) > 0
	if n.snaps.snapper == nil || (n.cfg.SnapshotThreshold == 0 && !asked) {
		// No snapshot will list an added member: raft may send the
		// stored one, if any, as before.
		n.snaps.markListed(n.snaps.adds.Load())
		return
	}
	applied := n.AppliedIndex()
	// A member's addition, the byte threshold and a call are not spaced
	// out.
	due := asked || n.snaps.afterAdd || (n.cfg.SnapshotThresholdBytes > 0 && n.snaps.bytes >= n.cfg.SnapshotThresholdBytes)
	if !due && n.cfg.SnapshotThreshold > 0 && applied-n.snaps.base >= n.cfg.SnapshotThreshold {
		due = true
		if wait := n.snaps.notBefore.Load() - time.Now().UnixNano(); wait > 0 {
			// Spaced out: come back then, even if nothing is applied
			// meanwhile (the Ready loop selects on snapshots.wake).
			due = false
			if n.snaps.wake == nil {
				n.snaps.wake = time.After(time.Duration(wait))
			}
		}
	}
	if !due {
		return
	}
	if !n.snaps.inFlight.CompareAndSwap(false, true) {
		// One is still being written: look again soon, even if nothing
		// is applied meanwhile, or an idle node would never take the
		// snapshot that came due.
		if n.snaps.wake == nil {
			n.snaps.wake = time.After(snapshotRecheck)
		}
		return
	}
	if asked && applied == n.snaps.index.Load() {
		// The newest snapshot is at the applied index already.
		n.snaps.inFlight.Store(false)
		term, err := n.storage.Term(applied)
		answerSnapshots(n.snaps.pending, Position{applied, term}, err)
		n.snaps.pending = nil
		return
	}
	if applied <= n.snaps.base && !asked {
		n.snaps.inFlight.Store(false)
		return
	}
	waiting := n.snaps.pending
	n.snaps.pending = nil
	// Whatever happens next, wait for another threshold before retrying:
	// a failing disk should not be hit on every Ready.
	n.snaps.base, n.snaps.bytes, n.snaps.afterAdd = applied, 0, false
	adds := n.snaps.adds.Load()
	fail := func(err error) {
		n.snaps.markListed(adds)
		n.snaps.inFlight.Store(false)
		answerSnapshots(waiting, Position{}, err)
	}
	term, err := n.storage.Term(applied)
	if err != nil {
		fail(err)
		n.log.Warn("snapshot skipped: term of applied index", "index", applied, "err", err)
		return
	}
	at := Position{Index: applied, Term: term}
	state, err := n.encodeNodeState()
	if err != nil {
		fail(err)
		n.log.Error("snapshot skipped", "index", applied, "err", err)
		return
	}
	view, err := n.snaps.snapper.Snapshot(at)
	if err != nil {
		fail(fmt.Errorf("state machine: %w", err))
		n.log.Error("snapshot skipped: state machine", "index", applied, "err", err)
		return
	}
	cs := proto.Clone(n.snaps.confState).(*raftpb.ConfState)
	n.wg.Add(1)
	go n.persistSnapshot(at, cs, adds, state, view, waiting)
}

// persistSnapshot writes a captured snapshot, records it in the log
// storage, compacts the log and prunes old snapshots, then answers the
// Snapshot calls waiting for it. adds is snapshots.adds when it was
// captured.
func (n *Node) persistSnapshot(at Position, cs *raftpb.ConfState, adds uint64, state []byte, view StateSnapshot, waiting []snapshotRequest) {
	defer n.wg.Done()
	defer n.snaps.inFlight.Store(false)
	defer n.snaps.markListed(adds)
	start := time.Now()
	var err error
	defer func() {
		// Space the next one by how long this one took, failed or not.
		end := time.Now()
		n.snaps.notBefore.Store(end.Add(time.Duration(n.cfg.SnapshotSpacing) * end.Sub(start)).UnixNano())
		answerSnapshots(waiting, at, err)
	}()
	index, term := at.Index, at.Term
	size, stateSize, err := n.writeSnapshot(index, term, state, view)
	if err != nil {
		n.log.Error("snapshot failed", "index", index, "err", err)
		return
	}
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(term), ConfState: cs}}
	if err = n.storage.SetSnapshot(snap); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			// A newer snapshot from the leader was installed meanwhile.
			n.log.Debug("snapshot superseded", "index", index, "err", err)
			err = fmt.Errorf("superseded by a newer snapshot from the leader: %w", err)
			return
		}
		n.log.Error("snapshot failed: record", "index", index, "err", err)
		return
	}
	n.snaps.index.Store(index)
	if index > n.cfg.SnapshotCatchUpEntries {
		if err := n.storage.Compact(index - n.cfg.SnapshotCatchUpEntries); err != nil {
			n.log.Warn("log compaction failed", "index", index-n.cfg.SnapshotCatchUpEntries, "err", err)
		}
	}
	if err := n.snaps.store.Prune(index, n.cfg.SnapshotRetain); err != nil {
		n.log.Warn("pruning snapshots failed", "err", err)
	}
	d := time.Since(start)
	n.log.Info("snapshot created", "index", index, "term", term, "bytes", size, "took", d)
	n.publishSnapshot(SnapshotEvent{Type: SnapshotCreated, Index: index, Term: term, Bytes: size, StateBytes: stateSize, Duration: d})
}

// writeSnapshot writes a snapshot's data: the node's part (state), then
// the state machine's (view). It returns the size of the whole and of the
// state machine's part.
func (n *Node) writeSnapshot(index, term uint64, state []byte, view StateSnapshot) (size, stateSize int64, err error) {
	defer view.Release()
	sink, err := n.snaps.store.Create(index, term)
	if err != nil {
		return 0, 0, err
	}
	size, err = writeSnapshotData(sink, state, view)
	if err != nil {
		sink.Abort()
		return 0, 0, err
	}
	if err := sink.Commit(); err != nil {
		return 0, 0, err
	}
	return size, size - nodeSnapHeaderLen - int64(len(state)), nil
}

// writeSnapshotData writes snapshot data to w: the header, the node's
// part (state, encoded) and the state machine's (view). It returns the
// bytes written.
func writeSnapshotData(w io.Writer, state []byte, view StateSnapshot) (int64, error) {
	var hdr [nodeSnapHeaderLen]byte
	copy(hdr[:8], nodeSnapMagic[:])
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(state)))
	cw := &countingWriter{w: w}
	if _, err := cw.Write(hdr[:]); err != nil {
		return cw.n, err
	}
	if _, err := cw.Write(state); err != nil {
		return cw.n, err
	}
	if _, err := view.WriteTo(cw); err != nil {
		return cw.n, fmt.Errorf("state machine: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// installSnapshot replaces the node's state with the snapshot meta names,
// whose data must be in the snapshot store. Called from the raft loop
// (after the log storage has recorded the snapshot) and from NewNode.
func (n *Node) installSnapshot(meta *raftpb.SnapshotMetadata) error {
	index, term := meta.GetIndex(), meta.GetTerm()
	if n.snaps.snapper == nil {
		return fmt.Errorf("node: snapshot at index %d, but the state machine cannot restore snapshots", index)
	}
	start := time.Now()
	data, size, err := n.snaps.store.Open(index, term)
	if err != nil {
		return fmt.Errorf("node: open snapshot %d: %w", index, err)
	}
	defer data.Close()
	r := bufio.NewReaderSize(data, 1<<20)
	st, err := readNodeState(r)
	if err != nil {
		return fmt.Errorf("node: snapshot %d: %w", index, err)
	}
	if err := n.snaps.snapper.Restore(Position{Index: index, Term: term}, r); err != nil {
		return fmt.Errorf("node: restore snapshot %d: %w", index, err)
	}
	n.proposals.dedup.restore(st.Dedup)
	n.restoreMembers(st)
	n.snaps.confState = proto.Clone(raftpb.EnsureConfState(meta.GetConfState())).(*raftpb.ConfState)
	// A leader's snapshot past every entry applied here lists every
	// member those added.
	n.snaps.markListed(n.snaps.adds.Load())
	n.snaps.installs.Add(1)
	n.pos.appliedTerm.Store(term)
	n.pos.applied.advance(index)
	n.snaps.base, n.snaps.bytes = index, 0
	n.snaps.index.Store(index)
	if err := n.snaps.store.Prune(index, n.cfg.SnapshotRetain); err != nil {
		n.log.Warn("pruning snapshots failed", "err", err)
	}
	d := time.Since(start)
	n.log.Info("snapshot restored", "index", index, "term", term, "bytes", size, "took", d)
	n.publishSnapshot(SnapshotEvent{Type: SnapshotRestored, Index: index, Term: term, Bytes: size, Duration: d})
	return nil
}

// restoreMembers replaces the membership with a snapshot's and points the
// transport (if started) at the new set of peers.
func (n *Node) restoreMembers(st nodeSnapshotState) {
	n.members.mu.Lock()
	old := n.members.byID
	n.members.byID = make(map[uint64]Member, len(st.Members))
	for _, m := range st.Members {
		id := RaftID(m.ID)
		n.members.byID[id] = m
		n.members.names[id] = m.ID
	}
	n.members.removed = make(map[uint64]struct{}, len(st.Removed))
	for _, id := range st.Removed {
		n.members.removed[id] = struct{}{}
	}
	n.members.keepLearner = make(map[uint64]struct{}, len(st.KeepLearner))
	for _, id := range st.KeepLearner {
		n.members.keepLearner[id] = struct{}{}
	}
	members := n.members.byID
	_, selfRemoved := n.members.removed[n.id]
	n.members.mu.Unlock()
	if selfRemoved {
		n.markSelfRemoved("installed a snapshot taken after its removal")
	}
	if n.transport == nil {
		return // Start registers the members
	}
	for id, m := range members {
		if id != n.id && m.PeerAddr != "" {
			n.transport.AddPeer(id, m.ID, m.PeerAddr)
		}
	}
	for id := range old {
		if _, ok := members[id]; !ok && id != n.id {
			n.transport.RemovePeer(id)
		}
	}
}

// StateMachineData reads the node's part of snapshot data (as a
// SnapshotStore holds it, OpenSnapshot returns it and a leader sends it)
// from r, verifying it, and returns r positioned at the state machine's
// part: the bytes its StateSnapshot wrote, which its Restore reads. A
// program can so read, size or test its own part of a snapshot file.
func StateMachineData(r io.Reader) (io.Reader, error) {
	if _, err := readNodeState(r); err != nil {
		return nil, err
	}
	return r, nil
}

// OpenStateSnapshot returns the state machine's part of this node's
// snapshot at at (see StateMachineData) and its size in bytes.
func (n *Node) OpenStateSnapshot(at Position) (io.ReadCloser, int64, error) {
	data, size, err := n.snaps.store.Open(at.Index, at.Term)
	if err != nil {
		return nil, 0, err
	}
	cr := &countingReader{r: data}
	if _, err := readNodeState(cr); err != nil {
		data.Close()
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{data, data}, size - cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// OpenSnapshot returns the data of this node's snapshot at (index, term),
// node's part and state machine's, for a transport sending it to a
// follower.
func (n *Node) OpenSnapshot(index, term uint64) (io.ReadCloser, int64, error) {
	return n.snaps.store.Open(index, term)
}

// ReceiveSnapshot stores the data of the snapshot m (a MsgSnap from the
// leader, carrying only metadata) announces, read from data, then steps m
// into raft, which installs it. A transport calls it when a snapshot
// stream ends; data must return an error rather than EOF if the stream
// was cut short.
func (n *Node) ReceiveSnapshot(m *raftpb.Message, data io.Reader) error {
	meta := m.GetSnapshot().GetMetadata()
	if m.GetType() != raftpb.MsgSnap || m.GetTo() != n.id || meta.GetIndex() == 0 {
		return fmt.Errorf("node: receive snapshot: %w: not a snapshot message for this node", ErrBadSnapshot)
	}
	sink, err := n.snaps.store.Create(meta.GetIndex(), meta.GetTerm())
	if err != nil {
		return fmt.Errorf("node: receive snapshot %d: %w", meta.GetIndex(), err)
	}
	if _, err := io.Copy(sink, data); err != nil {
		sink.Abort()
		return fmt.Errorf("node: receive snapshot %d: %w", meta.GetIndex(), err)
	}
	if err := sink.Commit(); err != nil {
		return fmt.Errorf("node: receive snapshot %d: %w", meta.GetIndex(), err)
	}
	n.log.Info("snapshot received", "index", meta.GetIndex(), "from", n.nameOf(m.GetFrom()))
	n.Deliver([]*raftpb.Message{m})
	return nil
}
