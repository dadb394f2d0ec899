// Command worker shows a task queue worked by the Go client's Worker
// helper: it claims one task at a time, heartbeats the claim in the
// background, runs a handler, and completes the task with the handler's
// result or fails it with its error. One task fails once and is retried;
// one loses its claim while it runs (its lease revoked here, as a dead or
// paused worker's would expire): the handler's context is cancelled with
// cause client.ErrClaimLost, the task is claimed again with a larger
// epoch, and a late complete with the old epoch is refused (stale_epoch).
//
//	go run ./cmd/consensus up         # in one terminal
//	go run ./examples/worker          # in another
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082",
		"HTTP addresses of cluster members, host:port,... (the cluster `consensus up` starts)")
	flag.Parse()
	if err := run(*endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// photos are the tasks: one per photo to resize.
var photos = []string{"photo-1", "photo-2", "photo-3"}

const (
	// flaky fails its first attempt; lost loses its first claim.
	flaky = "photo-2"
	lost  = "photo-3"
)

func run(endpoints string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	// Tasks stay in the queue (done ones until room is needed): a queue
	// of its own per run.
	q := c.Queue("examples-worker-" + runTag())

	for _, p := range photos {
		e, err := q.Enqueue(ctx, fmt.Appendf(nil, `{"photo":%q,"width":640}`, p), client.EnqueueOptions{ID: p})
		if err != nil {
			return fmt.Errorf("enqueue %s: %w", p, err)
		}
		fmt.Printf("enqueued %s on %s at revision %d\n", e.ID, q.Name(), e.Revision)
	}
	// The same id again adds nothing: the enqueue is idempotent.
	again, err := q.Enqueue(ctx, []byte(`{"photo":"photo-1","width":640}`), client.EnqueueOptions{ID: photos[0]})
	if err != nil {
		return fmt.Errorf("enqueue %s again: %w", photos[0], err)
	}
	fmt.Printf("enqueued %s again: the same task (revision %d), no second one\n", again.ID, again.Revision)

	// The worker runs until every task is done; outcomes arrive from its
	// goroutine.
	var (
		mu        sync.Mutex
		done      = map[string]int64{} // task id -> the epoch that completed it
		lostEpoch int64
		err2      error
	)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	retryNow := time.Duration(0)
	w := &client.Worker{
		Queue: q, Name: "resizer-1",
		// Claims live 2 s and are kept alive every 200 ms: a worker that
		// dies loses its task 2 s later at most.
		TTL: 2 * time.Second, Heartbeat: 200 * time.Millisecond, Wait: 2 * time.Second,
		RetryAfter: &retryNow,
		OnOutcome: func(claim api.Claim, completed bool, err error) {
			mu.Lock()
			defer mu.Unlock()
			id := claim.Task.ID
			switch {
			case completed && err == nil:
				fmt.Printf("completed %s (attempt %d, epoch %d)\n", id, claim.Task.Attempt, claim.Epoch)
				done[id] = claim.Epoch
			case !completed && err == nil:
				fmt.Printf("failed %s (attempt %d, epoch %d): it will be retried\n", id, claim.Task.Attempt, claim.Epoch)
			case errors.Is(err, client.ErrClaimLost):
				fmt.Printf("gave up %s (attempt %d, epoch %d): the claim was lost, nothing completed\n", id, claim.Task.Attempt, claim.Epoch)
				lostEpoch = claim.Epoch
			default:
				err2 = errors.Join(err2, fmt.Errorf("%s with epoch %d: %w", id, claim.Epoch, err))
			}
			if len(done) == len(photos) || err2 != nil {
				stop()
			}
		},
	}
	err = w.Run(wctx, func(hctx context.Context, t api.Task) ([]byte, error) {
		fmt.Printf("claimed %s (attempt %d): %s\n", t.ID, t.Attempt, t.Data)
		switch {
		case t.ID == flaky && t.Attempt == 1:
			return nil, errors.New("thumbnail service busy")
		case t.ID == lost && t.Attempt == 1:
			return nil, loseClaim(ctx, hctx, c, q, t.ID)
		}
		return fmt.Appendf(nil, `{"photo":%q,"resized":"640w"}`, t.ID), nil
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || err2 != nil {
		return errors.Join(err, err2)
	}
	if len(done) != len(photos) {
		return fmt.Errorf("the worker stopped with %d of %d tasks done: %w", len(done), len(photos), ctx.Err())
	}
	fmt.Printf("all %d tasks done\n", len(photos))

	// The worker that lost its claim wakes up late and completes with
	// its old epoch: refused, nothing changes.
	err = q.Complete(ctx, lost, lostEpoch, []byte(`{"late":true}`))
	if !errors.Is(err, client.ErrStaleEpoch) {
		return fmt.Errorf("a late complete of %s with epoch %d: %v, want stale_epoch", lost, lostEpoch, err)
	}
	fmt.Printf("a late complete of %s with the lost epoch %d was refused: stale_epoch (epoch %d completed it)\n", lost, lostEpoch, done[lost])

	for _, p := range photos {
		info, err := q.Task(ctx, p)
		if err != nil {
			return fmt.Errorf("task %s: %w", p, err)
		}
		if info.State != api.TaskDone || info.Epoch != done[p] {
			return fmt.Errorf("task %s is %s with epoch %d, want done with %d", p, info.State, info.Epoch, done[p])
		}
		fmt.Printf("  %s  %s  attempts %d  epoch %d  result %s\n", info.ID, info.State, info.Attempt, info.Epoch, info.Result)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	fmt.Printf("queue stats: ready %d, delayed %d, claimed %d, done %d, dead %d; done\n", st.Ready, st.Delayed, st.Claimed, st.Done, st.Dead)
	return nil
}

// loseClaim revokes the lease that holds task id's claim, as a worker's
// lease that ran out would be, and waits until the Worker's heartbeat
// finds the claim gone and cancels hctx with cause client.ErrClaimLost.
func loseClaim(ctx, hctx context.Context, c *client.Client, q *client.Queue, id string) error {
	info, err := q.Task(ctx, id)
	if err != nil {
		return err
	}
	if _, err := c.Revoke(ctx, info.Lease); err != nil {
		return fmt.Errorf("revoke lease %s: %w", info.Lease, err)
	}
	fmt.Printf("the lease %s of %s's claim is gone (revoked here; a dead worker's expires)\n", info.Lease, id)
	<-hctx.Done() // a real handler watches its context while it works
	cause := context.Cause(hctx)
	fmt.Printf("the handler's context was cancelled: %v\n", cause)
	return cause
}

// runTag is a random tag for this run's names.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
