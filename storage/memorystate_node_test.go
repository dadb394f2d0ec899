package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
	"go.etcd.io/raft/v3/raftpb"
)

// alone is the Transport of a one-node cluster.
type alone struct{}

func (alone) Send([]*raftpb.Message)         {}
func (alone) AddPeer(uint64, string, string) {}
func (alone) RemovePeer(uint64)              {}
func (alone) ConnectedPeers() []uint64       { return nil }
func (alone) Close() error                   { return nil }

// stateOf reads everything m holds into a MemoryState.
func stateOf(t *testing.T, m *storage.Memory) storage.MemoryState {
	t.Helper()
	hs, _, err := m.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := m.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	startTerm, err := m.Term(first - 1)
	if err != nil {
		t.Fatal(err)
	}
	var entries []*raftpb.Entry
	if last >= first {
		if entries, err = m.Entries(first, last+1, math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	}
	id, err := m.ClusterID()
	if err != nil {
		t.Fatal(err)
	}
	return storage.MemoryState{
		Snapshot:  snap,
		LogStart:  &storage.LogPosition{Index: first - 1, Term: startTerm},
		Entries:   entries,
		HardState: hs,
		ClusterID: id,
	}
}

// TestNewMemoryFromRestartsNode stops a node that snapshotted and
// compacted its log (keeping entries below the snapshot), rebuilds its
// storage with NewMemoryFrom from what the old one holds, and starts a
// new node on it: the new node restores the snapshot, replays the log
// after it, has every write, and goes on taking writes.
func TestNewMemoryFromRestartsNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snaps, err := storage.OpenSnapshotDir(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "in-process"}
	cfg.Snapshots = snaps
	cfg.SnapshotThreshold = 4
	cfg.SnapshotSpacing = 0
	cfg.SnapshotCatchUpEntries = 2

	const keys = 10
	old := storage.NewMemory()
	machine := kv.NewMachine()
	node, err := consensus.NewNode(cfg, old, machine)
	if err != nil {
		t.Fatal(err)
	}
	snapEvents := node.SubscribeSnapshots(64)
	defer snapEvents.Close()
	node.Start(alone{})
	stopped := false
	defer func() {
		if !stopped {
			node.Stop()
		}
	}()
	store := kv.NewStore(node, machine)
	for i := range keys {
		if err := putRetrying(ctx, store, fmt.Sprintf("k%02d", i), fmt.Sprintf("%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for a snapshot far enough in to have compacted the log.
	for compacted := false; !compacted; {
		select {
		case ev := <-snapEvents.C():
			compacted = ev.Type == consensus.SnapshotCreated && ev.Index > cfg.SnapshotCatchUpEntries+1
		case <-ctx.Done():
			t.Fatal("no snapshot taken")
		}
	}
	node.Stop()
	stopped = true

	st := stateOf(t, old)
	snapIndex := st.Snapshot.GetMetadata().GetIndex()
	if st.LogStart.Index == 0 || st.LogStart.Index >= snapIndex {
		t.Fatalf("want a log compacted below its snapshot; log start %d, snapshot %d", st.LogStart.Index, snapIndex)
	}
	t.Logf("rebuilding: log start %d, snapshot %d, last %d, commit %d",
		st.LogStart.Index, snapIndex, st.Entries[len(st.Entries)-1].GetIndex(), st.HardState.GetCommit())
	rebuilt, err := storage.NewMemoryFrom(st)
	if err != nil {
		t.Fatal(err)
	}

	machine2 := kv.NewMachine()
	node2, err := consensus.NewNode(cfg, rebuilt, machine2)
	if err != nil {
		t.Fatal(err)
	}
	node2.Start(alone{})
	defer node2.Stop()
	if _, ok, err := node2.RecoveredMembers(ctx); !ok || err != nil {
		t.Fatalf("RecoveredMembers: ok %v, err %v; want a restarted node", ok, err)
	}
	store2 := kv.NewStore(node2, machine2)
	for i := range keys {
		key := fmt.Sprintf("k%02d", i)
		item, err := store2.Get(ctx, key, kv.Local)
		if err != nil || string(item.Value) != fmt.Sprintf("%d", i) {
			t.Fatalf("after the rebuild, %s = %q, %v; want %d", key, item.Value, err, i)
		}
	}
	if err := putRetrying(ctx, store2, "after", "1"); err != nil {
		t.Fatalf("write after the rebuild: %v", err)
	}
}

// putRetrying puts key, retrying while the new node has no leader yet.
func putRetrying(ctx context.Context, store *kv.Store, key, value string) error {
	for {
		_, err := store.Put(ctx, key, []byte(value))
		if err == nil || ctx.Err() != nil || !errors.Is(err, consensus.ErrNoLeader) {
			return err
		}
	}
}
