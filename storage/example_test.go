package storage_test

import (
	"errors"
	"fmt"

	"github.com/unrdf/consensus/storage"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func entry(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Data: []byte("cmd")}
}

// A node's state after it snapshotted its applied state at index 5 and
// compacted its log up to index 3, keeping entries 4 to 7 for followers
// a little behind.
func ExampleNewMemoryFrom() {
	m, err := storage.NewMemoryFrom(storage.MemoryState{
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(5), Term: proto.Uint64(2),
			ConfState: &raftpb.ConfState{Voters: []uint64{1}},
		}},
		LogStart:  &storage.LogPosition{Index: 3, Term: 1},
		Entries:   []*raftpb.Entry{entry(4, 1), entry(5, 2), entry(6, 2), entry(7, 3)},
		HardState: &raftpb.HardState{Term: proto.Uint64(3), Vote: proto.Uint64(1), Commit: proto.Uint64(7)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	first, _ := m.FirstIndex()
	last, _ := m.LastIndex()
	snap, _ := m.Snapshot()
	fmt.Printf("log %d..%d, snapshot at %d\n", first, last, snap.GetMetadata().GetIndex())

	// A state no raft node could have stored is refused, never a panic.
	_, err = storage.NewMemoryFrom(storage.MemoryState{
		Entries:   []*raftpb.Entry{entry(1, 2), entry(2, 1)},
		HardState: &raftpb.HardState{Term: proto.Uint64(2), Commit: proto.Uint64(1)},
	})
	var se *storage.StateError
	if errors.As(err, &se) {
		fmt.Printf("refused: %s at index %d\n", se.Problem, se.Index)
	}
	// Output:
	// log 4..7, snapshot at 5
	// refused: term goes back at index 2
}
