package api

import (
	"encoding/json"
	"errors"
)

// Schedule limits.
const (
	// MaxScheduleIDBytes bounds a schedule's id: the ids of the tasks it
	// enqueues, "sched:<id>:<unix-ms>", must fit MaxTaskIDBytes.
	MaxScheduleIDBytes = MaxTaskIDBytes - len("sched::") - 20
	// MaxCronBytes bounds a cron expression.
	MaxCronBytes = 256
	// MinScheduleEveryMs and MaxScheduleEveryMs bound a fixed interval:
	// one second (a cron expression's finest step) to 30 days.
	MinScheduleEveryMs = 1000
	MaxScheduleEveryMs = MaxLeaseTTLMs
	// ScheduleCatchUp is the most missed ticks of one schedule enqueued
	// when a leader finds them due at once (after a time without a
	// leader): the newest ones; the older ones are skipped and counted
	// (ScheduleInfo.Skipped).
	ScheduleCatchUp = 100
)

// ScheduleTaskPrefix begins the id of every task a schedule enqueues:
// "sched:<schedule id>:<tick in Unix ms>".
const ScheduleTaskPrefix = "sched:"

// ScheduleRequest is the body of PUT /v1/schedules/{id}: exactly one of
// Cron and EveryMs.
type ScheduleRequest struct {
	// Cron is a cron expression of 5 fields (minute hour day-of-month
	// month day-of-week) or 6 (seconds first), or a descriptor such as
	// @hourly, evaluated in UTC.
	Cron string `json:"cron,omitempty"`
	// EveryMs is a fixed interval: the schedule ticks at each multiple of
	// it since the Unix epoch.
	EveryMs int64 `json:"everyMs,omitempty"`
	// Queue is the queue each tick's task goes to.
	Queue string `json:"queue"`
	// Data is each task's payload, any JSON value.
	Data json.RawMessage `json:"data"`
}

// ScheduleInfo describes a schedule (GET /v1/schedules/{id}).
type ScheduleInfo struct {
	ID      string          `json:"id"`
	Cron    string          `json:"cron,omitempty"`
	EveryMs int64           `json:"everyMs,omitempty"`
	Queue   string          `json:"queue"`
	Data    json.RawMessage `json:"data"`
	// NextTickMs is its next tick in Unix ms (0: it never ticks again);
	// NextTick the same in RFC 3339.
	NextTickMs int64  `json:"nextTickMs"`
	NextTick   string `json:"nextTick,omitempty"`
	// LastTickMs is the last tick it fired, in Unix ms (0: none yet);
	// LastTick the same in RFC 3339.
	LastTickMs int64  `json:"lastTickMs"`
	LastTick   string `json:"lastTick,omitempty"`
	// Fired counts the ticks it enqueued; Skipped the missed ticks beyond
	// the catch-up limit (ScheduleCatchUp), and ticks whose task the
	// state had no room for.
	Fired   int64 `json:"fired"`
	Skipped int64 `json:"skipped"`
	// Revision is the log index of the put that made it as it is.
	Revision int64 `json:"revision"`
}

// ScheduleList is the answer to GET /v1/schedules.
type ScheduleList struct {
	Schedules []ScheduleInfo `json:"schedules"`
}

// SchedulePut is the answer to PUT /v1/schedules/{id}.
type SchedulePut struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

// CodeScheduleNotFound (404) means no schedule has this id.
const CodeScheduleNotFound = "schedule_not_found"

// ErrScheduleNotFound means no schedule has this id.
var ErrScheduleNotFound = errors.New("schedule not found")
