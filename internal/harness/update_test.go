package harness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/kv"
)

// TestClusterUpdateCounter: 16 goroutines, spread over the 3 nodes of a
// cluster, each Update one counter 200 times: 3200 read-modify-writes that
// contend on one key, and the counter ends at exactly 3200 on every node.
func TestClusterUpdateCounter(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 1, Storage: harness.MemoryStorage})
	mustLeader(t, c)
	const workers, each = 16, 200
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	names := c.Names()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var calls sync.Map
	for w := range workers {
		store := c.Client(names[w%len(names)])
		wg.Go(func() {
			n := 0
			for range each {
				_, err := store.Update(ctx, "counter", func(cur kv.Item, exists bool) ([]byte, error) {
					n++
					v := 0
					if exists {
						if err := json.Unmarshal(cur.Value, &v); err != nil {
							return nil, err
						}
					}
					return []byte(strconv.Itoa(v + 1)), nil
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
			calls.Store(w, n)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	calls.Range(func(_, n any) bool { total += n.(int); return true })
	t.Logf("fn ran %d times for %d updates", total, workers*each)
	s := c.AssertSameState(10 * time.Second)
	if !hasItem(s, "counter", strconv.Itoa(workers*each)) {
		t.Fatalf("counter after %d updates: %+v", workers*each, s.Items)
	}
}

// TestRequestIDAppliedOnceAcrossNodesAndLeaders retries one request id on
// another node, and again after the leader crashed: the write is applied
// once and every retry gets its result.
func TestRequestIDAppliedOnceAcrossNodesAndLeaders(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 2, Storage: harness.MemoryStorage})
	leader := mustLeader(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := kv.WithRequestID(ctx, kv.RequestID{Client: "app-1", Seq: 1})
	rev, err := c.Client(leader).Put(id, "k", []byte(`"first"`))
	if err != nil {
		t.Fatal(err)
	}
	follower := others(c, leader)[0]
	again, err := c.Client(follower).Put(id, "k", []byte(`"retry"`))
	if err != nil || again != rev {
		t.Fatalf("retry on %s: %d, %v; want revision %d", follower, again, err, rev)
	}
	if err := c.Crash(leader); err != nil {
		t.Fatal(err)
	}
	mustLeader(t, c, others(c, leader)...)
	again, err = c.Client(follower).Put(id, "k", []byte(`"after failover"`))
	if err != nil || again != rev {
		t.Fatalf("retry after the leader crashed: %d, %v; want revision %d", again, err, rev)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	s := c.AssertSameState(10 * time.Second)
	if !hasItem(s, "k", `"first"`) || s.Revision != rev {
		t.Fatalf("state after retries: %+v", s)
	}
	// The session tables agree too: every node's snapshot is the same
	// bytes (the restarted one rebuilt its table by replaying the log).
	var first []byte
	for _, name := range c.Names() {
		snap, err := c.Client(name).Machine().Snapshot(consensus.Position{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := snap.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		if first == nil {
			first = buf.Bytes()
		} else if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("%s's snapshot differs from %s's", name, c.Names()[0])
		}
	}
}
