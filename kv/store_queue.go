package kv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/unrdf/consensus/api"
)

// EnqueueOptions are the options of Enqueue.
type EnqueueOptions struct {
	// ID names the task; empty picks a random one. Enqueueing an id the
	// queue holds returns the existing task and adds nothing (while the
	// task is kept: done tasks are forgotten, oldest first, when the
	// state needs room).
	ID string
	// RunAt, or Delay from now, puts off the task's first claim.
	RunAt time.Time
	Delay time.Duration
	// MaxAttempts bounds its claims (0: api.DefaultTaskAttempts).
	MaxAttempts int
	// Workflow is the id of the workflow the task belongs to, if any.
	Workflow string
}

// Enqueue adds a task with data (a JSON value) to queue and returns its id
// and the log index that created it (the existing task's, for an id the
// queue holds).
func (s *Store) Enqueue(ctx context.Context, queue string, data []byte, o EnqueueOptions) (string, int64, error) {
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return "", 0, err
	}
	if o.ID == "" {
		o.ID = newTaskID()
	}
	if err := checkRequestName("task id", o.ID, api.MaxTaskIDBytes); err != nil {
		return "", 0, err
	}
	if o.Workflow != "" {
		if err := checkRequestName("workflow id", o.Workflow, api.MaxWorkflowIDBytes); err != nil {
			return "", 0, err
		}
	}
	if err := s.machine.checkTaskBytes("data", data); err != nil {
		return "", 0, err
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > api.MaxTaskAttempts {
		return "", 0, fail(ErrBadCommand, "maxAttempts %d, want 1 to %d", o.MaxAttempts, api.MaxTaskAttempts)
	}
	now := s.now().UnixMilli()
	c := command{Op: opTaskEnqueue, Key: queue, Task: o.ID, Value: data, At: now, Attempts: o.MaxAttempts, Workflow: o.Workflow}
	switch {
	case !o.RunAt.IsZero() && o.Delay != 0:
		return "", 0, fail(ErrBadCommand, "a runAt or a delay, not both")
	case o.Delay < 0 || o.Delay.Milliseconds() > api.MaxTaskDelayMs:
		return "", 0, fail(ErrBadCommand, "delay %v, want 0 to 30 days", o.Delay)
	case o.Delay > 0:
		c.RunAt = now + o.Delay.Milliseconds()
	case !o.RunAt.IsZero():
		c.RunAt = max(o.RunAt.UnixMilli(), 0)
		if c.RunAt > now+api.MaxTaskDelayMs {
			return "", 0, fail(ErrBadCommand, "runAt %s is more than 30 days ahead", o.RunAt.Format(time.RFC3339))
		}
	}
	created, err := s.write(ctx, c)
	if err != nil {
		return "", 0, err
	}
	return o.ID, created, nil
}

// newTaskID picks a random task id: 16 hexadecimal digits, chosen before
// proposing (never in apply).
func newTaskID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func checkRequestName(what, name string, limit int) *applyError {
	if err := checkName(what, name, limit); err != nil {
		return err
	}
	if i, r, ok := controlChar(name); ok {
		return fail(ErrInvalidKey, "%s has the control character %U at byte %d", what, r, i)
	}
	return nil
}

// Claim claims the first ready task of queue for worker, under a new lease
// with the time to live ttl (at least api.LeaseTTLFloorMs), waiting up to
// wait for one to become ready (0: tries once). It returns the task, its
// epoch (strictly greater than any earlier claim's of it) and the lease,
// which heartbeats keep alive: when the lease expires or is revoked the
// task waits again, for a claim with a higher epoch. ErrNoTask if none
// became ready in time.
//
// Each attempt to claim is a request of its own (a request id in ctx is
// not used): a claim whose answer was lost is released by its lease.
func (s *Store) Claim(ctx context.Context, queue, worker string, ttl, wait time.Duration) (Claim, error) {
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return Claim{}, err
	}
	if err := checkRequestName("worker", worker, api.MaxWorkerBytes); err != nil {
		return Claim{}, err
	}
	ms := ttl.Milliseconds()
	if err := checkTTL(ms); err != nil {
		return Claim{}, err
	}
	ms = max(ms, api.LeaseTTLFloorMs)
	// The claim is answered from this member's state, like a read: not
	// from one that diverged.
	if err := s.Diverged(); err != nil {
		return Claim{}, err
	}
	ctx = context.WithValue(ctx, requestIDKey{}, RequestID{})
	defer s.machine.watchQueue(queue)()
	deadline := time.Now().Add(max(wait, 0))
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for first := true; ; first = false {
		// The channel first, then the state: a task that comes in
		// between closes it.
		changed := s.machine.queueChanges(queue)
		at, waiting := s.machine.nextReady(queue)
		now, stamp := time.Now(), s.now().UnixMilli()
		// The first attempt is proposed whatever this node's state says
		// (it may lag the leader's); later ones when a task is ready.
		if first || (waiting && at <= stamp) {
			lease := newLeaseID()
			c := command{Op: opTaskClaim, Key: queue, Worker: worker, Lease: int64(lease), TTL: ms, At: stamp}
			claim, err := s.claim(ctx, c)
			if !errors.Is(err, ErrNoTask) {
				return claim, err
			}
			continue
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return Claim{}, fmt.Errorf("kv: claim from %q: waited %v: %w", queue, wait, ErrNoTask)
		}
		if waiting {
			left = min(left, time.Duration(at-stamp)*time.Millisecond)
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			return Claim{}, fmt.Errorf("kv: claim from %q: %w: %w", queue, ErrNoTask, ctx.Err())
		}
	}
}

// claim proposes c, a claim, and returns what it got.
func (s *Store) claim(ctx context.Context, c command) (Claim, error) {
	b, err := encodeCommand(withHistory(c))
	if err != nil {
		return Claim{}, err
	}
	res, err := s.node.Propose(ctx, b)
	if err != nil {
		return Claim{}, err
	}
	r, ok := res.(Result)
	if !ok {
		return Claim{}, fmt.Errorf("kv: unexpected apply result %T", res)
	}
	if r.Err != nil {
		return Claim{}, r.Err
	}
	if r.Claim != nil {
		return *r.Claim, nil
	}
	// Answered without the claim (a session table's record): read it
	// from the state, if the lease still holds it.
	if claim, ok := s.machine.claimOf(LeaseID(c.Lease)); ok {
		return claim, nil
	}
	return Claim{}, fmt.Errorf("kv: claim from %q: the claim ended before it could be read: %w", c.Key, ErrStaleEpoch)
}

// Heartbeat keeps the claim with epoch of task id alive: its lease's
// countdown starts again. It must be called on the leader (its lease
// clock's: consensus.ErrNotLeader elsewhere). ErrStaleEpoch if epoch is
// not the task's current claim, or its lease has run out.
func (s *Store) Heartbeat(ctx context.Context, queue, id string, epoch int64) (TaskInfo, error) {
	if s.lessor == nil {
		return TaskInfo{}, fmt.Errorf("kv: heartbeat: %w", errNoLessor)
	}
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return TaskInfo{}, err
	}
	if err := checkRequestName("task id", id, api.MaxTaskIDBytes); err != nil {
		return TaskInfo{}, err
	}
	// A linearizable read on the leader (Lessor.current, through
	// KeepAlive) comes after it; this one makes the epoch check current
	// (and refuses on a member whose state diverged, as every read).
	if err := s.sync(ctx, Linearizable); err != nil {
		return TaskInfo{}, err
	}
	info, ok := s.machine.Task(queue, id, s.now().UnixMilli())
	if !ok {
		return TaskInfo{}, fmt.Errorf("kv: heartbeat of task %q of %q: %w", id, queue, ErrTaskNotFound)
	}
	if info.State != api.TaskClaimed || info.Epoch != epoch {
		return TaskInfo{}, fmt.Errorf("kv: heartbeat of task %q of %q with epoch %d: the task is %s at epoch %d: %w",
			id, queue, epoch, info.State, info.Epoch, ErrStaleEpoch)
	}
	if _, err := s.lessor.KeepAlive(ctx, info.Lease); err != nil {
		if errors.Is(err, ErrLeaseNotFound) {
			return TaskInfo{}, fmt.Errorf("kv: heartbeat of task %q of %q with epoch %d: its lease ran out: %w", id, queue, epoch, ErrStaleEpoch)
		}
		return TaskInfo{}, err
	}
	return info, nil
}

// Complete finishes task id, claimed with epoch, with result (a JSON
// value; nil for none). ErrStaleEpoch if epoch is not its current claim:
// nothing changes, whatever the late worker did.
func (s *Store) Complete(ctx context.Context, queue, id string, epoch int64, result []byte) error {
	if err := s.checkTask(queue, id); err != nil {
		return err
	}
	if len(result) > 0 {
		if err := s.machine.checkTaskBytes("result", result); err != nil {
			return err
		}
	}
	_, err := s.write(ctx, command{Op: opTaskComplete, Key: queue, Task: id, Epoch: epoch, Value: result, At: s.now().UnixMilli()})
	return err
}

// Fail ends the claim with epoch of task id with the error msg: the task
// is retried after retryAfter (nil: a backoff of 1s doubling with each
// attempt, at most 5 minutes), or is dead when its attempts are used up.
// ErrStaleEpoch if epoch is not its current claim.
func (s *Store) Fail(ctx context.Context, queue, id string, epoch int64, msg string, retryAfter *time.Duration) error {
	if err := s.checkTask(queue, id); err != nil {
		return err
	}
	if len(msg) > api.MaxTaskErrorBytes {
		return fail(ErrValueTooLarge, "error message of %d bytes exceeds %d", len(msg), api.MaxTaskErrorBytes)
	}
	c := command{Op: opTaskFail, Key: queue, Task: id, Epoch: epoch, Error: msg, At: s.now().UnixMilli()}
	if retryAfter != nil {
		ms := retryAfter.Milliseconds()
		if ms < 0 || ms > api.MaxTaskDelayMs {
			return fail(ErrBadCommand, "retryAfter %v, want 0 to 30 days", *retryAfter)
		}
		c.Retry = &ms
	}
	_, err := s.write(ctx, c)
	return err
}

// Requeue gives dead task id fresh attempts, ready now; ErrTaskNotDead if
// it is not dead.
func (s *Store) Requeue(ctx context.Context, queue, id string) error {
	if err := s.checkTask(queue, id); err != nil {
		return err
	}
	_, err := s.write(ctx, command{Op: opTaskRequeue, Key: queue, Task: id, At: s.now().UnixMilli()})
	return err
}

func (s *Store) checkTask(queue, id string) error {
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return err
	}
	if err := checkRequestName("task id", id, api.MaxTaskIDBytes); err != nil {
		return err
	}
	return nil
}

// TaskState describes task id of queue; ErrTaskNotFound if there is none.
func (s *Store) TaskState(ctx context.Context, queue, id string, c Consistency) (TaskInfo, error) {
	if err := s.checkTask(queue, id); err != nil {
		return TaskInfo{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return TaskInfo{}, err
	}
	info, ok := s.machine.Task(queue, id, s.now().UnixMilli())
	if !ok {
		return TaskInfo{}, fmt.Errorf("kv: task %q of %q: %w", id, queue, ErrTaskNotFound)
	}
	return info, nil
}

// QueueStats counts queue's tasks by state.
func (s *Store) QueueStats(ctx context.Context, queue string, c Consistency) (QueueStats, error) {
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return QueueStats{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return QueueStats{}, err
	}
	return s.machine.QueueStats(queue, s.now().UnixMilli()), nil
}

// MaxTaskList bounds the tasks one ListTasks returns.
const MaxTaskList = 1000

// ListTasks lists up to limit (1 to MaxTaskList) tasks of queue whose id
// sorts after after, in state (an api.Task* name, "" for all), by id, and
// whether more match.
func (s *Store) ListTasks(ctx context.Context, queue, state, after string, limit int, c Consistency) ([]TaskInfo, bool, error) {
	if err := checkRequestName("queue name", queue, api.MaxQueueNameBytes); err != nil {
		return nil, false, err
	}
	switch state {
	case "", api.TaskReady, api.TaskDelayed, api.TaskClaimed, api.TaskDone, api.TaskDead:
	default:
		return nil, false, fail(ErrBadCommand, "state %q, want ready, delayed, claimed, done or dead", state)
	}
	if limit < 1 || limit > MaxTaskList {
		return nil, false, fail(ErrBadCommand, "limit %d, want 1 to %d", limit, MaxTaskList)
	}
	if err := s.sync(ctx, c); err != nil {
		return nil, false, err
	}
	tasks, more := s.machine.Tasks(queue, state, after, limit, s.now().UnixMilli())
	return tasks, more, nil
}
