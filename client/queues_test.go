package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// The queue calls through a follower: enqueue (idempotent), claim,
// heartbeat (forwarded to the leader), complete, a stale epoch refused,
// ErrNoTask when nothing is ready, fail to dead, list, requeue, stats.
func TestQueueCalls(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)
	q := c.Queue("jobs/with a slash")

	first, err := q.Enqueue(ctx, []byte(`{"n":1}`), EnqueueOptions{ID: "a", MaxAttempts: 1, Workflow: "wf"})
	if err != nil || first.ID != "a" {
		t.Fatalf("Enqueue = %+v, %v", first, err)
	}
	if again, err := q.Enqueue(ctx, []byte(`2`), EnqueueOptions{ID: "a"}); err != nil || again != first {
		t.Fatalf("Enqueue of the same id = %+v, %v; want %+v", again, err, first)
	}
	claim, err := q.Claim(ctx, "w1", 5*time.Second, 0)
	if err != nil || claim.Task.ID != "a" || claim.Epoch < 1 || claim.Task.Workflow != "wf" || string(claim.Task.Data) != `{"n":1}` {
		t.Fatalf("Claim = %+v, %v", claim, err)
	}
	if _, err := q.Heartbeat(ctx, "a", claim.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Heartbeat(ctx, "a", claim.Epoch+1); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Heartbeat with another epoch: %v", err)
	}
	if _, err := q.Claim(ctx, "w1", 5*time.Second, 50*time.Millisecond); !errors.Is(err, ErrNoTask) {
		t.Fatalf("Claim of an empty queue: %v", err)
	}
	if err := q.Fail(ctx, "a", claim.Epoch, "no luck", nil); err != nil {
		t.Fatal(err)
	}
	if err := q.Complete(ctx, "a", claim.Epoch, nil); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Complete after the fail: %v", err)
	}
	dead, err := q.Tasks(ctx, api.TaskDead, "", 0)
	if err != nil || len(dead.Tasks) != 1 || dead.Tasks[0].Error != "no luck" {
		t.Fatalf("dead tasks %+v, %v", dead, err)
	}
	if err := q.Requeue(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	claim2, err := q.Claim(ctx, "w2", 5*time.Second, time.Second)
	if err != nil || claim2.Epoch <= claim.Epoch {
		t.Fatalf("Claim after the requeue = %+v, %v", claim2, err)
	}
	if err := q.Complete(ctx, "a", claim2.Epoch, []byte(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	if info, err := q.Task(ctx, "a"); err != nil || info.State != api.TaskDone || string(info.Result) != `"ok"` {
		t.Fatalf("Task = %+v, %v", info, err)
	}
	if _, err := q.Task(ctx, "nope"); !errors.Is(err, ErrTaskNotFound) {
		t.Fatalf("Task of an unknown id: %v", err)
	}
	if st, err := q.Stats(ctx); err != nil || st.Done != 1 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
}

// Two Workers drain a queue: every task completed once, none lost; a
// handler that outlives its claim (no heartbeat in time) sees its context
// cancelled with ErrClaimLost and its task goes to another claim.
func TestQueueWorkers(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)
	q := c.Queue("work")
	const n = 20
	for i := range n {
		if _, err := q.Enqueue(ctx, fmt.Appendf(nil, "%d", i), EnqueueOptions{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	completed := map[string]int{}
	var lost atomic.Int64
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 2 {
		worker := &Worker{Queue: q, Name: fmt.Sprint("w", w), TTL: time.Second, Wait: 200 * time.Millisecond,
			OnOutcome: func(claim api.Claim, ok bool, err error) {
				mu.Lock()
				defer mu.Unlock()
				if ok && err == nil {
					completed[claim.Task.ID]++
				}
			}}
		if w == 1 {
			// This one's heartbeats come too late: its first claim is
			// lost while its handler runs.
			worker.Heartbeat = 3 * time.Second
		}
		wg.Go(func() {
			_ = worker.Run(wctx, func(hctx context.Context, task api.Task) ([]byte, error) {
				if w == 1 && lost.Load() == 0 {
					<-hctx.Done()
					if context.Cause(hctx) == ErrClaimLost {
						lost.Add(1)
					}
					return nil, context.Cause(hctx)
				}
				return task.Data, nil
			})
		})
	}
	testwait.For(t, 30*time.Second, "every task done and the slow handler told", func() bool {
		st, err := q.Stats(ctx)
		return err == nil && st.Done == n && lost.Load() > 0
	})
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if completed[fmt.Sprint(i)] != 1 {
			t.Fatalf("task %d completed %d times (%v)", i, completed[fmt.Sprint(i)], completed)
		}
	}
	if lost.Load() != 1 {
		t.Fatalf("the slow worker's handler saw its claim lost %d times, want 1", lost.Load())
	}
}
