package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// memQueue is an in-memory QueueDriver: FIFO queues, claims with epochs
// from one counter, and abandoned claims that return their task to its
// queue lateBy after their deadline.
type memQueue struct {
	memDriver
	lateBy time.Duration

	mu        sync.Mutex
	ready     map[string][]string // queue -> task ids, oldest first
	epoch     int64
	claims    map[string]int64 // task id -> its current claim's epoch
	completed map[string]int   // task id -> accepted completes
	stale     int              // refused completes
	open      int
	closed    int
	timers    sync.WaitGroup
}

func (d *memQueue) Enqueue(_ context.Context, queue, id string, _ []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ready == nil {
		d.ready, d.claims, d.completed = map[string][]string{}, map[string]int64{}, map[string]int{}
	}
	d.ready[queue] = append(d.ready[queue], id)
	return nil
}

func (d *memQueue) Ready(_ context.Context, queue string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ready[queue]), nil
}

// claim takes the oldest ready task of queue, waiting up to wait.
func (d *memQueue) claim(ctx context.Context, queue string, wait time.Duration) (QueueClaim, error) {
	deadline := time.Now().Add(wait)
	for {
		d.mu.Lock()
		if ids := d.ready[queue]; len(ids) > 0 {
			d.ready[queue] = ids[1:]
			d.epoch++
			d.claims[ids[0]] = d.epoch
			c := QueueClaim{ID: ids[0], Epoch: d.epoch}
			d.mu.Unlock()
			return c, nil
		}
		d.mu.Unlock()
		if !time.Now().Before(deadline) {
			return QueueClaim{}, fmt.Errorf("claim from %s: %w", queue, ErrNoTask)
		}
		sleepCtx(ctx, time.Millisecond)
		if err := ctx.Err(); err != nil {
			return QueueClaim{}, err
		}
	}
}

func (d *memQueue) ClaimAbandoned(ctx context.Context, queue string, ttl time.Duration) (string, time.Time, error) {
	c, err := d.claim(ctx, queue, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	deadline := time.Now().Add(ttl)
	d.timers.Add(1)
	time.AfterFunc(ttl+d.lateBy, func() {
		defer d.timers.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.claims[c.ID] == c.Epoch {
			delete(d.claims, c.ID)
			d.ready[queue] = append(d.ready[queue], c.ID)
		}
	})
	return c.ID, deadline, nil
}

type memQueueWorker struct {
	d     *memQueue
	queue string
}

func (d *memQueue) NewQueueWorker(_ context.Context, queue, _ string, _ time.Duration) (QueueWorker, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open++
	return &memQueueWorker{d: d, queue: queue}, nil
}

func (w *memQueueWorker) Claim(ctx context.Context, wait time.Duration) (QueueClaim, error) {
	return w.d.claim(ctx, w.queue, wait)
}

func (w *memQueueWorker) Complete(_ context.Context, c QueueClaim) error {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if w.d.claims[c.ID] != c.Epoch {
		w.d.stale++
		return errors.New("stale epoch")
	}
	delete(w.d.claims, c.ID)
	w.d.completed[c.ID]++
	return nil
}

func (w *memQueueWorker) Close(context.Context) error {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	w.d.closed++
	return nil
}

// TestQueueWorkloads runs the queue cells on the in-memory driver: every
// cell has operations and no error, the enqueue cell stops at QueueTasks,
// the claim cell tops the queue up first and completes each task once,
// a takeover's figures are its lateness, and every worker is closed.
func TestQueueWorkloads(t *testing.T) {
	d := &memQueue{lateBy: 15 * time.Millisecond}
	o := quick()
	o.Workloads, o.Concurrency = QueueWorkloads, []int{1, 4}
	o.Warmup, o.Duration = 0, 150*time.Millisecond
	o.LeaseTTL = 20 * time.Millisecond // below what Validate allows: a test's speed
	o.QueueTasks = 300
	results, err := Suite(context.Background(), d, o, "mem", "call", nil, nil)
	d.timers.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 6 {
		t.Fatalf("%d results, want 6", len(results))
	}
	for _, r := range results {
		// A claim cell here takes its backlog in far less than its time:
		// each worker ends on an empty queue, one error each.
		drained := r.Workload == Claim && r.Errors <= int64(r.Concurrency) && strings.Contains(r.FirstError, "no task ready")
		if r.Ops == 0 || (r.Errors != 0 && !drained) || r.OpsPerSec <= 0 {
			t.Errorf("%s c=%d: %+v", r.Workload, r.Concurrency, r)
		}
		if r.Workload == Enqueue && r.Ops > int64(o.QueueTasks) {
			t.Errorf("enqueue c=%d: %d tasks, more than --queue-tasks %d", r.Concurrency, r.Ops, o.QueueTasks)
		}
		if r.Workload == Takeover && (r.Latency.P50 < 15*time.Millisecond || r.Latency.Max > 15*time.Millisecond+time.Second) {
			t.Errorf("takeover c=%d: lateness %+v, want about 15ms", r.Concurrency, r.Latency)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, n := range d.completed {
		if n != 1 {
			t.Errorf("task %s completed %d times", id, n)
		}
	}
	if d.stale != 0 {
		t.Errorf("%d completes refused", d.stale)
	}
	// Two claim and two takeover cells: 1+4 workers each.
	if d.open != 10 || d.closed != 10 {
		t.Errorf("%d workers opened, %d closed, want 10 and 10", d.open, d.closed)
	}
}

// TestClaimCellEndsWhenTheBacklogRunsOut: a claim cell takes the backlog
// it topped up, each task once, and each worker stops at the first claim
// that finds the queue empty (one error each), well before its time.
func TestClaimCellEndsWhenTheBacklogRunsOut(t *testing.T) {
	d := &memQueue{}
	o := quick()
	o.Warmup, o.Duration, o.QueueTasks = 0, time.Minute, 50
	start := time.Now()
	r := Run(context.Background(), d, o, Cell{Workload: Claim, Concurrency: 4}, Value(10), nil)
	if r.Ops != 50 || r.Errors != 4 || !strings.Contains(r.FirstError, "no task ready") {
		t.Fatalf("%+v", r)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("the cell ran on after its backlog")
	}
	if len(d.completed) != 50 {
		t.Fatalf("%d tasks completed, want 50", len(d.completed))
	}
}

// TestQueueWorkloadNeedsQueueDriver: a driver without queues gets one
// clear error per queue cell, at once.
func TestQueueWorkloadNeedsQueueDriver(t *testing.T) {
	r := Run(context.Background(), &memDriver{}, quick(), Cell{Workload: Claim, Concurrency: 2}, Value(10), nil)
	if r.Ops != 0 || r.Errors != 1 || !strings.Contains(r.FirstError, "workload claim: this client has no task queues") {
		t.Fatalf("%+v", r)
	}
}
