package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// largeValue returns a JSON string of exactly size bytes, its letters
// depending on i, so that values differ.
func largeValue(i, size int) []byte {
	v := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
	v[0], v[size-1] = '"', '"'
	return v
}

// Values of the largest default size (1 MiB: kv.DefaultMaxValueBytes,
// equal to the default body limit) go through HTTP and /v1/ws, are kept
// through snapshots every few entries, and reach a follower that was down
// while they were written (it restarts and catches up by snapshot) and a
// member that joins afterwards (also by snapshot): each has every value
// byte for byte. One byte more is 413 too_large over HTTP and
// too_large over /v1/ws, and nothing is written.
func TestLargeValuesThroughSnapshotAndCatchUp(t *testing.T) {
	const (
		values    = 20
		size      = kv.DefaultMaxValueBytes
		threshold = 5
	)
	c := newTestClusterWith(t, 3, func(cfg *consensus.Config) {
		cfg.SnapshotThreshold = threshold
		cfg.SnapshotCatchUpEntries = 2
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

	base := "http://" + c.servers[leader].HTTPAddr()
	cl, err := client.New(client.Config{Endpoints: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range values {
		key := fmt.Sprintf("big/%02d", i)
		if i%2 == 0 { // HTTP
			if r := call(t, http.MethodPut, base+"/v1/kv/"+key, largeValue(i, size)); r.status != http.StatusOK {
				t.Fatalf("PUT %s: %d %s", key, r.status, r.body)
			}
			continue
		}
		if _, err := cl.Put(ctx, key, largeValue(i, size)); err != nil { // /v1/ws
			t.Fatalf("client Put %s: %v", key, err)
		}
	}

	// One byte over the limit, both ways.
	tooBig := largeValue(0, size+1)
	r := call(t, http.MethodPut, base+"/v1/kv/big/over", tooBig)
	if code, _ := checkErrorBody(r.body); r.status != http.StatusRequestEntityTooLarge || code != api.CodeTooLarge {
		t.Fatalf("PUT of %d bytes: %d %s", len(tooBig), r.status, r.body)
	}
	if _, err := cl.Put(ctx, "big/over", tooBig); !errors.Is(err, kv.ErrValueTooLarge) && !errors.Is(err, consensus.ErrTooLarge) {
		t.Fatalf("client Put of %d bytes: %v", len(tooBig), err)
	}

	leaderServer := c.servers[leader]
	testwait.For(t, 30*time.Second, "the leader's log compacted past the stopped follower", func() bool {
		first, err := leaderServer.storage.FirstIndex()
		return err == nil && first > behind+1
	})
	c.start(follower)
	fnode, lnode := c.servers[follower].Node(), leaderServer.Node()
	testwait.For(t, time.Minute, "the restarted follower applied as far as the leader", func() bool {
		return fnode.AppliedIndex() >= lnode.AppliedIndex()
	})
	if fnode.Status().SnapshotIndex == 0 {
		t.Fatal("the follower caught up without installing a snapshot")
	}
	hasEveryValue(ctx, t, follower, c.servers[follower].Store(), values, size)

	// A new member joins: the leader's log starts after the values, so it
	// too gets them by snapshot.
	c.startJoining("n4", leaderServer.HTTPAddr())
	n4 := c.servers["n4"].Node()
	testwait.For(t, time.Minute, "the new member n4 applied as far as the leader", func() bool {
		return n4.AppliedIndex() >= lnode.AppliedIndex()
	})
	if n4.Status().SnapshotIndex == 0 {
		t.Fatal("n4 caught up without installing a snapshot")
	}
	hasEveryValue(ctx, t, "n4", c.servers["n4"].Store(), values, size)
}

// hasEveryValue checks that store holds the values of
// TestLargeValuesThroughSnapshotAndCatchUp byte for byte, and not the one
// that was refused.
func hasEveryValue(ctx context.Context, t *testing.T, node string, store *kv.Store, values, size int) {
	t.Helper()
	for i := range values {
		key := fmt.Sprintf("big/%02d", i)
		item, err := store.Get(ctx, key, kv.Local)
		if err != nil {
			t.Fatalf("%s: %s: %v", node, key, err)
		}
		if !bytes.Equal(item.Value, largeValue(i, size)) {
			t.Fatalf("%s: %s has %d bytes starting %q, want the %d written", node, key, len(item.Value), item.Value[:min(8, len(item.Value))], size)
		}
	}
	if _, err := store.Get(ctx, "big/over", kv.Local); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Fatalf("%s: big/over: %v", node, err)
	}
}
