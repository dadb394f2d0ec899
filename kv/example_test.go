package kv_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
	"go.etcd.io/raft/v3/raftpb"
)

// alone is the Transport of a one-node cluster: there is nobody to send
// to. A cluster of several nodes uses transport.WebSocket.
type alone struct{}

func (alone) Send([]*raftpb.Message)         {}
func (alone) AddPeer(uint64, string, string) {}
func (alone) RemovePeer(uint64)              {}
func (alone) ConnectedPeers() []uint64       { return nil }
func (alone) Close() error                   { return nil }

// The replicated key-value store over a one-node cluster in memory: the
// Machine is the node's StateMachine, the Store is what callers use.
func ExampleStore() {
	machine := kv.NewMachine()
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "in-process"}
	node, err := consensus.NewNode(cfg, storage.NewMemory(), machine)
	if err != nil {
		fmt.Println(err)
		return
	}
	node.Start(alone{})
	defer node.Stop()
	store := kv.NewStore(node, machine)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := awaitLeader(ctx, node); err != nil {
		fmt.Println(err)
		return
	}

	// Writes go through raft and return the cluster-wide revision they
	// were given.
	rev, err := store.Put(ctx, "workflow:42", []byte(`{"status": "running"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("put at revision", rev)

	// A conditional write: only if the key is still at that revision.
	if _, err := store.PutIf(ctx, "workflow:42", []byte(`{"status":"done"}`), kv.IfRevision(rev)); err != nil {
		fmt.Println(err)
		return
	}
	_, err = store.PutIf(ctx, "workflow:42", []byte(`{"status":"failed"}`), kv.IfRevision(rev))
	fmt.Println("stale write refused:", errors.Is(err, kv.ErrConflict))

	// Reads are linearizable unless kv.Local is asked for.
	item, err := store.Get(ctx, "workflow:42", kv.Linearizable)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s = %s (revision %d, version %d)\n", item.Key, item.Value, item.Revision, item.Version)
	_, err = store.Get(ctx, "workflow:43", kv.Linearizable)
	fmt.Println("missing key:", errors.Is(err, kv.ErrKeyNotFound))
	// Output:
	// put at revision 1
	// stale write refused: true
	// workflow:42 = {"status":"done"} (revision 2, version 2)
	// missing key: true
}

// awaitLeader returns once node knows a leader. A call made while there is
// none waits for one for up to an election timeout, then fails with
// consensus.ErrNoLeader, which is safe to retry; a node that just started
// is still electing one.
func awaitLeader(ctx context.Context, node *consensus.Node) error {
	for {
		err := node.LinearizableRead(ctx)
		if !errors.Is(err, consensus.ErrNoLeader) || ctx.Err() != nil {
			return err
		}
	}
}
