package consensus

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Recovering from a lost quorum (`consensus recover`): when a majority of
// the members is gone for good, the survivors cannot elect a leader. An
// operator rewrites one survivor's data directory into a one-member
// cluster: ReadRecovery reads what that node's storage holds, offline,
// and WriteSnapshot writes the snapshot the new directory starts from
// (package storage's WriteSeed writes the rest).

// ErrNothingToRecover means the storage given to ReadRecovery holds no
// committed state: there is nothing to keep.
var ErrNothingToRecover = errors.New("no committed state to recover")

// ErrNotAMember means the node whose storage ReadRecovery read is not a
// member of its cluster as of its commit index (never was, or removed).
var ErrNotAMember = errors.New("not a member of its cluster")

// Recovery is what one node's storage holds, read offline: the state as
// of its commit index, which a recovered node keeps, and the entries past
// it, which it drops. Close it when done.
type Recovery struct {
	// ClusterID is the id of the cluster the storage belongs to (0 if the
	// storage keeps none).
	ClusterID uint64
	// Commit is the commit index the hard state records and the term of
	// the entry there.
	Commit Position
	// Start is the position the recovered node starts from: Commit, or
	// Last once KeepTail applied the tail.
	Start Position
	// Term and Vote are the hard state's.
	Term, Vote uint64
	// Last is the position of the last entry in the log.
	Last Position
	// Snapshot is the index of the newest snapshot the node had taken or
	// installed.
	Snapshot uint64
	// Members are the cluster's members as of Start, sorted by name.
	Members []Member
	// Tail holds the entries past Commit, in log order: raft does not
	// know them to be committed on this node, so a recovered node drops
	// them, unless KeepTail applied them.
	Tail []TailEntry
	// TailKept is set once KeepTail applied the tail.
	TailKept bool

	node *Node
}

// TailEntry is one log entry past the commit index.
type TailEntry struct {
	Index, Term uint64
	// Command is the state machine's command of a normal entry the node
	// proposed (nil for an empty entry, a membership change, or data in
	// an unknown format).
	Command []byte
	// Change describes a membership change ("add n4 (learner)"), empty
	// for other entries.
	Change string
	// Unknown is set for a normal entry whose data is in no format this
	// build knows.
	Unknown bool
}

// ReadRecovery reads the node cfg.ID's storage offline: it restores sm
// from the newest snapshot and applies every committed entry to it, as a
// restarting node would, but runs no raft loop, sends nothing and writes
// nothing to storage or to cfg.Snapshots (it only reads them; the
// caller should still give it a copy of a data directory, since a store
// may write when it opens). sm must be a Snapshotter. The entries past the
// commit index are read, not applied.
//
// Errors: ErrNothingToRecover for storage with nothing committed,
// ErrNotAMember if cfg.ID is not a member as of the commit index, and
// storage or snapshot errors as NewNode gives them.
func ReadRecovery(cfg Config, st LogStorage, sm StateMachine) (*Recovery, error) {
	if _, ok := sm.(Snapshotter); !ok {
		return nil, fmt.Errorf("node: recover: %w", ErrCannotSnapshot)
	}
	hs, _, err := st.InitialState()
	if err != nil {
		return nil, fmt.Errorf("node: recover: read hard state: %w", err)
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("node: recover: read last index: %w", err)
	}
	commit := hs.GetCommit()
	if commit == 0 {
		return nil, fmt.Errorf("node: recover: %w (commit index 0)", ErrNothingToRecover)
	}
	// Snapshots are neither taken nor needed: only read.
	cfg.SnapshotThreshold, cfg.SnapshotThresholdBytes = 0, 0
	cfg.Join, cfg.Peers = false, map[string]string{cfg.ID: "offline"}
	n, err := NewNode(cfg, st, sm)
	if err != nil {
		return nil, err
	}
	r := &Recovery{ClusterID: n.clusterID, Term: hs.GetTerm(), Vote: hs.GetVote(), Snapshot: n.snaps.index.Load(), node: n}
	if err := r.replay(commit); err != nil {
		r.Close()
		return nil, err
	}
	r.Members = n.Members()
	if _, err := n.Member(cfg.ID); err != nil || n.membership.selfRemoved.Load() {
		r.Close()
		return nil, fmt.Errorf("node: recover: %s: %w", cfg.ID, ErrNotAMember)
	}
	commitTerm, err := st.Term(commit)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("node: recover: term of commit index %d: %w", commit, err)
	}
	lastTerm, err := st.Term(last)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("node: recover: term of last index %d: %w", last, err)
	}
	r.Commit, r.Last = Position{commit, commitTerm}, Position{last, lastTerm}
	r.Start = r.Commit
	if last > commit {
		ents, err := st.Entries(commit+1, last+1, math.MaxUint64)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("node: recover: read entries %d-%d: %w", commit+1, last, err)
		}
		for _, e := range ents {
			r.Tail = append(r.Tail, describeTailEntry(e))
		}
	}
	return r, nil
}

// replay applies the committed entries raft hands a restarted node, up
// to commit, without persisting or sending anything: with no tick and no
// message stepped in, raft's Ready holds only those entries.
func (r *Recovery) replay(commit uint64) error {
	n := r.node
	for n.AppliedIndex() < commit {
		rd, ok := n.raft.ready()
		if !ok || len(rd.CommittedEntries) == 0 {
			return fmt.Errorf("node: recover: raft offers no committed entry past %d (commit index %d)", n.AppliedIndex(), commit)
		}
		if err := n.applyEntries(rd.CommittedEntries); err != nil {
			return fmt.Errorf("node: recover: %w", err)
		}
		n.raft.advance(rd)
	}
	return nil
}

// KeepTail applies the entries past the commit index to the state
// machine as if they were committed, and moves Start to Last, so the
// recovered node keeps every entry this node has, as raft itself would
// had this node won an election. The commit index a node stores is
// written without a sync (a raft hard state that only advances it need
// not be durable), so a node that crashed may have applied, and its
// leader acknowledged, entries past the commit index it recovers with;
// on the other hand the tail may hold entries that were never committed,
// whose proposers were not told they succeeded. Call it before
// WriteSnapshot, at most once.
func (r *Recovery) KeepTail() error {
	if r.TailKept || r.Last.Index == r.Commit.Index {
		r.TailKept = true
		return nil
	}
	n := r.node
	ents, err := n.storage.Entries(r.Commit.Index+1, r.Last.Index+1, math.MaxUint64)
	if err != nil {
		return fmt.Errorf("node: recover: read entries %d-%d: %w", r.Commit.Index+1, r.Last.Index, err)
	}
	if err := n.applyEntries(ents); err != nil {
		return fmt.Errorf("node: recover: %w", err)
	}
	if _, err := n.Member(n.cfg.ID); err != nil || n.membership.selfRemoved.Load() {
		return fmt.Errorf("node: recover: %s is removed by an entry past the commit index: %w", n.cfg.ID, ErrNotAMember)
	}
	r.Members = n.Members()
	r.Start, r.TailKept = r.Last, true
	return nil
}

// describeTailEntry classifies e for a report.
func describeTailEntry(e *raftpb.Entry) TailEntry {
	te := TailEntry{Index: e.GetIndex(), Term: e.GetTerm()}
	switch e.GetType() {
	case raftpb.EntryNormal:
		if len(e.GetData()) == 0 {
			return te
		}
		if _, _, cmd, ok := decodeEntry(e.GetData()); ok {
			te.Command = cmd
		} else {
			te.Unknown = true
		}
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if proto.Unmarshal(e.GetData(), &cc) != nil {
			te.Change = "membership change (undecodable)"
		} else {
			te.Change = describeConfChange(cc.AsV2())
		}
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if proto.Unmarshal(e.GetData(), &cc) != nil {
			te.Change = "membership change (undecodable)"
		} else {
			te.Change = describeConfChange(&cc)
		}
	}
	return te
}

// describeConfChange names a conf change's changes by member name where
// its context carries one: "add n4 (learner), remove n2".
func describeConfChange(cc *raftpb.ConfChangeV2) string {
	names := map[uint64]string{}
	for _, mc := range decodeConfContext(cc.GetContext()).Members {
		names[RaftID(mc.Name)] = mc.Name
	}
	if len(cc.GetChanges()) == 0 {
		return "leave joint configuration"
	}
	var parts []string
	for _, ch := range cc.GetChanges() {
		name, ok := names[ch.GetNodeId()]
		if !ok {
			name = fmt.Sprintf("%x", ch.GetNodeId())
		}
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode:
			parts = append(parts, "add "+name)
		case raftpb.ConfChangeAddLearnerNode:
			parts = append(parts, "add "+name+" (learner)")
		case raftpb.ConfChangeRemoveNode:
			parts = append(parts, "remove "+name)
		case raftpb.ConfChangeUpdateNode:
			parts = append(parts, "update "+name)
		}
	}
	return "membership: " + strings.Join(parts, ", ")
}

// WriteSnapshot writes to w the data of the snapshot a recovered node
// starts from: the state as of Start, with self as the only member (a
// voter) and the rest of the node's replicated state (removed ids, the
// proposal dedup table) kept. self.ID must be the node's id. It returns
// the bytes written. Call it at most once.
func (r *Recovery) WriteSnapshot(w io.Writer, self Member) (int64, error) {
	n := r.node
	if self.ID != n.cfg.ID || self.PeerAddr == "" {
		return 0, fmt.Errorf("node: recover: member %q at %q: %w", self.ID, self.PeerAddr, ErrInvalidMember)
	}
	self.Voter = true
	st := n.nodeState()
	st.Members = []Member{self}
	b, err := st.encode()
	if err != nil {
		return 0, fmt.Errorf("node: recover: %w", err)
	}
	view, err := n.snaps.snapper.Snapshot(r.Start)
	if err != nil {
		return 0, fmt.Errorf("node: recover: state machine: %w", err)
	}
	defer view.Release()
	size, err := writeSnapshotData(w, b, view)
	if err != nil {
		return size, fmt.Errorf("node: recover: %w", err)
	}
	return size, nil
}

// RecoveryConfState is the raft configuration of a node recovered as
// the only member of a new cluster: itself, a voter.
func RecoveryConfState(id string) *raftpb.ConfState {
	return &raftpb.ConfState{Voters: []uint64{RaftID(id)}}
}

// Close releases what ReadRecovery holds (the node it read through; not
// the storage, which the caller owns).
func (r *Recovery) Close() {
	r.node.Stop()
}
