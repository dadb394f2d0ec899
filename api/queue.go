package api

import (
	"encoding/json"
	"errors"
)

// Task states, as GET /v1/queues/{queue}/tasks/{id} names them.
const (
	// TaskReady is a task waiting to be claimed whose ready time has come.
	TaskReady = "ready"
	// TaskDelayed is a task waiting for its ready time (runAt, a delay or
	// a retry's backoff).
	TaskDelayed = "delayed"
	// TaskClaimed is a task a worker holds, under the claim's lease.
	TaskClaimed = "claimed"
	// TaskDone is a task completed once, by the holder of its current
	// epoch.
	TaskDone = "done"
	// TaskDead is a task whose attempts are used up: it stays until it is
	// requeued.
	TaskDead = "dead"
)

// Queue limits.
const (
	// MaxQueueNameBytes bounds a queue's name, MaxTaskIDBytes a task's id,
	// MaxWorkerBytes a worker's name and MaxWorkflowIDBytes a task's
	// workflow id.
	MaxQueueNameBytes  = 256
	MaxTaskIDBytes     = 256
	MaxWorkerBytes     = 256
	MaxWorkflowIDBytes = 256
	// MaxTaskErrorBytes bounds the error message of a failure.
	MaxTaskErrorBytes = 4096
	// MaxTaskAttempts bounds a task's maxAttempts; DefaultTaskAttempts is
	// what a task gets without one.
	MaxTaskAttempts     = 1000
	DefaultTaskAttempts = 3
	// MaxTaskDelayMs bounds a delay, a retry's delay and how far ahead a
	// runAt may be (30 days, the longest lease).
	MaxTaskDelayMs = MaxLeaseTTLMs
)

// EnqueueRequest is the body of POST /v1/queues/{queue}/tasks.
type EnqueueRequest struct {
	// ID names the task (optional; the server picks one if empty). The
	// same id again returns the existing task and adds nothing.
	ID string `json:"id,omitempty"`
	// Data is the task's payload, any JSON value.
	Data json.RawMessage `json:"data"`
	// DelayMs or RunAt (RFC 3339) put off the task's first claim.
	DelayMs int64  `json:"delayMs,omitempty"`
	RunAt   string `json:"runAt,omitempty"`
	// MaxAttempts bounds its claims (default DefaultTaskAttempts).
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Workflow is the id of the workflow the task belongs to, if any.
	Workflow string `json:"workflow,omitempty"`
}

// Enqueued is the answer to an enqueue: the task's id and the log index
// that created it (the same for a repeated id).
type Enqueued struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

// ClaimRequest is the body of POST /v1/queues/{queue}/claim.
type ClaimRequest struct {
	Worker string `json:"worker"`
	TTLMs  int64  `json:"ttlMs"`
	WaitMs int64  `json:"waitMs,omitempty"`
}

// Task is a claimed task as its worker gets it.
type Task struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
	// Attempt counts the claims of the task, this one included (1 for
	// the first).
	Attempt  int    `json:"attempt"`
	Workflow string `json:"workflow,omitempty"`
}

// Claim is the answer to a claim: the task, its epoch (the fencing token
// of this claim: strictly greater than any earlier claim's of the task)
// and the claim's lease, kept alive by heartbeats.
type Claim struct {
	Task  Task    `json:"task"`
	Epoch int64   `json:"epoch"`
	Lease LeaseID `json:"lease"`
}

// EpochRequest is the body of a heartbeat, a complete (with Result) and a
// fail (with Error and RetryAfterMs).
type EpochRequest struct {
	Epoch  int64           `json:"epoch"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// RetryAfterMs, when set, is the delay before the next attempt
	// instead of the default backoff.
	RetryAfterMs *int64 `json:"retryAfterMs,omitempty"`
}

// TaskInfo describes a task (GET /v1/queues/{queue}/tasks/{id}).
type TaskInfo struct {
	ID string `json:"id"`
	// State is TaskReady, TaskDelayed, TaskClaimed, TaskDone or TaskDead.
	State string `json:"state"`
	// Attempt counts its claims; Epoch is its last claim's epoch (0 if
	// never claimed).
	Attempt     int   `json:"attempt"`
	MaxAttempts int   `json:"maxAttempts"`
	Epoch       int64 `json:"epoch"`
	// ReadyAtMs is when it is (or was) ready, in Unix milliseconds.
	ReadyAtMs int64           `json:"readyAtMs"`
	Data      json.RawMessage `json:"data"`
	Workflow  string          `json:"workflow,omitempty"`
	// Worker and Lease are the current (or last) claim's.
	Worker string  `json:"worker,omitempty"`
	Lease  LeaseID `json:"lease,omitempty"`
	// Result is a done task's result; Error the last failure's message.
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// TaskList is the answer to GET /v1/queues/{queue}/tasks.
type TaskList struct {
	Tasks []TaskInfo `json:"tasks"`
	// More is set when tasks beyond the limit match: ask again with
	// after set to the last id.
	More bool `json:"more"`
}

// QueueStats counts a queue's tasks by state (GET /v1/queues/{queue}).
type QueueStats struct {
	Queue   string `json:"queue"`
	Ready   int    `json:"ready"`
	Delayed int    `json:"delayed"`
	Claimed int    `json:"claimed"`
	Done    int    `json:"done"`
	Dead    int    `json:"dead"`
}

// Error codes of the queue routes.
const (
	// CodeStaleEpoch (409) means a heartbeat, complete or fail named an
	// epoch that is not the task's current claim: the claim was lost (its
	// lease expired and the task went back, or another worker holds it
	// now) or the task is finished. Nothing was changed.
	CodeStaleEpoch = "stale_epoch"
	// CodeTaskNotFound (404) means the queue has no task with this id.
	CodeTaskNotFound = "task_not_found"
	// CodeQueueFull (422) means the state holds its limit of tasks and
	// none of them is done (done tasks make room for new ones).
	CodeQueueFull = "queue_full"
	// CodeTaskNotDead (409) means a requeue named a task that is not dead.
	CodeTaskNotDead = "task_not_dead"
)

// Sentinel errors of queues.
var (
	// ErrStaleEpoch means an epoch is not the task's current claim.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrTaskNotFound means the queue has no task with this id.
	ErrTaskNotFound = errors.New("task not found")
	// ErrQueueFull means the state holds its limit of tasks, none done.
	ErrQueueFull = errors.New("queue full")
	// ErrTaskNotDead means a requeue named a task that is not dead.
	ErrTaskNotDead = errors.New("task not dead")
	// ErrNoTask means no task of the queue became ready within the wait
	// (HTTP 204, no body).
	ErrNoTask = errors.New("no task ready")
)
