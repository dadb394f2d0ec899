package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/unrdf/consensus/api"
)

// StartWorkflow starts workflow id with fields (a JSON object, or nil):
// workflow:<id> becomes {...fields, "id", "status":"running",
// "startedAt"}. Starting a running workflow fails with
// kv.ErrInvalidTransition.
func (c *Client) StartWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowStart, id, fields)
}

// StopWorkflow stops a running workflow, merging fields (or nil) into it;
// kv.ErrWorkflowNotFound or kv.ErrInvalidTransition otherwise.
func (c *Client) StopWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowStop, id, fields)
}

// UpdateWorkflowState merges fields, a JSON object, into a running
// workflow (UPDATE_STATE).
func (c *Client) UpdateWorkflowState(ctx context.Context, id string, fields []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpWorkflowUpdate, id, fields)
}

// RegisterNode registers application node id with metadata (a JSON
// object, or nil) under node:<id>.
func (c *Client) RegisterNode(ctx context.Context, id string, metadata []byte) (int64, error) {
	return c.workflowWrite(ctx, api.OpNodeRegister, id, metadata)
}

// RegisterNodeWith is RegisterNode with liveness: o.Lease (a lease the
// node keeps alive, such as a Session's) or o.TTL (a lease of the
// registration's own) deregisters the node when the lease goes. o.Cond is
// not used. Both a lease and a time to live fail with kv.ErrInvalidTTL
// before anything is sent.
func (c *Client) RegisterNodeWith(ctx context.Context, id string, metadata []byte, o PutOptions) (int64, error) {
	r := api.Request{Op: api.OpNodeRegister, Key: id, Value: metadata, Lease: o.Lease}
	if o.TTL != 0 {
		if o.Lease != 0 {
			return 0, fmt.Errorf("client: register node %q: a lease or a time to live, not both: %w", id, api.ErrInvalidTTL)
		}
		ms, err := ttlMs(o.TTL)
		if err != nil {
			return 0, fmt.Errorf("client: register node %q: %w", id, err)
		}
		r.TTLMs = ms
	}
	if o.Lease < 0 {
		return 0, fmt.Errorf("client: register node %q: lease %d: %w", id, int64(o.Lease), api.ErrInvalidLeaseID)
	}
	resp, err := c.doWrite(ctx, &r)
	return resp.revision, err
}

// DeregisterNode removes application node id; kv.ErrNodeNotFound if it is
// not registered.
func (c *Client) DeregisterNode(ctx context.Context, id string) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpNodeDeregister, Key: id})
	return resp.revision, err
}

func (c *Client) workflowWrite(ctx context.Context, op api.Op, id string, fields []byte) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: op, Key: id, Value: fields})
	return resp.revision, err
}

// WorkflowState returns workflow id (the seed's getWorkflowState); an
// error wrapping kv.ErrWorkflowNotFound if there is none.
func (c *Client) WorkflowState(ctx context.Context, id string, opts ...ReadOption) (api.Workflow, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpWorkflowGet, Key: id, Consistency: readConsistency(opts)})
	if err != nil {
		return api.Workflow{}, err
	}
	return api.WorkflowFromItem(resp.item), nil
}

// Workflows returns every workflow, by id, and the revision read at.
func (c *Client) Workflows(ctx context.Context, opts ...ReadOption) ([]api.Workflow, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpWorkflowList, Consistency: readConsistency(opts)})
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.Workflow, len(resp.items))
	for i, it := range resp.items {
		out[i] = api.WorkflowFromItem(it)
	}
	return out, resp.revision, nil
}

// Nodes returns the registered application nodes, by id, and the revision
// read at.
func (c *Client) Nodes(ctx context.Context, opts ...ReadOption) ([]api.Node, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpNodeList, Consistency: readConsistency(opts)})
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.Node, len(resp.items))
	for i, it := range resp.items {
		out[i] = api.NodeFromItem(it)
	}
	return out, resp.revision, nil
}

// WorkflowHistory returns one page of workflow id's history (/v1/ws op
// 55, as GET /v1/workflows/{id}/history answers it): the kept events from revision fromRevision
// on (0: from the oldest kept), oldest first, at most
// api.MaxWorkflowHistoryPage or WithLimit's n. When the page's More is
// set, ask again from its last event's Revision + 1. An unknown workflow
// is an error wrapping kv.ErrWorkflowNotFound. To follow the history live,
// Watch api.WorkflowHistoryKeyPrefix(id) from the page's Revision + 1
// (each put is an event: api.WorkflowEventFromItem).
func (c *Client) WorkflowHistory(ctx context.Context, id string, fromRevision int64, opts ...ReadOption) (api.WorkflowHistory, error) {
	if id == "" {
		return api.WorkflowHistory{}, fmt.Errorf("client: workflow history: empty id: %w", api.ErrInvalidKey)
	}
	if fromRevision < 0 {
		return api.WorkflowHistory{}, fmt.Errorf("client: workflow %q history from revision %d: %w", id, fromRevision, api.ErrInvalidRevision)
	}
	o := readOpts(opts)
	req := &api.Request{Op: api.OpWorkflowHistory, Key: id, Revision: fromRevision, Consistency: o.consistency}
	if o.limit > 0 {
		req.Limit = int64(min(o.limit, api.MaxWorkflowHistoryPage))
	}
	resp, err := c.doRequest(ctx, req)
	if err != nil {
		return api.WorkflowHistory{}, fmt.Errorf("client: workflow %q history: %w", id, err)
	}
	var page api.WorkflowHistory
	if err := json.Unmarshal(resp.json, &page); err != nil {
		return api.WorkflowHistory{}, fmt.Errorf("client: workflow %q history: decoding the answer: %w", id, err)
	}
	return page, nil
}
