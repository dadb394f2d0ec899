package server

import (
	"context"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
)

// Backend is what the HTTP API serves: one node's key-value store and
// status. kv.Store with its consensus.Node implements it in production;
// tests may supply a fake.
//
// Errors are matched with errors.Is against kv's and consensus's sentinel
// errors to choose the HTTP status. A write whose context carries a
// kv.RequestID (the X-Client-Id and X-Request-Seq headers) is applied at
// most once per id.
type Backend interface {
	// Put stores value (a valid, compact JSON value) under key and returns
	// the write's revision.
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// PutIf is Put under a precondition on the key's revision
	// (kv.ErrConflict when it fails).
	PutIf(ctx context.Context, key string, value []byte, cond kv.Cond) (int64, error)
	// Get returns the item stored under key.
	Get(ctx context.Context, key string, c kv.Consistency) (kv.Item, error)
	// Delete removes key and returns the delete's revision.
	Delete(ctx context.Context, key string) (int64, error)
	// DeleteIf is Delete under a precondition on the key's revision.
	DeleteIf(ctx context.Context, key string, cond kv.Cond) (int64, error)
	// Batch applies ops all or nothing at one revision.
	Batch(ctx context.Context, ops []kv.Op) (int64, error)
	// List returns the items whose keys start with prefix, sorted by key,
	// and the store's revision at the time of the read.
	List(ctx context.Context, prefix string, c kv.Consistency) ([]kv.Item, int64, error)
	// Stats describes the replicated state.
	Stats(ctx context.Context, c kv.Consistency) (kv.Stats, error)
	// StartWorkflow, StopWorkflow and UpdateWorkflowState are the seed's
	// workflow commands; fields is a JSON object or nil.
	StartWorkflow(ctx context.Context, id string, fields []byte) (int64, error)
	StopWorkflow(ctx context.Context, id string, fields []byte) (int64, error)
	UpdateWorkflowState(ctx context.Context, id string, fields []byte) (int64, error)
	// WorkflowState returns one workflow, Workflows all of them.
	WorkflowState(ctx context.Context, id string, c kv.Consistency) (kv.Workflow, error)
	Workflows(ctx context.Context, c kv.Consistency) ([]kv.Workflow, int64, error)
	// RegisterNode, DeregisterNode and Nodes manage application nodes
	// registered in the state (not raft members).
	RegisterNode(ctx context.Context, id string, metadata []byte) (int64, error)
	DeregisterNode(ctx context.Context, id string) (int64, error)
	Nodes(ctx context.Context, c kv.Consistency) ([]kv.Node, int64, error)
	// Status describes the node.
	Status() consensus.Status
	// Ready returns nil when the node can serve requests (it knows a
	// leader), or an error saying why not.
	Ready() error
}
