package harness_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/harness"
)

// TestClusterCrashDurability: a 3-node cluster on crash-able Pebble
// storage takes writes from concurrent clients while nodes crash at
// random moments, losing whatever they had not synced (the leader too,
// and finally all three at once), and restart. Every acknowledged write
// must be on every node afterwards, with its value.
func TestClusterCrashDurability(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			testClusterCrashDurability(t, seed)
		})
	}
}

// ackedWrites records the writes clients saw acknowledged.
type ackedWrites struct {
	mu    sync.Mutex
	vals  map[string]string
	count atomic.Int64
}

func (a *ackedWrites) add(key, value string) {
	a.mu.Lock()
	a.vals[key] = value
	a.mu.Unlock()
	a.count.Add(1)
}

// waitAcks waits until n more writes are acknowledged after from.
func (a *ackedWrites) waitAcks(t *testing.T, seed uint64, from int64, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for a.count.Load() < from+int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: %d writes acknowledged in 20s, waiting for %d", seed, a.count.Load()-from, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testClusterCrashDurability(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x637261))
	t.Logf("seed %d (replay: go test -race -run 'TestClusterCrashDurability/seed=%d' ./internal/harness/)", seed, seed)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: seed, Storage: harness.CrashablePebble})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	acked := &ackedWrites{vals: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				running := c.RunningNames()
				if len(running) == 0 {
					backOff()
					continue
				}
				node := running[wrng.IntN(len(running))]
				key, value := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`"v%d-%d"`, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := c.Client(node).Put(ctx, key, []byte(value))
				cancel()
				if err == nil {
					acked.add(key, value)
				} else {
					backOff()
				}
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	crashes := 0
	crash := func(name string) {
		t.Helper()
		if err := c.Crash(name); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		crashes++
	}
	restart := func(name string) {
		t.Helper()
		if err := c.Restart(name); err != nil {
			t.Fatalf("seed %d: restart %s after its crash: %v", seed, name, err)
		}
	}
	names := c.Names()
	for round := range 4 {
		acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(60))
		victim := names[rng.IntN(len(names))]
		if round%2 == 1 {
			if l := c.Leader(); l != "" {
				victim = l
			}
		}
		crash(victim)
		acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(40))
		restart(victim)
	}
	// Then all of them, while writes are in flight.
	acked.waitAcks(t, seed, acked.count.Load(), 5+rng.IntN(60))
	for _, name := range names {
		crash(name)
	}
	for _, name := range names {
		restart(name)
	}
	acked.waitAcks(t, seed, acked.count.Load(), 10)
	close(stop)
	wg.Wait()

	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	s := c.AssertSameState(20 * time.Second)
	have := map[string]string{}
	for _, it := range s.Items {
		have[it.Key] = string(it.Value)
	}
	acked.mu.Lock()
	defer acked.mu.Unlock()
	lost := 0
	for k, v := range acked.vals {
		if have[k] != v {
			lost++
			if lost <= 5 {
				t.Errorf("seed %d: acknowledged write %s=%s is %q on every node", seed, k, v, have[k])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("seed %d: %d of %d acknowledged writes lost after %d crashes", seed, lost, len(acked.vals), crashes)
	}
	t.Logf("seed %d: %d acknowledged writes (%d keys stored) all present on every node after %d crashes", seed, len(acked.vals), len(s.Items), crashes)
}
