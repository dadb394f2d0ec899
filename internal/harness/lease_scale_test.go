package harness_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/kv"
)

// TestLeaseScale grants many leases on a 3-node cluster and keeps them
// all alive from many clients for three times their time to live: none
// may expire. It reports what they cost: the heap they take, the
// keepalives per second served, and the process's CPU per keepalive.
// CONSENSUS_LEASES sets how many (default 2,000; the figure is
// 50,000, a measurement rather than a CI test).
func TestLeaseScale(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("CONSENSUS_LEASES")); err == nil && v > 0 {
		n = v
	}
	ttl := 3 * time.Second
	if n > 10_000 {
		ttl = 10 * time.Second
	}
	c := harness.New(t, harness.Options{Seed: 18, Leases: &kv.LessorConfig{}})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	heapBefore := heapInUse()
	store := c.Client(leader)
	ids := make([]kv.LeaseID, n)
	const workers = 64
	var wg sync.WaitGroup
	grantStart := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					l, err := store.Grant(ctx, ttl, 0)
					cancel()
					if err == nil {
						ids[i] = l.ID
						break
					}
					if unexpectedErr(err) != nil {
						t.Errorf("grant: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	granted := time.Since(grantStart)
	heapAfter := heapInUse()

	// Keep every lease alive: each worker renews its share, each lease
	// every ttl/3.
	var renewed, lost atomic.Int64
	stop := make(chan struct{})
	cpuStart, wallStart := cpuTime(), time.Now()
	for w := range workers {
		wg.Go(func() {
			period := ttl / 3
			for {
				round := time.Now()
				for i := w; i < n; i += workers {
					ctx, cancel := context.WithTimeout(context.Background(), period)
					_, err := store.KeepAlive(ctx, ids[i])
					cancel()
					switch {
					case err == nil:
						renewed.Add(1)
					case errors.Is(err, kv.ErrLeaseNotFound):
						lost.Add(1)
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(period - time.Since(round)): // the keepalive period, the workload's pace
				}
			}
		})
	}
	time.Sleep(3 * ttl) // the run's length, not a synchronisation
	close(stop)
	wg.Wait()
	wall, cpu := time.Since(wallStart), cpuTime()-cpuStart
	st := c.Lessor(leader).Stats()
	t.Logf("%d leases of %v on 3 nodes: granted in %v (%.0f/s); heap %+.1f MiB (%.0f bytes a lease, the three nodes' state and the leader's clock); %d keepalives in %v (%.0f/s), %v CPU a keepalive (whole process: 3 nodes and 64 clients); %d answered lease_not_found; the leader's clock tracks %d, proposed %d expiries",
		n, ttl, granted.Round(time.Millisecond), float64(n)/granted.Seconds(), float64(heapAfter-heapBefore)/(1<<20), float64(heapAfter-heapBefore)/float64(n),
		renewed.Load(), wall.Round(time.Millisecond), float64(renewed.Load())/wall.Seconds(), (cpu / time.Duration(max(renewed.Load(), 1))).Round(time.Microsecond),
		lost.Load(), st.Leases, st.ExpiriesProposed)
	if lost.Load() > 0 || st.ExpiriesProposed > 0 {
		t.Fatalf("%d keepalives found their lease gone, %d expiries proposed: leases kept alive expired", lost.Load(), st.ExpiriesProposed)
	}
	if got := len(c.Client(leader).Machine().Leases()); got != n {
		t.Fatalf("%d leases left of %d", got, n)
	}
}

// heapInUse returns the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
