package consensus_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/storage"
	"go.etcd.io/raft/v3/raftpb"
)

// counter is a tiny StateMachine: each command is a decimal number that
// it adds to a running total. Apply is deterministic and answers bad input
// with an error result, never a panic, as the StateMachine contract asks.
type counter struct {
	mu    sync.Mutex
	total int
}

func (c *counter) Apply(_ uint64, cmd []byte) any {
	n, err := strconv.Atoi(string(cmd))
	if err != nil {
		return fmt.Errorf("not a number: %q", cmd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += n
	return c.total
}

// Total reads the state; call it after Node.LinearizableRead for a
// linearizable read.
func (c *counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// alone is the Transport of a one-node cluster: there is nobody to send
// to. A cluster of several nodes uses transport.WebSocket.
type alone struct{}

func (alone) Send([]*raftpb.Message)         {}
func (alone) AddPeer(uint64, string, string) {}
func (alone) RemovePeer(uint64)              {}
func (alone) ConnectedPeers() []uint64       { return nil }
func (alone) Close() error                   { return nil }

// A one-node cluster over in-memory storage: start it, wait for it to
// elect itself, propose commands and read the state linearizably.
func Example() {
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "in-process"} // bootstrap a cluster of one
	sm := &counter{}
	node, err := consensus.NewNode(cfg, storage.NewMemory(), sm)
	if err != nil {
		fmt.Println(err)
		return
	}
	events := node.Events().Subscribe(consensus.DefaultSubscriptionBuffer)
	defer events.Close()
	node.Start(alone{})
	defer node.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait for the node to elect itself. (A Propose made sooner waits for
	// a leader for up to one election timeout, then fails with
	// ErrNoLeader, which is safe to retry.)
elected:
	for {
		select {
		case ev := <-events.C():
			if ev.Type == consensus.EventLeaderElected {
				fmt.Println("leader elected:", ev.LeaderID)
				break elected
			}
		case <-ctx.Done():
			fmt.Println("no leader:", ctx.Err())
			return
		}
	}

	// Propose returns once the command is committed and applied, with
	// what Apply returned for it.
	for _, cmd := range []string{"2", "3", "two"} {
		result, err := node.Propose(ctx, []byte(cmd))
		if err != nil {
			fmt.Println("propose:", err) // not applied, or outcome unknown
			return
		}
		fmt.Printf("propose %s: %v\n", cmd, result)
	}

	if err := node.LinearizableRead(ctx); err != nil {
		fmt.Println("read:", err)
		return
	}
	fmt.Println("total:", sm.Total())

	st := node.Status()
	fmt.Println("leader:", st.LeaderID, "members:", len(st.Members))
	// Output:
	// leader elected: n1
	// propose 2: 2
	// propose 3: 5
	// propose two: not a number: "two"
	// total: 5
	// leader: n1 members: 1
}
