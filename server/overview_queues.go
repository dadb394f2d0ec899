package server

// The queues and schedules of GET /v1/overview.

import (
	"github.com/unrdf/consensus/kv"
)

// overviewQueues is how many queues an overview lists, the first by name.
const overviewQueues = 50

// OverviewQueueBackend is implemented by a Backend that serves task queues
// (kv.Store); /v1/overview leaves queues out without it.
type OverviewQueueBackend interface {
	// QueueOverviews returns the first limit queues holding tasks, by
	// name, and how many there are: local reads.
	QueueOverviews(limit int) ([]kv.QueueOverview, int)
}

// QueuesOverview is the queues of an overview: the first 50 by name, of
// Total queues that hold tasks.
type QueuesOverview struct {
	Total int                `json:"total"`
	Items []kv.QueueOverview `json:"items"`
}

// overviewSchedules is how many schedules an overview lists, the first
// by id.
const overviewSchedules = 50

// OverviewScheduleBackend is implemented by a Backend that serves
// schedules (kv.Store); /v1/overview leaves schedules out without it.
type OverviewScheduleBackend interface {
	// FirstSchedules returns the first limit schedules by id and how
	// many there are: local reads.
	FirstSchedules(limit int) ([]kv.ScheduleInfo, int)
}

// SchedulesOverview is the schedules of an overview: the first 50 by id,
// of Total, each with its next tick.
type SchedulesOverview struct {
	Total int               `json:"total"`
	Items []kv.ScheduleInfo `json:"items"`
}

// overviewQueuesOf reads the queues and schedules into o when the backend
// has them: local reads.
func (h *apiHandler) overviewQueuesOf(o *Overview) {
	if qb, ok := h.backend.(OverviewQueueBackend); ok {
		items, total := qb.QueueOverviews(overviewQueues)
		o.Queues = &QueuesOverview{Total: total, Items: items}
	}
	if sb, ok := h.backend.(OverviewScheduleBackend); ok {
		items, total := sb.FirstSchedules(overviewSchedules)
		for i := range items {
			items[i].Data = nil // the payloads are not the dashboard's
		}
		o.Schedules = &SchedulesOverview{Total: total, Items: items}
	}
}
