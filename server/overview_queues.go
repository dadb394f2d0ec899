package server

// The queues and schedules of GET /v1/overview.

import (
	"context"

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
	// Schedules returns every schedule, by id (at most
	// kv.DefaultMaxSchedules of them).
	Schedules(ctx context.Context, c kv.Consistency) ([]kv.ScheduleInfo, error)
}

// SchedulesOverview is the schedules of an overview: the first 50 by id,
// of Total, each with its next tick.
type SchedulesOverview struct {
	Total int               `json:"total"`
	Items []kv.ScheduleInfo `json:"items"`
}

// overviewQueuesOf reads the queues and schedules into o when the backend
// has them: local reads.
func (h *apiHandler) overviewQueuesOf(ctx context.Context, o *Overview) error {
	if qb, ok := h.backend.(OverviewQueueBackend); ok {
		items, total := qb.QueueOverviews(overviewQueues)
		o.Queues = &QueuesOverview{Total: total, Items: items}
	}
	if sb, ok := h.backend.(OverviewScheduleBackend); ok {
		all, err := sb.Schedules(ctx, kv.Local)
		if err != nil {
			return err
		}
		o.Schedules = &SchedulesOverview{Total: len(all), Items: all[:min(len(all), overviewSchedules)]}
		for i := range o.Schedules.Items {
			o.Schedules.Items[i].Data = nil // the payloads are not the dashboard's
		}
	}
	return nil
}
