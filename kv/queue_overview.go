package kv

import (
	"maps"
	"math"
	"slices"
)

// QueueOverview is one queue at a glance, for a dashboard: its tasks by
// state and how long its oldest ready task has waited.
type QueueOverview struct {
	QueueStats
	// OldestReadyAgeMs is how long the queue's first ready task (the
	// next to be claimed) has been ready, by the state's clock: since its
	// runAt, or since it was enqueued. Nil when no task is ready, or when
	// that time is not known: a task enqueued before this node last
	// restored a snapshot, ready since its enqueue (snapshots do not keep
	// enqueue times).
	OldestReadyAgeMs *int64 `json:"oldestReadyAgeMs,omitempty"`
}

// QueueOverviews returns the first limit queues that hold tasks, by
// name, each with its counts and the age of its oldest ready task, and
// how many queues hold tasks. Each queue is read on its own, not all at
// one revision. nowMs is the caller's clock; the state's own, if later,
// is used instead.
func (m *Machine) QueueOverviews(limit int, nowMs int64) ([]QueueOverview, int) {
	m.mu.RLock()
	names := slices.Sorted(maps.Keys(m.queueCounts))
	now := max(nowMs, m.clock)
	m.mu.RUnlock()
	out := make([]QueueOverview, 0, min(limit, len(names)))
	for _, q := range names[:min(limit, len(names))] {
		o := QueueOverview{QueueStats: m.QueueStats(q, now)}
		if o.Ready > 0 {
			o.OldestReadyAgeMs = m.oldestReadyAge(q, now)
		}
		out = append(out, o)
	}
	return out, len(names)
}

// QueueOverviews is Machine.QueueOverviews by this node's clock, read
// locally (a dashboard's view: no round to the leader).
func (s *Store) QueueOverviews(limit int) ([]QueueOverview, int) {
	return s.machine.QueueOverviews(limit, s.now().UnixMilli())
}

// oldestReadyAge is QueueOverview.OldestReadyAgeMs of queue at now.
func (m *Machine) oldestReadyAge(queue string, now int64) *int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var since int64
	m.taskReady.AscendGreaterOrEqual(readyKey{queue: queue, at: math.MinInt64}, func(k readyKey) bool {
		if k.queue != queue || k.at > now {
			return false
		}
		since = k.at
		if t, ok := m.tasks.Get(task{queue: k.queue, id: k.id}); ok && since == 0 {
			since = t.enqueuedAt
		}
		return false
	})
	if since <= 0 {
		return nil
	}
	age := max(0, now-since)
	return &age
}

// FirstSchedules is Machine.FirstSchedules, read locally.
func (s *Store) FirstSchedules(limit int) ([]ScheduleInfo, int) {
	return s.machine.FirstSchedules(limit)
}
