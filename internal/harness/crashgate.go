package harness

import (
	"errors"
	"sync/atomic"

	"github.com/unrdf/consensus"
	"go.etcd.io/raft/v3/raftpb"
)

// errCrashed is what a node's Save returns once its crash instant has
// passed; the node stops on it.
var errCrashed = errors.New("harness: crashed")

// crashGate is the storage a node sees. It makes a crash atomic: Crash
// closes the gate before it copies the file system, and a Save that
// returns after that, even one that reached the disk before the copy, is
// reported to the node as failed. The node then stops on a fatal storage
// error: it sends, applies and acknowledges nothing on that Save's
// strength. A Save that returned before the gate closed reached the disk
// before the copy, so everything the node did act on survives the crash.
type crashGate struct {
	consensus.LogStorage
	crashed atomic.Bool
	// ids is the underlying storage's cluster id store, if it has one
	// (a WrapStorage wrapper need not pass it on).
	ids consensus.ClusterIDStore
}

// ClusterID implements consensus.ClusterIDStore.
func (g *crashGate) ClusterID() (uint64, error) {
	if g.ids == nil {
		return 0, nil
	}
	return g.ids.ClusterID()
}

// SetClusterID implements consensus.ClusterIDStore.
func (g *crashGate) SetClusterID(id uint64) error {
	if g.ids == nil {
		return nil
	}
	return g.ids.SetClusterID(id)
}

func (g *crashGate) crash() { g.crashed.Store(true) }

// Save implements consensus.LogStorage.
func (g *crashGate) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) error {
	if g.crashed.Load() {
		return errCrashed
	}
	err := g.LogStorage.Save(hs, entries, snap)
	// Sequentially consistent with crash: if the gate was still open
	// here, the copy Crash takes after closing it holds this Save.
	if g.crashed.Load() {
		return errCrashed
	}
	return err
}
