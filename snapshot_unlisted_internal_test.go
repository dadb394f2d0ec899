package consensus

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// memoryLog is a LogStorage over raft's MemoryStorage, for tests of what
// raft reads through raftStorage.
type memoryLog struct{ *raft.MemoryStorage }

func (m memoryLog) Save(*raftpb.HardState, []*raftpb.Entry, *raftpb.Snapshot) error { return nil }
func (m memoryLog) SetSnapshot(*raftpb.Snapshot) error                              { return nil }
func (m memoryLog) Close() error                                                    { return nil }

// TestRaftStorageWithholdsSnapshotNotListingAddedMember: once a conf
// change adding a member is applied, raft gets no snapshot (it retries
// later) until one captured after the addition ends, or one from a leader
// is installed; the stored snapshot, which does not list the new member,
// would be refused by it after the whole transfer.
func TestRaftStorageWithholdsSnapshotNotListingAddedMember(t *testing.T) {
	ms := raft.NewMemoryStorage()
	old := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(10), Term: proto.Uint64(1),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := ms.ApplySnapshot(old); err != nil {
		t.Fatal(err)
	}
	var s snapshots
	rs := raftStorage{LogStorage: memoryLog{ms}, snaps: &s}
	available := func(want bool) {
		t.Helper()
		snap, err := rs.Snapshot()
		if want && (err != nil || snap.GetMetadata().GetIndex() != 10) {
			t.Fatalf("snapshot withheld: %v %v", snap, err)
		}
		if !want && !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
			t.Fatalf("snapshot not withheld: %v %v", snap, err)
		}
	}
	available(true)

	addLearner := func() *raftpb.ConfChangeV2 {
		return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(4)}}}
	}
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	// Neither a removal nor a promotion withholds it.
	s.confChanged(cs, &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(5)}}})
	available(true)

	s.confChanged(cs, addLearner())
	available(false)
	captured := s.adds.Load()
	// A snapshot captured before the addition ends: still withheld.
	s.markListed(captured - 1)
	available(false)
	// The one captured after it ends, recorded or failed: sent again.
	s.markListed(captured)
	available(true)

	// Another addition, then a leader's snapshot installed.
	s.confChanged(cs, addLearner())
	available(false)
	s.markListed(s.adds.Load())
	available(true)
	// listed never goes back.
	s.markListed(0)
	available(true)
}
