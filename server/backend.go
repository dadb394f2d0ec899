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
// errors to choose the HTTP status.
type Backend interface {
	// Put stores value (a valid, compact JSON value) under key and returns
	// the write's revision.
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// Get returns the item stored under key.
	Get(ctx context.Context, key string, c kv.Consistency) (kv.Item, error)
	// Delete removes key and returns the delete's revision.
	Delete(ctx context.Context, key string) (int64, error)
	// List returns the items whose keys start with prefix, sorted by key,
	// and the store's revision at the time of the read.
	List(ctx context.Context, prefix string, c kv.Consistency) ([]kv.Item, int64, error)
	// Status describes the node.
	Status() consensus.Status
	// Ready returns nil when the node can serve requests (it knows a
	// leader), or an error saying why not.
	Ready() error
}
