package harness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

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
