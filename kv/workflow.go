package kv

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/unrdf/consensus/api"
)

// Key prefixes of the workflow and node views (see api.WorkflowPrefix).
const (
	WorkflowPrefix = api.WorkflowPrefix
	NodePrefix     = api.NodePrefix
)

// Workflow statuses set by the workflow commands. A workflow written
// through the key-value API may carry any status; only "running" ones can
// be updated or stopped.
const (
	StatusRunning = api.StatusRunning
	StatusStopped = api.StatusStopped
)

// Workflow is the state of one workflow: the JSON object stored under
// workflow:<id>, with the fields the commands maintain pulled out.
type Workflow = api.Workflow

// Node is an application node registered in the state (REGISTER_NODE):
// the JSON object stored under node:<id>. It is not a raft member.
type Node = api.Node

// WorkflowFromItem interprets an item under workflow:<id> as a workflow.
func WorkflowFromItem(it Item) Workflow { return api.WorkflowFromItem(it) }

// NodeFromItem interprets an item under node:<id> as a registered node.
func NodeFromItem(it Item) Node { return api.NodeFromItem(it) }

// statusOf returns the "status" string of a JSON object, or "".
func statusOf(v []byte) string { return api.StatusOf(v) }

// checkID validates a workflow or node id: a non-empty UTF-8 string
// without "/" (it is one URL path segment), short enough for its key.
func checkID(what, id string, maxKey int) *applyError {
	switch {
	case id == "":
		return fail(ErrInvalidKey, "empty %s id", what)
	case strings.Contains(id, "/"):
		return fail(ErrInvalidKey, "%s id %q contains \"/\"", what, id)
	}
	return checkTextKey(id, maxKey-len(WorkflowPrefix))
}

// parseFields parses v, a JSON object (or nothing), into its fields.
func parseFields(what string, v []byte, limit int) (map[string]json.RawMessage, *applyError) {
	fields := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(v)) == 0 {
		return fields, nil
	}
	if err := checkValue(v, limit); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(v, &fields); err != nil || fields == nil {
		return nil, fail(ErrInvalidValue, "%s fields must be a JSON object", what)
	}
	return fields, nil
}

// encodeFields encodes an object deterministically: encoding/json sorts
// map keys.
func encodeFields(fields map[string]json.RawMessage) []byte {
	b, err := json.Marshal(fields)
	if err != nil {
		// Every value came from a parsed JSON document or was built here.
		return []byte(`{}`)
	}
	return b
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func jsonInt(n int64) json.RawMessage {
	b, _ := json.Marshal(n)
	return b
}

// applyWorkflow applies START_WORKFLOW, STOP_WORKFLOW and UPDATE_STATE.
//
// Start creates workflow:<id> as {...fields, "id", "status":"running",
// "startedAt"}; a workflow that exists and is running cannot be started
// again, one in any other status is replaced. Stop and update need a
// running workflow; they merge the given fields into the object (a
// shallow merge, as the seed's {...prev, ...}), stop then sets
// "status":"stopped" and "stoppedAt", update sets "updatedAt". "id" and
// "status" are never taken from fields.
func (m *Machine) applyWorkflow(c *command) *applyError {
	if err := checkID("workflow", c.Key, m.maxKeyBytes); err != nil {
		return err
	}
	key := WorkflowPrefix + c.Key
	cur, exists := m.items.Get(Item{Key: key})
	fields, err := parseFields("workflow", c.Value, m.maxValueBytes)
	if err != nil {
		return err
	}
	delete(fields, "id")
	delete(fields, "status")
	var obj map[string]json.RawMessage
	switch c.Op {
	case opWorkflowStart:
		if exists && statusOf(cur.Value) == StatusRunning {
			return fail(ErrInvalidTransition, "start workflow %q: it is already running", c.Key)
		}
		obj = fields
		obj["status"] = jsonString(StatusRunning)
		if c.At != 0 {
			obj["startedAt"] = jsonInt(c.At)
		}
	default:
		if !exists {
			return fail(ErrWorkflowNotFound, "%v %q", c.Op, c.Key)
		}
		if st := statusOf(cur.Value); st != StatusRunning {
			return fail(ErrInvalidTransition, "%v %q: it is %q, not running", c.Op, c.Key, st)
		}
		if json.Unmarshal(cur.Value, &obj) != nil || obj == nil {
			return fail(ErrInvalidTransition, "%v %q: the stored value is not a JSON object", c.Op, c.Key)
		}
		// Sorted, though any order gives the same object: apply never
		// depends on map iteration order.
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			obj[k] = fields[k]
		}
		stamp := "updatedAt"
		if c.Op == opWorkflowStop {
			obj["status"] = jsonString(StatusStopped)
			stamp = "stoppedAt"
		}
		if c.At != 0 {
			obj[stamp] = jsonInt(c.At)
		}
	}
	obj["id"] = jsonString(c.Key)
	value := encodeFields(obj)
	if err := checkValue(value, m.maxValueBytes); err != nil {
		return err
	}
	if !exists && m.keyCount() >= m.maxKeys {
		return m.full(key)
	}
	m.revision++
	evs := []Event{{Type: EventPut, Item: m.put(key, value, 0, cur, exists)}}
	ev := WorkflowEvent{Type: api.HistoryUpdated}
	switch c.Op {
	case opWorkflowStart:
		ev.Type = api.HistoryStarted
	case opWorkflowStop:
		ev.Type = api.HistoryStopped
	}
	if c.At != 0 {
		ev.Time = api.HistoryTime(c.At)
	}
	// The event shares the command's revision: one change, seen together.
	m.publish(m.appendHistory(c.Key, ev, false, evs)...)
	return nil
}

// applyNode applies REGISTER_NODE (create or replace node:<id> with the
// metadata, "id" and "registeredAt") and DEREGISTER_NODE (delete it).
func (m *Machine) applyNode(c *command) *applyError {
	if err := checkID("node", c.Key, m.maxKeyBytes); err != nil {
		return err
	}
	key := NodePrefix + c.Key
	cur, exists := m.items.Get(Item{Key: key})
	if c.Op == opNodeDeregister {
		if !exists {
			return fail(ErrNodeNotFound, "deregister node %q", c.Key)
		}
		m.revision++
		m.publish(m.remove(key))
		return nil
	}
	obj, err := parseFields("node", c.Value, m.maxValueBytes)
	if err != nil {
		return err
	}
	obj["id"] = jsonString(c.Key)
	if c.At != 0 {
		obj["registeredAt"] = jsonInt(c.At)
	}
	value := encodeFields(obj)
	if err := checkValue(value, m.maxValueBytes); err != nil {
		return err
	}
	if !exists && m.keyCount() >= m.maxKeys {
		return m.full(key)
	}
	// A node registered with a lease (or a time to live of its own) is
	// deregistered when it goes: its liveness.
	switch {
	case c.TTL != 0:
		if err := m.checkGrant(c.Lease, c.TTL); err != nil {
			return err
		}
	case c.Lease != 0:
		if err := m.checkAttach(key, c.Lease, cur, exists); err != nil {
			return err
		}
	}
	if c.TTL != 0 {
		m.grant(c.Lease, c.TTL, true)
	}
	m.revision++
	m.publish(Event{Type: EventPut, Item: m.put(key, value, c.Lease, cur, exists)})
	return nil
}
