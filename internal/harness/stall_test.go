package harness_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// A leader whose disk stalls is replaced: writes go on through a new
// leader within a bounded time, nothing acknowledged is lost, the stalled
// node does not go on claiming to lead, and it rejoins when its disk
// returns (hashicorp/raft#503, consul#22064: a leader with a hung fsync
// kept heartbeating and held every write).
func TestStalledLeaderDiskIsReplaced(t *testing.T) {
	disks := map[string]*stallable{}
	var mu sync.Mutex
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 29,
		WrapStorage: func(name string, st consensus.LogStorage) consensus.LogStorage {
			mu.Lock()
			defer mu.Unlock()
			disks[name] = newStallable(st)
			return disks[name]
		}})
	old, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var acked []string
	for i := range 20 {
		k := fmt.Sprintf("before/%d", i)
		if _, err := c.Client(old).Put(ctx, k, []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, k)
	}
	mu.Lock()
	disk := disks[old]
	mu.Unlock()
	disk.stall(true)
	t.Cleanup(func() { disk.stall(false) }) // before the cluster closes
	stalledAt := time.Now()
	// A write the stalled leader takes: its entry cannot be saved there.
	stuck := make(chan error, 1)
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer wcancel()
		_, err := c.Client(old).Put(wctx, "during", []byte(`1`))
		stuck <- err
	}()
	others := []string{}
	for _, n := range c.Names() {
		if n != old {
			others = append(others, n)
		}
	}
	leader, err := c.WaitLeader(20*time.Second, others...)
	if err != nil {
		t.Fatalf("no new leader while %s's disk is stalled: %v", old, err)
	}
	elected := time.Since(stalledAt)
	// Writes go on through the new leader.
	for i := range 20 {
		k := fmt.Sprintf("after/%d", i)
		if _, err := c.Client(leader).Put(ctx, k, []byte(`1`)); err != nil {
			t.Fatalf("a write through the new leader %s: %v", leader, err)
		}
		acked = append(acked, k)
	}
	resumed := time.Since(stalledAt)
	testwait.For(t, 10*time.Second, "the stalled node to stop claiming to lead", func() bool {
		return !c.Node(old).IsLeader()
	})
	disk.stall(false)
	if err := <-stuck; err == nil {
		acked = append(acked, "during")
	}
	st := c.AssertSameState(20 * time.Second)
	have := map[string]bool{}
	for _, it := range st.Items {
		have[it.Key] = true
	}
	for _, k := range acked {
		if !have[k] {
			t.Errorf("acknowledged write %q lost", k)
		}
	}
	t.Logf("leader %s's disk stalled: %s elected after %v, writes resumed after %v; %d acknowledged writes all kept",
		old, leader, elected.Round(time.Millisecond), resumed.Round(time.Millisecond), len(acked))
}

// A follower whose disk stalls says so: it is not ready and refuses
// requests at once (ErrStorageStalled), so clients go elsewhere, while
// the other two go on; it catches up when its disk returns.
func TestStalledFollowerDiskIsNotReady(t *testing.T) {
	disks := map[string]*stallable{}
	var mu sync.Mutex
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 31,
		WrapStorage: func(name string, st consensus.LogStorage) consensus.LogStorage {
			mu.Lock()
			defer mu.Unlock()
			disks[name] = newStallable(st)
			return disks[name]
		}})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	follower := ""
	for _, n := range c.Names() {
		if n != leader {
			follower = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mu.Lock()
	disk := disks[follower]
	mu.Unlock()
	disk.stall(true)
	t.Cleanup(func() { disk.stall(false) })
	// The follower's next Save (of the leader's next entry) hangs.
	if _, err := c.Client(leader).Put(ctx, "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the follower to report its stalled disk", func() bool {
		return errors.Is(c.Node(follower).Ready(), consensus.ErrStorageStalled) && c.Node(follower).Status().StorageStalled &&
			c.Node(follower).Metrics().StorageStalled
	})
	start := time.Now()
	if _, err := c.Client(follower).Get(ctx, "k", kv.Linearizable); !errors.Is(err, consensus.ErrStorageStalled) {
		t.Fatalf("a read on the stalled follower: %v, want ErrStorageStalled", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("the stalled follower took %v to refuse a read", waited)
	}
	for i := range 10 {
		if _, err := c.Client(leader).Put(ctx, fmt.Sprintf("more/%d", i), []byte(`1`)); err != nil {
			t.Fatalf("a write while a follower's disk is stalled: %v", err)
		}
	}
	disk.stall(false)
	testwait.For(t, 10*time.Second, "the follower to be ready again", func() bool { return c.Node(follower).Ready() == nil })
	c.AssertSameState(20 * time.Second)
}
