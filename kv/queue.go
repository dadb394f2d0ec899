package kv

import (
	"math"
	"strconv"

	"github.com/unrdf/consensus/api"
)

// Queue errors (defined in api).
var (
	// ErrStaleEpoch means a heartbeat, complete or fail named an epoch
	// that is not the task's current claim. Nothing was changed.
	ErrStaleEpoch = api.ErrStaleEpoch
	// ErrTaskNotFound means the queue has no task with this id.
	ErrTaskNotFound = api.ErrTaskNotFound
	// ErrQueueFull means the state holds its limit of tasks (WithQueueLimits)
	// and none is done.
	ErrQueueFull = api.ErrQueueFull
	// ErrTaskNotDead means a requeue named a task that is not dead.
	ErrTaskNotDead = api.ErrTaskNotDead
	// ErrNoTask means no task of the queue is ready to be claimed.
	ErrNoTask = api.ErrNoTask
)

// Default queue limits.
const (
	// DefaultMaxTasks bounds the tasks the state holds, in every queue
	// and state. Done tasks are kept, for idempotent enqueues, until room
	// is needed: the oldest done task is forgotten first.
	DefaultMaxTasks = 100_000
	// DefaultMaxTaskBytes bounds a task's data and its result.
	DefaultMaxTaskBytes = 256 << 10
	// Retry backoff without a retryAfterMs: taskBackoffMs doubled per
	// attempt, at most maxTaskBackoffMs.
	taskBackoffMs    = 1000
	maxTaskBackoffMs = 5 * 60 * 1000
)

// WithQueueLimits sets the most tasks the state holds and the most bytes
// of a task's data or result (defaults DefaultMaxTasks,
// DefaultMaxTaskBytes). Like every limit of the state, it must be
// configured alike on every node.
func WithQueueLimits(tasks, taskBytes int) Option {
	return func(m *Machine) { m.maxTasks, m.maxTaskBytes = tasks, taskBytes }
}

// taskState is where a task is in its life. Values are part of the
// snapshot format: never renumber them.
type taskState uint8

const (
	// taskWaiting is ready or delayed: claimable from readyAt on.
	taskWaiting   taskState = 1
	taskClaimed   taskState = 2
	taskDone      taskState = 3
	taskDead      taskState = 4
	numTaskStates           = 5
)

// task is one task of a queue. data, result and the strings are never
// changed in place (a snapshot's clone shares them).
type task struct {
	queue, id string
	data      []byte
	workflow  string
	state     taskState
	// readyAt is when a waiting task may be claimed, in Unix ms of the
	// state machine's clock.
	readyAt int64
	// created is the log index that enqueued it: the FIFO order of tasks
	// ready at the same time.
	created     uint64
	attempt     int
	maxAttempts int
	// epoch is the log index of its last claim; lease and worker the
	// claim's (lease 0 once it ended).
	epoch  int64
	lease  int64
	worker string
	result []byte
	err    string
	// finished is the log index that completed it (done tasks only).
	finished uint64
	// enqueuedAt is the state's clock when it was enqueued (Unix ms), for
	// display only (QueueOverviews): no decision depends on it, and it is
	// not in snapshots, so a task restored from one has 0.
	enqueuedAt int64
}

func taskLess(a, b task) bool {
	if a.queue != b.queue {
		return a.queue < b.queue
	}
	return a.id < b.id
}

// readyKey orders a queue's waiting tasks by ready time, then by
// enqueue: the next one to claim is the least.
type readyKey struct {
	queue   string
	at      int64
	created uint64
	id      string
}

func readyLess(a, b readyKey) bool {
	if a.queue != b.queue {
		return a.queue < b.queue
	}
	if a.at != b.at {
		return a.at < b.at
	}
	return a.created < b.created
}

// doneKey orders done tasks by when they finished: the first is the one
// forgotten when room is needed.
type doneKey struct {
	finished  uint64
	queue, id string
}

func doneLess(a, b doneKey) bool { return a.finished < b.finished }

// queueCounts counts one queue's tasks by state (derived state: rebuilt
// on restore, never iterated in Apply).
type queueCounts [numTaskStates]int

func (m *Machine) count(queue string, s taskState, delta int) {
	if m.queueCounts == nil {
		m.queueCounts = make(map[string]*queueCounts)
	}
	c := m.queueCounts[queue]
	if c == nil {
		c = new(queueCounts)
		m.queueCounts[queue] = c
	}
	c[s] += delta
	if *c == (queueCounts{}) {
		delete(m.queueCounts, queue)
	}
}

// setTask stores t, moving it between the indexes from its old state
// (prev, if had).
func (m *Machine) setTask(t task, prev task, had bool) {
	if had {
		m.count(prev.queue, prev.state, -1)
		switch prev.state {
		case taskWaiting:
			m.taskReady.Delete(readyKey{queue: prev.queue, at: prev.readyAt, created: prev.created})
		case taskDone:
			m.taskDone.Delete(doneKey{finished: prev.finished})
		}
	}
	m.count(t.queue, t.state, 1)
	switch t.state {
	case taskWaiting:
		m.taskReady.ReplaceOrInsert(readyKey{queue: t.queue, at: t.readyAt, created: t.created, id: t.id})
		m.queueChanged(t.queue)
	case taskDone:
		m.taskDone.ReplaceOrInsert(doneKey{finished: t.finished, queue: t.queue, id: t.id})
	}
	m.tasks.ReplaceOrInsert(t)
}

// dropTask forgets t.
func (m *Machine) dropTask(t task) {
	m.count(t.queue, t.state, -1)
	switch t.state {
	case taskWaiting:
		m.taskReady.Delete(readyKey{queue: t.queue, at: t.readyAt, created: t.created})
	case taskDone:
		m.taskDone.Delete(doneKey{finished: t.finished})
	}
	m.tasks.Delete(t)
}

// tick moves the state machine's clock to at, the proposer's clock, if
// that is later: the clock never goes back, and apply reads no other.
func (m *Machine) tick(at int64) int64 {
	m.clock = max(m.clock, at)
	return m.clock
}

func checkName(what, name string, limit int) *applyError {
	if name == "" || len(name) > limit {
		return fail(ErrInvalidKey, "%s of %d bytes, want 1 to %d", what, len(name), limit)
	}
	return checkTextKey(name, limit)
}

func (m *Machine) checkTaskBytes(what string, v []byte) *applyError {
	if len(v) > m.maxTaskBytes {
		return fail(ErrValueTooLarge, "task %s of %d bytes exceeds %d", what, len(v), m.maxTaskBytes)
	}
	return checkValue(v, m.maxValueBytes)
}

// applyEnqueue adds task c.Task to queue c.Key, ready at c.RunAt; an id
// the queue holds already returns the existing task's creation index and
// changes nothing.
func (m *Machine) applyEnqueue(c *command) (int64, *applyError) {
	now := m.tick(c.At)
	if err := checkName("queue name", c.Key, api.MaxQueueNameBytes); err != nil {
		return 0, err
	}
	if err := checkName("task id", c.Task, api.MaxTaskIDBytes); err != nil {
		return 0, err
	}
	if cur, ok := m.tasks.Get(task{queue: c.Key, id: c.Task}); ok {
		return int64(cur.created), nil
	}
	if err := m.checkTaskBytes("data", c.Value); err != nil {
		return 0, err
	}
	if c.Workflow != "" {
		if err := checkName("workflow id", c.Workflow, api.MaxWorkflowIDBytes); err != nil {
			return 0, err
		}
	}
	if c.Attempts < 0 || c.Attempts > api.MaxTaskAttempts {
		return 0, fail(ErrBadCommand, "maxAttempts %d, want 1 to %d", c.Attempts, api.MaxTaskAttempts)
	}
	if c.RunAt < 0 || c.RunAt > now+api.MaxTaskDelayMs {
		return 0, fail(ErrBadCommand, "runAt %d ms is more than %d ms ahead", c.RunAt, int64(api.MaxTaskDelayMs))
	}
	if m.tasks.Len() >= m.maxTasks {
		oldest, ok := m.taskDone.Min()
		if !ok {
			return 0, fail(ErrQueueFull, "enqueue %q in %q: the state holds %d tasks, its limit, none done", c.Task, c.Key, m.tasks.Len())
		}
		t, _ := m.tasks.Get(task{queue: oldest.queue, id: oldest.id})
		m.dropTask(t)
	}
	attempts := c.Attempts
	if attempts == 0 {
		attempts = api.DefaultTaskAttempts
	}
	t := task{queue: c.Key, id: c.Task, data: c.Value, workflow: c.Workflow, state: taskWaiting,
		readyAt: c.RunAt, created: m.applied, maxAttempts: attempts, enqueuedAt: now}
	m.setTask(t, task{}, false)
	m.recordTask(t, api.HistoryStepEnqueued, false)
	return int64(m.applied), nil
}

// applyClaim gives the first task of queue c.Key ready by the clock to
// worker c.Worker under a new lease c.Lease of c.TTL ms: its epoch is this
// entry's index. ErrNoTask if none is ready.
func (m *Machine) applyClaim(c *command) (*Claim, *applyError) {
	now := m.tick(c.At)
	if err := checkName("queue name", c.Key, api.MaxQueueNameBytes); err != nil {
		return nil, err
	}
	if err := checkName("worker", c.Worker, api.MaxWorkerBytes); err != nil {
		return nil, err
	}
	if err := m.checkGrant(c.Lease, c.TTL); err != nil {
		return nil, err
	}
	var next readyKey
	found := false
	m.taskReady.AscendGreaterOrEqual(readyKey{queue: c.Key, at: math.MinInt64}, func(k readyKey) bool {
		found = k.queue == c.Key && k.at <= now
		next = k
		return false
	})
	if !found {
		return nil, fail(ErrNoTask, "claim from %q: no task is ready", c.Key)
	}
	prev, _ := m.tasks.Get(task{queue: c.Key, id: next.id})
	t := prev
	t.state, t.attempt, t.epoch, t.lease, t.worker = taskClaimed, t.attempt+1, int64(m.applied), c.Lease, c.Worker
	m.grant(c.Lease, c.TTL, false)
	l, _ := m.leases.Get(lease{id: c.Lease})
	l.taskQueue, l.taskID = t.queue, t.id
	m.leases.ReplaceOrInsert(l)
	m.setTask(t, prev, true)
	m.recordTask(t, api.HistoryClaimed, true)
	return &Claim{Task: api.Task{ID: t.id, Data: t.data, Attempt: t.attempt, Workflow: t.workflow},
		Epoch: t.epoch, Lease: LeaseID(c.Lease)}, nil
}

// claimed returns task c.Task of queue c.Key if c.Epoch is its current
// claim.
func (m *Machine) claimed(c *command, what string) (task, *applyError) {
	if err := checkName("queue name", c.Key, api.MaxQueueNameBytes); err != nil {
		return task{}, err
	}
	if err := checkName("task id", c.Task, api.MaxTaskIDBytes); err != nil {
		return task{}, err
	}
	t, ok := m.tasks.Get(task{queue: c.Key, id: c.Task})
	if !ok {
		return task{}, fail(ErrTaskNotFound, "%s task %q of %q", what, c.Task, c.Key)
	}
	if t.state != taskClaimed || t.epoch != c.Epoch {
		return task{}, fail(ErrStaleEpoch, "%s task %q of %q with epoch %d: %s", what, c.Task, c.Key, c.Epoch, t.describeClaim())
	}
	return t, nil
}

func (t task) describeClaim() string {
	switch t.state {
	case taskClaimed:
		return "its current claim has epoch " + strconv.FormatInt(t.epoch, 10)
	case taskDone:
		return "it is done"
	case taskDead:
		return "it is dead"
	}
	return "it is not claimed"
}

// applyComplete finishes task c.Task held with epoch c.Epoch, with result
// c.Value (nil: none), and ends its claim's lease.
func (m *Machine) applyComplete(c *command) *applyError {
	m.tick(c.At)
	t, err := m.claimed(c, "complete")
	if err != nil {
		return err
	}
	if len(c.Value) > 0 {
		if err := m.checkTaskBytes("result", c.Value); err != nil {
			return err
		}
	}
	prev := t
	t.state, t.result, t.finished, t.lease = taskDone, c.Value, m.applied, 0
	m.setTask(t, prev, true)
	m.recordTask(t, api.HistoryCompleted, true)
	m.endClaimLease(prev.lease)
	return nil
}

// applyFail ends the claim with epoch c.Epoch of task c.Task with error
// c.Error: the task waits c.Retry ms (default: a backoff doubling per
// attempt) for its next attempt, or is dead if its attempts are used up.
func (m *Machine) applyFail(c *command) *applyError {
	now := m.tick(c.At)
	t, err := m.claimed(c, "fail")
	if err != nil {
		return err
	}
	if len(c.Error) > api.MaxTaskErrorBytes {
		return fail(ErrValueTooLarge, "error message of %d bytes exceeds %d", len(c.Error), api.MaxTaskErrorBytes)
	}
	if c.Retry != nil && (*c.Retry < 0 || *c.Retry > api.MaxTaskDelayMs) {
		return fail(ErrBadCommand, "retryAfterMs %d, want 0 to %d", *c.Retry, int64(api.MaxTaskDelayMs))
	}
	delay := backoff(t.attempt)
	if c.Retry != nil {
		delay = *c.Retry
	}
	failed := t
	failed.err = c.Error
	m.recordTask(failed, api.HistoryFailed, true)
	m.retry(t, c.Error, now+delay)
	m.endClaimLease(t.lease)
	return nil
}

// backoff is the default delay after the attempt-th attempt failed.
func backoff(attempt int) int64 {
	d := int64(taskBackoffMs)
	for i := 1; i < attempt && d < maxTaskBackoffMs; i++ {
		d *= 2
	}
	return min(d, maxTaskBackoffMs)
}

// retry ends t's claim: it waits until readyAt, or is dead if its
// attempts are used up.
func (m *Machine) retry(t task, msg string, readyAt int64) {
	prev := t
	t.err, t.lease = msg, 0
	if t.attempt >= t.maxAttempts {
		t.state = taskDead
	} else {
		t.state, t.readyAt = taskWaiting, readyAt
	}
	m.setTask(t, prev, true)
	if t.state == taskDead {
		m.recordTask(t, api.HistoryDead, true)
	} else {
		m.recordTask(t, api.HistoryRetried, true)
	}
}

// endClaimLease revokes a claim's lease once its task left the claim
// (done, failed): its keys and locks go with it.
func (m *Machine) endClaimLease(id int64) {
	if l, ok := m.leases.Get(lease{id: id}); ok {
		m.revokeLeases([]lease{l})
	}
}

// releaseLeaseTask returns the task a revoked or expired lease held to
// its queue (or to the dead, its attempts used up): the worker is gone.
func (m *Machine) releaseLeaseTask(l lease) {
	if l.taskID == "" {
		return
	}
	t, ok := m.tasks.Get(task{queue: l.taskQueue, id: l.taskID})
	if !ok || t.state != taskClaimed || t.lease != l.id {
		return
	}
	m.retry(t, "the claim's lease expired or was revoked", m.clock)
}

// applyRequeue gives dead task c.Task new attempts, ready now.
func (m *Machine) applyRequeue(c *command) *applyError {
	now := m.tick(c.At)
	if err := checkName("queue name", c.Key, api.MaxQueueNameBytes); err != nil {
		return err
	}
	t, ok := m.tasks.Get(task{queue: c.Key, id: c.Task})
	if !ok {
		return fail(ErrTaskNotFound, "requeue task %q of %q", c.Task, c.Key)
	}
	if t.state != taskDead {
		return fail(ErrTaskNotDead, "requeue task %q of %q: %s", c.Task, c.Key, t.describeClaim())
	}
	prev := t
	t.state, t.attempt, t.readyAt = taskWaiting, 0, now
	m.setTask(t, prev, true)
	m.recordTask(t, api.HistoryRetried, false)
	return nil
}

// queueWaiters is the wake channel of one queue and how many callers
// watch it (watchQueue): the entry goes when the last one does, so the
// map holds only queues being waited for now.
type queueWaiters struct {
	ch chan struct{} // nil until asked for after the last wake
	n  int
}

// queueChanged wakes whoever waits for a task of queue (queueChanges).
// Called with mu held.
func (m *Machine) queueChanged(queue string) {
	if w := m.queueWatch[queue]; w != nil && w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// watchQueue registers a caller that will wait on queueChanges(queue),
// until the function it returns is called.
func (m *Machine) watchQueue(queue string) (release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.queueWatch[queue]
	if w == nil {
		if m.queueWatch == nil {
			m.queueWatch = make(map[string]*queueWaiters)
		}
		w = &queueWaiters{}
		m.queueWatch[queue] = w
	}
	w.n++
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if w.n--; w.n == 0 && m.queueWatch[queue] == w {
			delete(m.queueWatch, queue)
		}
	}
}

// queueChanges returns a channel closed when a task of queue next becomes
// waiting (enqueued, retried, released, requeued). The caller watches
// the queue (watchQueue).
func (m *Machine) queueChanges(queue string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.queueWatch[queue]
	if w == nil { // not watched: a channel of its own, woken by nothing
		return make(chan struct{})
	}
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// nextReady returns when queue's first waiting task is ready (Unix ms).
func (m *Machine) nextReady(queue string) (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var at int64
	found := false
	m.taskReady.AscendGreaterOrEqual(readyKey{queue: queue, at: math.MinInt64}, func(k readyKey) bool {
		at, found = k.at, k.queue == queue
		return false
	})
	return at, found
}

// Claim is a claimed task with its epoch and lease (api.Claim).
type Claim = api.Claim

// TaskInfo describes a task (api.TaskInfo).
type TaskInfo = api.TaskInfo

// QueueStats counts a queue's tasks by state (api.QueueStats).
type QueueStats = api.QueueStats

func (t task) info(nowMs int64) TaskInfo {
	info := TaskInfo{ID: t.id, Attempt: t.attempt, MaxAttempts: t.maxAttempts, Epoch: t.epoch, ReadyAtMs: t.readyAt,
		Data: t.data, Workflow: t.workflow, Worker: t.worker, Lease: LeaseID(t.lease), Error: t.err}
	if len(t.result) > 0 {
		info.Result = t.result
	}
	info.State = t.stateName(nowMs)
	return info
}

func (t task) stateName(nowMs int64) string {
	switch t.state {
	case taskWaiting:
		if t.readyAt > nowMs {
			return api.TaskDelayed
		}
		return api.TaskReady
	case taskClaimed:
		return api.TaskClaimed
	case taskDone:
		return api.TaskDone
	}
	return api.TaskDead
}

// Task describes task id of queue, a waiting one ready or delayed by
// nowMs (a reader's clock: Unix ms).
func (m *Machine) Task(queue, id string, nowMs int64) (TaskInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.tasks.Get(task{queue: queue, id: id})
	if !ok {
		return TaskInfo{}, false
	}
	return t.info(max(nowMs, m.clock)), true
}

// claimOf returns the claim lease id holds, if it still does.
func (m *Machine) claimOf(id LeaseID) (Claim, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.leases.Get(lease{id: int64(id)})
	if !ok || l.taskID == "" {
		return Claim{}, false
	}
	t, ok := m.tasks.Get(task{queue: l.taskQueue, id: l.taskID})
	if !ok || t.state != taskClaimed || t.lease != l.id {
		return Claim{}, false
	}
	return Claim{Task: api.Task{ID: t.id, Data: t.data, Attempt: t.attempt, Workflow: t.workflow}, Epoch: t.epoch, Lease: id}, true
}

// QueueStats counts queue's tasks by state, waiting ones ready or delayed
// by nowMs.
func (m *Machine) QueueStats(queue string, nowMs int64) QueueStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := max(nowMs, m.clock)
	st := QueueStats{Queue: queue}
	c := m.queueCounts[queue]
	if c == nil {
		return st
	}
	st.Claimed, st.Done, st.Dead = c[taskClaimed], c[taskDone], c[taskDead]
	m.taskReady.AscendGreaterOrEqual(readyKey{queue: queue, at: now + 1}, func(k readyKey) bool {
		if k.queue != queue {
			return false
		}
		st.Delayed++
		return true
	})
	st.Ready = c[taskWaiting] - st.Delayed
	return st
}

// Tasks lists up to limit tasks of queue after id after (by id), in state
// (an api.Task* name; "" for all), and whether more match.
func (m *Machine) Tasks(queue, state, after string, limit int, nowMs int64) ([]TaskInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := max(nowMs, m.clock)
	out := make([]TaskInfo, 0)
	more := false
	m.tasks.AscendGreaterOrEqual(task{queue: queue, id: after}, func(t task) bool {
		if t.queue != queue {
			return false
		}
		if t.id == after || (state != "" && t.stateName(now) != state) {
			return true
		}
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, t.info(now))
		return true
	})
	return out, more
}
