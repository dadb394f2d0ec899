package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// The task queue workloads. They need a QueueDriver.
const (
	// Enqueue adds tasks to QueueName, one per operation. A cell adds at
	// most Options.QueueTasks measured tasks (the queue holds them until
	// Claim cells take them), so that a run stays far from a queue's
	// limit of tasks.
	Enqueue Workload = "enqueue"
	// Claim claims the oldest ready task of QueueName and completes it
	// with the claim's epoch, one of each per operation. The cell first
	// tops the queue up to Options.QueueTasks ready tasks. Its latency
	// figures are the claim's alone; a claim that finds the queue empty
	// ends its worker (counted as an error).
	Claim Workload = "claim"
	// Takeover measures how long after a worker's death its task is
	// claimed again: each operation pauses for a time drawn from [0,
	// Options.LeaseTTL), enqueues a task on a queue of the worker's own,
	// claims it with a claim of time to live Options.LeaseTTL as a worker
	// that dies at once (no heartbeat, no complete), then waits for it as
	// a second worker and completes it. Its latency figures are the
	// lateness of the second claim: when it was answered minus the dead
	// claim's deadline (when it was answered + the time to live).
	Takeover Workload = "takeover"
)

// QueueWorkloads lists the queue workloads, in the order cells run.
var QueueWorkloads = []Workload{Enqueue, Claim, Takeover}

// QueueName is the queue of the Enqueue and Claim workloads;
// TakeoverQueue starts the queues of the Takeover workload (one per
// worker).
const (
	QueueName     = "bench-queue"
	TakeoverQueue = "bench-takeover-"
)

// ErrNoTask is what a QueueWorker's Claim returns when no task was ready
// within its wait.
var ErrNoTask = errors.New("no task ready")

// QueueDriver is a Driver that also has task queues with fenced claims.
// Its methods are called from many goroutines at once and must honour
// ctx.
type QueueDriver interface {
	Driver
	// Enqueue adds task id, with data, to queue.
	Enqueue(ctx context.Context, queue, id string, data []byte) error
	// Ready counts queue's ready tasks.
	Ready(ctx context.Context, queue string) (int, error)
	// NewQueueWorker returns a worker of queue called name, whose claims
	// live ttl unless kept alive (its own client state: a session where
	// the system needs one).
	NewQueueWorker(ctx context.Context, queue, name string, ttl time.Duration) (QueueWorker, error)
	// ClaimAbandoned claims the oldest ready task of queue as a worker
	// that dies at once: its claim lives ttl and nothing keeps it alive.
	// It returns the task's id and the claim's deadline as the client
	// sees it: when the claim (or its lease's grant) was answered plus the
	// time to live granted.
	ClaimAbandoned(ctx context.Context, queue string, ttl time.Duration) (id string, deadline time.Time, err error)
}

// QueueWorker is one worker of a queue. One goroutine uses it at a time.
type QueueWorker interface {
	// Claim claims the oldest ready task, waiting up to wait for one (0:
	// try once); an error wrapping ErrNoTask when none was ready.
	Claim(ctx context.Context, wait time.Duration) (QueueClaim, error)
	// Complete completes a claim, fenced by its epoch.
	Complete(ctx context.Context, c QueueClaim) error
	// Close ends the worker.
	Close(ctx context.Context) error
}

// QueueClaim is a claimed task: its id and the claim's epoch (fencing
// token).
type QueueClaim struct {
	ID    string
	Epoch int64
}

// isQueue reports whether w needs a QueueDriver.
func (w Workload) isQueue() bool { return w == Enqueue || w == Claim || w == Takeover }

// queueCell is what a queue cell sets up before it starts: a worker per
// goroutine (Claim and Takeover cells).
type queueCell struct {
	d       QueueDriver
	workers []QueueWorker
	// nonce makes the cell's task ids and takeover queues its own.
	nonce string
	ids   atomic.Int64
}

// cellNonces makes each queue cell's nonce unique in this process.
var cellNonces atomic.Int64

// newQueueCell prepares cell c on d before its time starts: the Claim
// cell's backlog, and the workers. Each step is bounded by o.Timeout
// (the backlog by o.Timeout per task enqueued, 64 at a time).
func newQueueCell(ctx context.Context, d Driver, o Options, c Cell) (*queueCell, error) {
	qd, ok := d.(QueueDriver)
	if !ok {
		return nil, fmt.Errorf("workload %s: this client has no task queues", c.Workload)
	}
	qc := &queueCell{d: qd, nonce: fmt.Sprintf("%d-%d", time.Now().UnixNano(), cellNonces.Add(1))}
	if c.Workload == Enqueue {
		return qc, nil
	}
	if c.Workload == Claim {
		if err := qc.topUp(ctx, o); err != nil {
			return nil, fmt.Errorf("workload %s: backlog: %w", c.Workload, err)
		}
	}
	qc.workers = make([]QueueWorker, c.Concurrency)
	errs := make([]error, c.Concurrency)
	var wg sync.WaitGroup
	for i := range c.Concurrency {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			qc.workers[i], errs[i] = qd.NewQueueWorker(sctx, qc.queue(c.Workload, i), fmt.Sprintf("bench-%d", i), SessionTTL)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		qc.close(o.Timeout)
		return nil, fmt.Errorf("workload %s: new worker: %w", c.Workload, err)
	}
	return qc, nil
}

// queue is the queue worker w of a cell of wl uses.
func (qc *queueCell) queue(wl Workload, w int) string {
	if wl == Takeover {
		return fmt.Sprintf("%s%s-%d", TakeoverQueue, qc.nonce, w)
	}
	return QueueName
}

// nextID returns a task id no other operation of the process uses.
func (qc *queueCell) nextID() string {
	return fmt.Sprintf("%s-%d", qc.nonce, qc.ids.Add(1))
}

// topUp enqueues tasks until QueueName holds o.QueueTasks ready ones.
func (qc *queueCell) topUp(ctx context.Context, o Options) error {
	ready, err := qc.d.Ready(ctx, QueueName)
	if err != nil {
		return err
	}
	missing := o.QueueTasks - ready
	if missing <= 0 {
		return nil
	}
	value := Value(o.ValueSize)
	var next atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, 64)
	var wg sync.WaitGroup
	for i := range min(64, missing) {
		wg.Go(func() {
			for next.Add(1) <= int64(missing) && ctx.Err() == nil {
				opCtx, opCancel := context.WithTimeout(ctx, o.Timeout)
				err := qc.d.Enqueue(opCtx, QueueName, qc.nextID(), value)
				opCancel()
				if err != nil {
					errs[i] = err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close ends the cell's workers.
func (qc *queueCell) close(timeout time.Duration) {
	var wg sync.WaitGroup
	for _, w := range qc.workers {
		if w == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_ = w.Close(ctx)
		})
	}
	wg.Wait()
}

// op runs one operation of worker w. For Claim the sample is the claim's
// latency, for Takeover the second claim's lateness; else the operation's
// own latency is the sample.
func (qc *queueCell) op(ctx context.Context, wl Workload, w int, rng *rand.Rand, value []byte, ttl time.Duration) (sample time.Duration, isSample bool, err error) {
	switch wl {
	case Enqueue:
		return 0, false, qc.d.Enqueue(ctx, QueueName, qc.nextID(), value)
	case Claim:
		t0 := time.Now()
		c, err := qc.workers[w].Claim(ctx, 0)
		if err != nil {
			return 0, true, err
		}
		sample = time.Since(t0)
		return sample, true, qc.workers[w].Complete(ctx, c)
	default:
		// A pause first, as Expiry's, so that the deadlines do not lock
		// onto the phase of the system's expiry checks.
		sleepCtx(ctx, time.Duration(rng.Int64N(int64(ttl))))
		if err := ctx.Err(); err != nil {
			return 0, true, err
		}
		queue := qc.queue(Takeover, w)
		id := qc.nextID()
		if err := qc.d.Enqueue(ctx, queue, id, value); err != nil {
			return 0, true, err
		}
		dead, deadline, err := qc.d.ClaimAbandoned(ctx, queue, ttl)
		if err != nil {
			return 0, true, fmt.Errorf("the claim of the worker that dies: %w", err)
		}
		if dead != id {
			return 0, true, fmt.Errorf("the worker that dies claimed %s, want %s", dead, id)
		}
		c, err := qc.workers[w].Claim(ctx, 2*ttl+time.Until(deadline))
		if err != nil {
			return 0, true, fmt.Errorf("the takeover of %s: %w", id, err)
		}
		late := time.Until(deadline) * -1
		if c.ID != id {
			return 0, true, fmt.Errorf("took over %s, want %s", c.ID, id)
		}
		return late, true, qc.workers[w].Complete(ctx, c)
	}
}
