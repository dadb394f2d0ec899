package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
)

// Codes of the queue answers (api's).
const (
	CodeStaleEpoch   = api.CodeStaleEpoch
	CodeTaskNotFound = api.CodeTaskNotFound
	CodeQueueFull    = api.CodeQueueFull
	CodeTaskNotDead  = api.CodeTaskNotDead
)

// Queue errors (api's), matched with errors.Is.
var (
	// ErrStaleEpoch means the epoch is not the task's current claim: the
	// claim was lost (its lease ran out) or the task is finished.
	ErrStaleEpoch = api.ErrStaleEpoch
	// ErrNoTask means no task became ready within a claim's wait.
	ErrNoTask = api.ErrNoTask
	// ErrTaskNotFound means the queue has no task with this id.
	ErrTaskNotFound = api.ErrTaskNotFound
	// ErrClaimLost is the cause of a Worker handler's context when its
	// claim is lost.
	ErrClaimLost = errors.New("the claim was lost")
)

// Queue is one task queue of the cluster. Its calls are /v1/ws
// operations 40 to 48, with the client's failover and retries: writes
// (enqueue, complete, fail, requeue) carry a request id, so a retry is
// applied once; a claim is each time a claim of its own (one whose answer
// was lost is released when its lease runs out).
type Queue struct {
	c    *Client
	name string
}

// Queue returns the queue called name (the server checks the name: 1 to
// 256 bytes of UTF-8 without control characters).
func (c *Client) Queue(name string) *Queue {
	return &Queue{c: c, name: name}
}

// call runs a queue operation with body (marshalled to JSON unless nil)
// and unmarshals its JSON answer into out (if not nil). It reports
// whether there was an answer (a claim that found nothing has none).
func (q *Queue) call(ctx context.Context, r *api.Request, body, out any) (bool, error) {
	r.Key = q.name
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return false, fmt.Errorf("client: %s: %w", r.Op, err)
		}
		r.Value = b
	}
	var resp response
	var err error
	if r.Op.IsWrite() {
		resp, err = q.c.doWrite(ctx, r)
	} else {
		resp, err = q.c.doRequest(ctx, r)
	}
	if err != nil || resp.json == nil || out == nil {
		return resp.json != nil, err
	}
	if err := json.Unmarshal(resp.json, out); err != nil {
		return true, fmt.Errorf("client: %s: decoding the answer: %w", r.Op, err)
	}
	return true, nil
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// EnqueueOptions are the options of Enqueue.
type EnqueueOptions struct {
	// ID names the task (empty: the server picks one). Enqueueing an id
	// the queue holds returns the existing task and adds nothing.
	ID string
	// Delay, or RunAt, puts off the task's first claim.
	Delay time.Duration
	RunAt time.Time
	// MaxAttempts bounds its claims (0: 3).
	MaxAttempts int
	// Workflow is the workflow the task belongs to, if any.
	Workflow string
}

// Enqueue adds a task with data (one JSON value) and returns its id and the
// log index that created it.
func (q *Queue) Enqueue(ctx context.Context, data []byte, o EnqueueOptions) (api.Enqueued, error) {
	req := api.EnqueueRequest{ID: o.ID, Data: data, DelayMs: o.Delay.Milliseconds(), MaxAttempts: o.MaxAttempts, Workflow: o.Workflow}
	if !o.RunAt.IsZero() {
		req.RunAt = o.RunAt.UTC().Format(time.RFC3339Nano)
	}
	var out api.Enqueued
	_, err := q.call(ctx, &api.Request{Op: api.OpQueueEnqueue}, req, &out)
	return out, err
}

// Claim claims the next ready task for worker, under a lease of ttl (at
// least 1 s) that Heartbeat keeps alive, waiting up to wait (0: try once;
// at most MaxLockWait) for one; an error wrapping ErrNoTask if none became
// ready. The call may take wait plus the server's request timeout.
func (q *Queue) Claim(ctx context.Context, worker string, ttl, wait time.Duration) (api.Claim, error) {
	ms, err := waitMs(wait)
	if err != nil {
		return api.Claim{}, fmt.Errorf("client: claim from %q: %w", q.name, err)
	}
	var out api.Claim
	got, err := q.call(ctx, &api.Request{Op: api.OpQueueClaim, WaitMs: ms}, api.ClaimRequest{Worker: worker, TTLMs: ttl.Milliseconds(), WaitMs: ms}, &out)
	if err == nil && !got {
		return api.Claim{}, fmt.Errorf("client: claim from %q: waited %v: %w", q.name, wait, ErrNoTask)
	}
	return out, err
}

// Heartbeat keeps the claim with epoch of task id alive; an error
// wrapping ErrStaleEpoch when epoch is not the task's current claim.
func (q *Queue) Heartbeat(ctx context.Context, id string, epoch int64) (api.TaskInfo, error) {
	var out api.TaskInfo
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskHeartbeat, Task: id}, api.EpochRequest{Epoch: epoch}, &out)
	return out, err
}

// Complete finishes task id, claimed with epoch, with result (one JSON
// value, or nil); an error wrapping ErrStaleEpoch when epoch is not its
// current claim (nothing changed).
func (q *Queue) Complete(ctx context.Context, id string, epoch int64, result []byte) error {
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskComplete, Task: id}, api.EpochRequest{Epoch: epoch, Result: result}, nil)
	return err
}

// Fail ends the claim with epoch of task id with the error msg: it is
// retried after retryAfter (nil: the server's backoff), or dead when its
// attempts are used up.
func (q *Queue) Fail(ctx context.Context, id string, epoch int64, msg string, retryAfter *time.Duration) error {
	req := api.EpochRequest{Epoch: epoch, Error: msg}
	if retryAfter != nil {
		ms := retryAfter.Milliseconds()
		req.RetryAfterMs = &ms
	}
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskFail, Task: id}, req, nil)
	return err
}

// Requeue gives dead task id fresh attempts.
func (q *Queue) Requeue(ctx context.Context, id string) error {
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskRequeue, Task: id}, nil, nil)
	return err
}

// Task describes task id.
func (q *Queue) Task(ctx context.Context, id string) (api.TaskInfo, error) {
	var out api.TaskInfo
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskGet, Task: id}, nil, &out)
	return out, err
}

// Stats counts the queue's tasks by state.
func (q *Queue) Stats(ctx context.Context) (api.QueueStats, error) {
	var out api.QueueStats
	_, err := q.call(ctx, &api.Request{Op: api.OpQueueStats}, nil, &out)
	return out, err
}

// Tasks lists up to limit (1 to 1000; 0: 100) tasks whose id sorts after
// after, in state (api.TaskDead and the like; "" for all), by id.
func (q *Queue) Tasks(ctx context.Context, state, after string, limit int) (api.TaskList, error) {
	var out api.TaskList
	args := struct {
		State string `json:"state,omitempty"`
		After string `json:"after,omitempty"`
		Limit int    `json:"limit,omitempty"`
	}{state, after, limit}
	_, err := q.call(ctx, &api.Request{Op: api.OpTaskList}, args, &out)
	return out, err
}

// Handler runs one claimed task. ctx is cancelled, with cause ErrClaimLost,
// when the claim is lost (a heartbeat answered stale_epoch, or none
// succeeded for a whole time to live): the handler should stop, since
// whatever it completes will be refused. Returning a result (one JSON
// value, or nil) completes the task; returning an error fails it.
type Handler func(ctx context.Context, task api.Task) (result []byte, err error)

// Worker claims tasks of a queue one at a time and runs a Handler for
// each, heartbeating the claim in the background.
type Worker struct {
	// Queue is the queue worked on; Name names the worker in claims.
	Queue *Queue
	Name  string
	// TTL is each claim's lease (default 10 s); Heartbeat how often it is
	// kept alive (default TTL/3); Wait how long one claim waits for a
	// task (default 30 s).
	TTL, Heartbeat, Wait time.Duration
	// RetryAfter, if set, is the retry delay of a failed task (nil: the
	// server's backoff).
	RetryAfter *time.Duration
	// OnOutcome, if set, hears of each claim's end: the claim and the
	// error of its complete or fail (nil: accepted; ErrStaleEpoch: a late
	// worker refused).
	OnOutcome func(claim api.Claim, completed bool, err error)
}

func (w *Worker) defaults() {
	if w.TTL <= 0 {
		w.TTL = 10 * time.Second
	}
	if w.Heartbeat <= 0 {
		w.Heartbeat = w.TTL / 3
	}
	if w.Wait <= 0 {
		w.Wait = 30 * time.Second
	}
}

// Run claims and handles tasks until ctx ends (it returns nil then), or a
// claim fails with an error that waiting will not fix (bad input,
// unauthorized). Transient errors (no leader, unavailable) are retried
// after a second.
func (w *Worker) Run(ctx context.Context, handle Handler) error {
	w.defaults()
	for ctx.Err() == nil {
		claim, err := w.Queue.Claim(ctx, w.Name, w.TTL, w.Wait)
		switch {
		case err == nil:
			w.handle(ctx, claim, handle)
		case ctx.Err() != nil:
		case errors.Is(err, ErrNoTask):
		case errors.Is(err, api.ErrBadRequest), errors.Is(err, api.ErrInvalidKey), errors.Is(err, api.ErrInvalidTTL),
			errors.Is(err, api.ErrUnauthorized), errors.Is(err, api.ErrForbidden), errors.Is(err, ErrClosed):
			return err
		default:
			t := time.NewTimer(time.Second)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	return nil
}

// handle runs one claim: the handler with a heartbeat beside it, then the
// complete or fail.
func (w *Worker) handle(ctx context.Context, claim api.Claim, handle Handler) {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { w.heartbeat(hctx, cancel, claim) })
	result, herr := handle(hctx, claim.Task)
	lost := context.Cause(hctx) == ErrClaimLost
	cancel(nil)
	wg.Wait()
	if lost || ctx.Err() != nil {
		if w.OnOutcome != nil {
			w.OnOutcome(claim, false, fmt.Errorf("client: task %q: %w", claim.Task.ID, ErrClaimLost))
		}
		return
	}
	// The answer must come even if ctx ends now: a bounded context of
	// its own.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), w.TTL)
	defer acancel()
	var err error
	if herr == nil {
		if result != nil && !json.Valid(result) {
			result, _ = json.Marshal(string(result))
		}
		err = w.Queue.Complete(actx, claim.Task.ID, claim.Epoch, result)
	} else {
		msg := herr.Error()
		if len(msg) > api.MaxTaskErrorBytes {
			msg = msg[:api.MaxTaskErrorBytes]
		}
		err = w.Queue.Fail(actx, claim.Task.ID, claim.Epoch, msg, w.RetryAfter)
	}
	if w.OnOutcome != nil {
		w.OnOutcome(claim, herr == nil, err)
	}
}

// heartbeat keeps claim alive every w.Heartbeat until ctx ends; it
// cancels the handler's context with ErrClaimLost when the claim is gone.
func (w *Worker) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, claim api.Claim) {
	t := time.NewTicker(w.Heartbeat)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, hcancel := context.WithTimeout(ctx, w.Heartbeat)
		_, err := w.Queue.Heartbeat(hctx, claim.Task.ID, claim.Epoch)
		hcancel()
		switch {
		case err == nil:
			lastOK = time.Now()
		case errors.Is(err, ErrStaleEpoch), errors.Is(err, ErrTaskNotFound):
			cancel(ErrClaimLost)
			return
		case time.Since(lastOK) >= w.TTL:
			cancel(ErrClaimLost)
			return
		}
	}
}
