package bench

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memCoord is an in-memory CoordDriver: one mutex per lock name, leases
// that expire late by exactly lateBy, and a watch fed by their expiry.
type memCoord struct {
	memDriver
	lateBy time.Duration
	// checkEvery, if set, expires leases as a lessor that looks for
	// expired leases every checkEvery does: at the first check, counted
	// from base, at or after the deadline (plus lateBy).
	checkEvery time.Duration
	base       time.Time

	mu       sync.Mutex
	locks    map[string]*sync.Mutex
	watchers []chan string

	holders, maxHolders atomic.Int64
	keepalives          atomic.Int64
	open, closed        atomic.Int64
	timers              sync.WaitGroup
}

type memContender struct {
	d      *memCoord
	closed atomic.Bool
}

func (d *memCoord) NewContender(context.Context, time.Duration) (Contender, error) {
	d.open.Add(1)
	return &memContender{d: d}, nil
}

func (k *memContender) LockUnlock(ctx context.Context, name string) error {
	k.d.mu.Lock()
	if k.d.locks == nil {
		k.d.locks = map[string]*sync.Mutex{}
	}
	l := k.d.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		k.d.locks[name] = l
	}
	k.d.mu.Unlock()
	l.Lock()
	n := k.d.holders.Add(1)
	for {
		m := k.d.maxHolders.Load()
		if n <= m || k.d.maxHolders.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(50 * time.Microsecond)
	k.d.holders.Add(-1)
	l.Unlock()
	return ctx.Err()
}

func (k *memContender) KeepAlive(context.Context) error {
	if k.closed.Load() {
		return errors.New("lease not found")
	}
	k.d.keepalives.Add(1)
	return nil
}

func (k *memContender) Close(context.Context) error {
	if k.closed.CompareAndSwap(false, true) {
		k.d.closed.Add(1)
	}
	return nil
}

func (d *memCoord) PutWithLease(_ context.Context, key string, _ []byte, ttl time.Duration) (time.Time, error) {
	now := time.Now()
	deadline := now.Add(ttl)
	fire := ttl + d.lateBy
	if d.checkEvery > 0 {
		checks := (deadline.Sub(d.base) + d.checkEvery - 1) / d.checkEvery
		fire = d.base.Add(checks*d.checkEvery).Sub(now) + d.lateBy
	}
	d.timers.Add(1)
	time.AfterFunc(fire, func() {
		defer d.timers.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, w := range d.watchers {
			w <- key
		}
	})
	return deadline, nil
}

func (d *memCoord) WatchDeletes(ctx context.Context, prefix string) (<-chan string, error) {
	in := make(chan string, 1024)
	out := make(chan string)
	d.mu.Lock()
	d.watchers = append(d.watchers, in)
	d.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case key := <-in:
				if strings.HasPrefix(key, prefix) {
					select {
					case out <- key:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return out, nil
}

// TestCoordWorkloads runs the lease and lock cells on the in-memory
// driver: every cell has operations, the lock is held by one contender at
// a time, every contender is closed, and an expiry's figures are its
// lateness, not the operation's duration.
func TestCoordWorkloads(t *testing.T) {
	d := &memCoord{lateBy: 15 * time.Millisecond}
	o := quick()
	o.Workloads, o.Concurrency = CoordWorkloads, []int{1, 4}
	o.Duration = 100 * time.Millisecond
	o.LeaseTTL = 20 * time.Millisecond // below what Validate allows: a test's speed
	results, err := Suite(context.Background(), d, o, "mem", "call", nil, nil)
	d.timers.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 6 {
		t.Fatalf("%d results, want 6", len(results))
	}
	for _, r := range results {
		if r.Ops == 0 || r.Errors != 0 || r.OpsPerSec <= 0 {
			t.Errorf("%s c=%d: %+v", r.Workload, r.Concurrency, r)
		}
		if r.Workload == Expiry && (r.Latency.P50 < 15*time.Millisecond || r.Latency.Max > 15*time.Millisecond+time.Second) {
			t.Errorf("expiry c=%d: lateness %+v, want about 15ms", r.Concurrency, r.Latency)
		}
	}
	if d.maxHolders.Load() != 1 {
		t.Errorf("the lock was held by %d contenders at once", d.maxHolders.Load())
	}
	if d.keepalives.Load() == 0 {
		t.Error("no keepalive")
	}
	// Two lock cells and two keepalive cells: 1+4 contenders each.
	if d.open.Load() != 10 || d.closed.Load() != 10 {
		t.Errorf("%d contenders opened, %d closed, want 10 and 10", d.open.Load(), d.closed.Load())
	}
	if len(d.keys) != 0 {
		t.Errorf("a coordination cell preloaded %d keys", len(d.keys))
	}
}

// TestCoordWorkloadNeedsCoordDriver: a driver without leases and locks
// gets one clear error per coordination cell, at once.
func TestCoordWorkloadNeedsCoordDriver(t *testing.T) {
	start := time.Now()
	r := Run(context.Background(), &memDriver{}, quick(), Cell{Workload: Lock, Concurrency: 2}, Value(10), nil)
	if r.Ops != 0 || r.Errors != 1 || !strings.Contains(r.FirstError, "workload lock: this client has no leases and locks") {
		t.Fatalf("%+v", r)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the refusal waited")
	}
}

// TestExpiryLatenessIsNotPhaseLocked: against a system that expires leases
// only at checks every 100 ms, with a TTL of two periods, the lateness is
// spread over the period. A worker that granted its next lease as soon as
// it saw the last expire would see nearly the whole period every time
// (every deadline just after a check).
func TestExpiryLatenessIsNotPhaseLocked(t *testing.T) {
	const period = 100 * time.Millisecond
	d := &memCoord{checkEvery: period, base: time.Now()}
	o := quick()
	o.Duration, o.LeaseTTL = 1500*time.Millisecond, 2*period
	r := Run(context.Background(), d, o, Cell{Workload: Expiry, Concurrency: 8}, Value(10), nil)
	d.timers.Wait()
	if r.Errors != 0 || r.Ops < 16 {
		t.Fatalf("%+v", r)
	}
	if r.Latency.P50 > period*7/10 || r.Latency.Max > 2*period {
		t.Fatalf("lateness %+v over %d leases: locked onto the checks' phase (period %v)", r.Latency, r.Ops, period)
	}
}
