package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WorkflowHistoryPrefix is the reserved key prefix of workflow histories:
// each event of workflow id is the JSON object (a WorkflowEvent without
// its revision) stored under WorkflowHistoryKey(id, revision). Only the
// state machine writes there; a request that would put a key under it is
// refused with ErrInvalidKey (deleting such keys is allowed: it cannot
// forge an event).
const WorkflowHistoryPrefix = "workflow-history:"

// DefaultWorkflowHistory is how many events a workflow's history keeps by
// default: a newer event drops the oldest beyond it in the same apply.
const DefaultWorkflowHistory = 1000

// MaxWorkflowHistoryPage bounds the events of one history read (GET
// /v1/workflows/{id}/history as JSON).
const MaxWorkflowHistoryPage = 1000

// Workflow history event types.
const (
	HistoryStarted      = "started"       // START_WORKFLOW
	HistoryStepEnqueued = "step_enqueued" // a task naming the workflow was enqueued
	HistoryClaimed      = "claimed"       // a worker claimed it (epoch, worker)
	HistoryCompleted    = "completed"     // its current claim completed it
	HistoryFailed       = "failed"        // its current claim failed it (error)
	HistoryRetried      = "retried"       // it waits for another attempt (readyAt)
	HistoryDead         = "dead"          // its attempts are used up
	HistoryUpdated      = "updated"       // UPDATE_STATE
	HistoryStopped      = "stopped"       // STOP_WORKFLOW
)

// WorkflowEvent is one event of a workflow's history.
type WorkflowEvent struct {
	// Revision is the event's revision (its key's): events of one
	// workflow have increasing revisions. Not stored in the value.
	Revision int64 `json:"revision,omitempty"`
	// Type is one of the History* constants.
	Type string `json:"type"`
	// Time is when it happened by the proposer's clock (the leader's for
	// task events), RFC 3339 in UTC with milliseconds.
	Time string `json:"time,omitempty"`
	// Queue and Task name the task of a task event; Attempt is its
	// attempt (claims so far).
	Queue   string `json:"queue,omitempty"`
	Task    string `json:"task,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	// Epoch and Worker are the claim's, for claimed, completed and failed
	// events, and for retried and dead events that end a claim.
	Epoch  int64  `json:"epoch,omitempty"`
	Worker string `json:"worker,omitempty"`
	// Error is a failure's message (failed, and retried or dead after a
	// failure or a lost claim).
	Error string `json:"error,omitempty"`
	// ReadyAt is when a delayed or retried task becomes ready (RFC 3339).
	ReadyAt string `json:"readyAt,omitempty"`
}

// WorkflowHistory is one page of a workflow's history: the answer of GET
// /v1/workflows/{id}/history.
type WorkflowHistory struct {
	// Workflow is the workflow's id.
	Workflow string `json:"workflow"`
	// Events are the kept events from the revision asked for on, oldest
	// first.
	Events []WorkflowEvent `json:"events"`
	// Revision is the revision of the state read: every event up to it is
	// in Events or on a later page.
	Revision int64 `json:"revision"`
	// More is true when the page is full and more events follow: ask
	// again from the last event's revision + 1.
	More bool `json:"more"`
}

// WorkflowHistoryKey is the key of workflow id's event at revision rev:
// the revision zero-padded to 20 digits, so that keys sort as revisions.
func WorkflowHistoryKey(id string, rev int64) string {
	return fmt.Sprintf("%s%s/%020d", WorkflowHistoryPrefix, id, rev)
}

// WorkflowHistoryKeyPrefix is the prefix of workflow id's events.
func WorkflowHistoryKeyPrefix(id string) string {
	return WorkflowHistoryPrefix + id + "/"
}

// WorkflowEventFromItem interprets an item under
// WorkflowHistoryKeyPrefix(id) as an event; false if it is not one.
func WorkflowEventFromItem(it Item) (WorkflowEvent, bool) {
	i := strings.LastIndexByte(it.Key, '/')
	if !strings.HasPrefix(it.Key, WorkflowHistoryPrefix) || i < 0 {
		return WorkflowEvent{}, false
	}
	if _, err := strconv.ParseUint(it.Key[i+1:], 10, 63); err != nil {
		return WorkflowEvent{}, false
	}
	var ev WorkflowEvent
	if json.Unmarshal(it.Value, &ev) != nil || ev.Type == "" {
		return WorkflowEvent{}, false
	}
	ev.Revision = it.Revision
	return ev, true
}

// HistoryTime formats a time of the state machine's clock (Unix ms) as a
// WorkflowEvent's Time: RFC 3339, UTC, milliseconds.
func HistoryTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
