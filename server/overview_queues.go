package server

// The queues of GET /v1/overview.

import "github.com/unrdf/consensus/kv"

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

// overviewQueuesOf reads the queues into o when the backend has them.
func (h *apiHandler) overviewQueuesOf(o *Overview) {
	qb, ok := h.backend.(OverviewQueueBackend)
	if !ok {
		return
	}
	items, total := qb.QueueOverviews(overviewQueues)
	o.Queues = &QueuesOverview{Total: total, Items: items}
}
