package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/btree"

	"github.com/unrdf/consensus/api"
)

// Workflow history.
//
// Each event of a workflow's history is an item of its own, written in
// the apply of the change it records, under
// workflow-history:<id>/<revision, 20 digits>: it has a revision, is in
// every snapshot, and can be watched like any key. A workflow command's
// event shares the command's revision (like a batch); task events, of
// commands that change no key, each take a revision of their own after
// the command's other changes. Only commands that carry History (all
// that this version encodes) write it: entries from before it replay as
// they did. History is kept for a workflow while
// workflow:<id> exists: at most historyKeep events per workflow and
// historyTotal in all, the oldest dropped (a delete at the new event's
// revision) when a new one comes: the workflow's own oldest beyond
// historyKeep, then the oldest of any workflow beyond historyTotal.
// History items are not keys for the key limit (WithMaxKeys) nor for
// Stats.Keys: their own bounds hold them.

// WorkflowHistoryPrefix is the reserved prefix of workflow histories
// (api.WorkflowHistoryPrefix).
const WorkflowHistoryPrefix = api.WorkflowHistoryPrefix

// Default bounds of workflow history (WithWorkflowHistory).
const (
	// DefaultWorkflowHistory is the most events one workflow keeps.
	DefaultWorkflowHistory = api.DefaultWorkflowHistory
	// DefaultWorkflowHistoryTotal is the most events all workflows keep.
	DefaultWorkflowHistoryTotal = 100_000
)

// WorkflowEvent is one event of a workflow's history (api.WorkflowEvent).
type WorkflowEvent = api.WorkflowEvent

// WorkflowHistory is a page of a workflow's history (api.WorkflowHistory).
type WorkflowHistory = api.WorkflowHistory

// WithWorkflowHistory sets how many events each workflow's history keeps
// and how many all of them keep together (defaults
// DefaultWorkflowHistory, DefaultWorkflowHistoryTotal; 0 keeps none).
// Like every limit of the state, it must be configured alike on every
// node.
func WithWorkflowHistory(perWorkflow, total int) Option {
	return func(m *Machine) { m.historyKeep, m.historyTotal = max(perWorkflow, 0), max(total, 0) }
}

// pendingEvent is a task event recorded during an apply, written when the
// command's other changes are (flushHistory).
type pendingEvent struct {
	workflow string
	ev       WorkflowEvent
}

// historyRef is a history item in the order events are dropped: by
// creation revision.
type historyRef struct {
	rev int64
	key string
}

func historyRefLess(a, b historyRef) bool {
	if a.rev != b.rev {
		return a.rev < b.rev
	}
	return a.key < b.key
}

// historyIndex is derived from the history items (never iterated in
// apply but in order, never replicated): every item by creation revision,
// and the counts of the workflows asked about. It is valid for the items
// tree it was built from; a restore, which replaces the tree, makes the
// next apply rebuild it.
type historyIndex struct {
	items *itemTree
	order *btree.BTreeG[historyRef]
	n     map[string]int
}

// historyWorkflow returns the workflow id of a history key.
func historyWorkflow(key string) string {
	rest := strings.TrimPrefix(key, WorkflowHistoryPrefix)
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return rest
}

// historyIdx returns the index, rebuilt if the items tree changed. Apply
// only (it writes).
func (m *Machine) historyIdx() *historyIndex {
	if m.history.items != m.items || m.history.order == nil {
		idx := historyIndex{items: m.items, order: btree.NewG(btreeDegree, historyRefLess), n: make(map[string]int)}
		m.ascendPrefixKeys(WorkflowHistoryPrefix, func(it Item) bool {
			idx.order.ReplaceOrInsert(historyRef{rev: it.CreateRevision, key: it.Key})
			return true
		})
		m.history = idx
	}
	return &m.history
}

// historyTouched keeps the index true when history item it is created
// (delta 1) or removed (-1). Called by put and remove before they change
// the tree.
func (m *Machine) historyTouched(it Item, delta int) {
	idx := m.historyIdx()
	ref := historyRef{rev: it.CreateRevision, key: it.Key}
	if delta > 0 {
		idx.order.ReplaceOrInsert(ref)
	} else {
		idx.order.Delete(ref)
	}
	wf := historyWorkflow(it.Key)
	if n, ok := idx.n[wf]; ok {
		if n += delta; n > 0 {
			idx.n[wf] = n
		} else {
			delete(idx.n, wf)
		}
	}
}

// historyItems returns how many history items the state holds, without
// changing the index (readers hold the read lock only).
func (m *Machine) historyItems() int {
	if m.history.items == m.items && m.history.order != nil {
		return m.history.order.Len()
	}
	n := 0
	m.ascendPrefixKeys(WorkflowHistoryPrefix, func(Item) bool {
		n++
		return true
	})
	return n
}

// keyCount is the number of keys for the key limit: history items are not
// counted. Apply only; readers use keysRead.
func (m *Machine) keyCount() int { return m.items.Len() - m.historyIdx().order.Len() }

// keysRead is keyCount for readers (Stats, Len), who hold the read lock.
func (m *Machine) keysRead() int { return m.items.Len() - m.historyItems() }

// recordTask records event typ of task t, if it names a workflow, at the
// state machine's clock; claim adds the claim's epoch and worker.
func (m *Machine) recordTask(t task, typ string, claim bool) {
	if t.workflow == "" || m.historyKeep == 0 || !m.recordHistory {
		return
	}
	ev := WorkflowEvent{Type: typ, Time: api.HistoryTime(m.clock), Queue: t.queue, Task: t.id, Attempt: t.attempt}
	if claim {
		ev.Epoch, ev.Worker = t.epoch, t.worker
	}
	switch typ {
	case api.HistoryFailed, api.HistoryRetried, api.HistoryDead:
		ev.Error = t.err
	}
	if t.state == taskWaiting && t.readyAt > m.clock {
		ev.ReadyAt = api.HistoryTime(t.readyAt)
	}
	m.pendingHistory = append(m.pendingHistory, pendingEvent{workflow: t.workflow, ev: ev})
}

// flushHistory writes the task events the command recorded, each at a
// revision of its own, and publishes them together; a command that failed
// (changed nothing) writes none.
func (m *Machine) flushHistory(applied bool) {
	if len(m.pendingHistory) == 0 {
		return
	}
	pending := m.pendingHistory
	m.pendingHistory = m.pendingHistory[:0]
	if !applied {
		return
	}
	var evs []Event
	for _, p := range pending {
		evs = m.appendHistory(p.workflow, p.ev, true, evs)
	}
	clear(pending)
	m.publish(evs...)
}

// appendHistory writes ev as workflow wf's newest event, at a new revision
// (bump) or the current one, dropping the oldest events beyond the
// bounds, and returns evs with the changes appended. Nothing is written
// when wf keeps no history (no workflow:<wf>).
func (m *Machine) appendHistory(wf string, ev WorkflowEvent, bump bool, evs []Event) []Event {
	if !m.recordHistory || m.historyKeep == 0 || m.historyTotal == 0 || strings.Contains(wf, "/") {
		return evs
	}
	if _, ok := m.items.GetKey(Item{Key: WorkflowPrefix + wf}); !ok {
		return evs
	}
	rev := m.revision
	if bump {
		rev++
	}
	key := api.WorkflowHistoryKey(wf, rev)
	value, err := json.Marshal(ev)
	if err != nil || checkTextKey(key, m.maxKeyBytes) != nil || checkValue(value, m.maxValueBytes) != nil {
		return evs
	}
	m.revision = rev
	prefix := api.WorkflowHistoryKeyPrefix(wf)
	for m.historyLen(wf, prefix) >= m.historyKeep {
		var oldest Item
		m.ascendPrefixKeys(prefix, func(it Item) bool {
			oldest = it
			return false
		})
		evs = append(evs, m.remove(oldest.Key))
	}
	for idx := m.historyIdx(); idx.order.Len() >= m.historyTotal; {
		oldest, _ := idx.order.Min()
		evs = append(evs, m.remove(oldest.key))
	}
	return append(evs, Event{Type: EventPut, Item: m.put(key, value, 0, Item{}, false)})
}

// historyLen returns how many events workflow wf's history holds.
func (m *Machine) historyLen(wf, prefix string) int {
	idx := m.historyIdx()
	if n, ok := idx.n[wf]; ok {
		return n
	}
	n := 0
	m.ascendPrefixKeys(prefix, func(Item) bool {
		n++
		return true
	})
	if n > 0 {
		idx.n[wf] = n
	}
	return n
}

// checkHistoryWrite refuses a request to put key when it is under the
// reserved history prefix: history is written by the state machine only.
func checkHistoryWrite(key string) *applyError {
	if strings.HasPrefix(key, WorkflowHistoryPrefix) {
		return fail(ErrInvalidKey, "key %q is under %q, reserved for workflow history, which only the state machine writes", key, WorkflowHistoryPrefix)
	}
	return nil
}

// WorkflowHistory returns up to limit kept events of workflow id from
// revision from on, oldest first, the revision read at and whether more
// follow; known is false when there is neither workflow:<id> nor any
// event of it.
func (m *Machine) WorkflowHistory(id string, from int64, limit int) (events []WorkflowEvent, rev int64, more, known bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	prefix := api.WorkflowHistoryKeyPrefix(id)
	_, known = m.items.GetKey(Item{Key: WorkflowPrefix + id})
	m.ascendPrefixKeys(prefix, func(Item) bool {
		known = true
		return false
	})
	events = make([]WorkflowEvent, 0)
	start := prefix
	if from > 0 {
		start = api.WorkflowHistoryKey(id, from)
	}
	m.items.AscendGreaterOrEqual(Item{Key: start}, func(it Item) bool {
		if !strings.HasPrefix(it.Key, prefix) {
			return false
		}
		ev, ok := api.WorkflowEventFromItem(it)
		if !ok || ev.Revision < from {
			return true
		}
		if len(events) == limit {
			more = true
			return false
		}
		events = append(events, ev)
		return true
	})
	return events, m.revision, more, known
}

// WorkflowHistory returns up to limit (1 to api.MaxWorkflowHistoryPage)
// kept events of workflow id from revision fromRevision on (0: from the
// oldest kept), oldest first. ErrWorkflowNotFound if there is neither
// workflow:<id> nor any event of it.
func (s *Store) WorkflowHistory(ctx context.Context, id string, fromRevision int64, limit int, c Consistency) (WorkflowHistory, error) {
	if err := checkRequestID("workflow", id, s.machine.maxKeyBytes); err != nil {
		return WorkflowHistory{}, err
	}
	if fromRevision < 0 {
		return WorkflowHistory{}, fmt.Errorf("kv: workflow %q history from revision %d: %w", id, fromRevision, ErrInvalidRevision)
	}
	if limit < 1 || limit > api.MaxWorkflowHistoryPage {
		return WorkflowHistory{}, fail(ErrBadCommand, "limit %d, want 1 to %d", limit, api.MaxWorkflowHistoryPage)
	}
	if err := s.sync(ctx, c); err != nil {
		return WorkflowHistory{}, err
	}
	events, rev, more, known := s.machine.WorkflowHistory(id, fromRevision, limit)
	if !known {
		return WorkflowHistory{}, fmt.Errorf("kv: workflow %q history: %w", id, ErrWorkflowNotFound)
	}
	return WorkflowHistory{Workflow: id, Events: events, Revision: rev, More: more}, nil
}
