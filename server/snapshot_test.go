package server

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// A follower stopped while more than three snapshot thresholds of writes
// are made (and compacted away) restarts, receives the leader's snapshot
// over the WebSocket transport, and ends with the leader's state.
//
// CONSENSUS_SNAPSHOT_KEYS=100000 makes it a measurement: it writes that
// many keys of 100-byte values (in batches) and logs how long the
// follower took to install the snapshot and catch up.
func TestFollowerCatchesUpBySnapshotOverWebSocket(t *testing.T) {
	keys, batch := 400, 1
	if v := os.Getenv("CONSENSUS_SNAPSHOT_KEYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("CONSENSUS_SNAPSHOT_KEYS=%q", v)
		}
		keys, batch = n, 500
	}
	const threshold = 100
	c := newTestClusterWith(t, 3, func(cfg *consensus.Config) {
		cfg.SnapshotThreshold = threshold
		cfg.SnapshotCatchUpEntries = 20
	})
	leader := c.waitLeader()
	var follower string
	for _, id := range c.ids {
		if id != leader {
			follower = id
			break
		}
	}
	behind := c.servers[follower].Node().AppliedIndex()
	c.stop(follower)

	store := c.servers[leader].Store()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := []byte(`"` + fmt.Sprintf("%098d", 0) + `"`)
	for i := 0; i < keys; i += batch {
		ops := make([]kv.Op, 0, batch)
		for j := i; j < min(i+batch, keys); j++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("key/%07d", j), Value: value})
		}
		if _, err := store.Batch(ctx, ops); err != nil {
			t.Fatalf("batch at %d: %v", i, err)
		}
	}
	leaderNode := c.servers[leader].Node()
	// The entries the follower needs are compacted away: only a snapshot
	// can bring it back.
	testwait.For(t, 30*time.Second, "the leader's log compacted past the stopped follower", func() bool {
		first, err := c.servers[leader].storage.FirstIndex()
		return err == nil && first > behind+1
	})

	start := time.Now()
	c.start(follower)
	fnode := c.servers[follower].Node()
	testwait.For(t, 2*time.Minute, "the restarted follower applied as far as the leader", func() bool { return fnode.AppliedIndex() >= leaderNode.AppliedIndex() })
	caughtUp := time.Since(start)
	if si := fnode.Status().SnapshotIndex; si == 0 {
		t.Fatal("the follower caught up without installing a snapshot")
	}
	t.Logf("%d keys: follower restarted and caught up by snapshot (index %d) in %v",
		keys, fnode.Status().SnapshotIndex, caughtUp)

	want, wantRev, err := store.List(ctx, "", kv.Local)
	if err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := c.servers[follower].Store().List(ctx, "", kv.Local)
	if err != nil {
		t.Fatal(err)
	}
	if gotRev != wantRev || len(got) != keys || !reflect.DeepEqual(got, want) {
		t.Fatalf("follower has %d keys at revision %d, leader %d at %d (equal: %v)",
			len(got), gotRev, len(want), wantRev, reflect.DeepEqual(got, want))
	}
}
