package client

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/unrdf/consensus/api"
)

// ReadOption adjusts a read (Get, List).
type ReadOption func(*readOptions)

type readOptions struct {
	consistency api.Consistency
}

// WithConsistency selects how a read is served: kv.Linearizable (the
// default) or kv.Local (this endpoint's state; fast, possibly stale).
func WithConsistency(c api.Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

func readConsistency(opts []ReadOption) api.Consistency {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.consistency
}

// Put stores value, one JSON value, under key and returns the write's
// revision.
func (c *Client) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return c.PutIf(ctx, key, value, api.Cond{})
}

// PutIf is Put on condition that cond holds when it is applied (for
// example kv.IfRevision(item.Revision), or kv.IfAbsent() to create only);
// otherwise it fails with an error wrapping kv.ErrConflict.
func (c *Client) PutIf(ctx context.Context, key string, value []byte, cond api.Cond) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpPut, Key: key, Value: value, Cond: cond})
	return resp.revision, err
}

// Get returns the item under key; an error wrapping kv.ErrKeyNotFound if
// there is none.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (api.Item, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpGet, Key: key, Consistency: readConsistency(opts)})
	return resp.item, err
}

// Delete removes key and returns the delete's revision; an error wrapping
// kv.ErrKeyNotFound if it did not exist.
func (c *Client) Delete(ctx context.Context, key string) (int64, error) {
	return c.DeleteIf(ctx, key, api.Cond{})
}

// DeleteIf is Delete on condition that cond holds; otherwise it fails
// with an error wrapping kv.ErrConflict.
func (c *Client) DeleteIf(ctx context.Context, key string, cond api.Cond) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpDelete, Key: key, Cond: cond})
	return resp.revision, err
}

// Batch applies ops all or nothing, at one revision, which it returns
// (the seed's batchUpdate): every Cond must hold (else kv.ErrConflict),
// every deleted key must exist, and no key may appear twice.
func (c *Client) Batch(ctx context.Context, ops []api.TxnOp) (int64, error) {
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpTxn, Ops: ops})
	return resp.revision, err
}

// Update is an atomic read-modify-write of key (the seed's update): it
// reads the key (linearizably), calls fn, and writes the result on
// condition that the key is still at the revision fn saw; on a conflict
// it reads and calls fn again. fn may therefore run more than once and
// must not have side effects. It returns the write's revision.
func (c *Client) Update(ctx context.Context, key string, fn api.UpdateFunc) (int64, error) {
	for {
		cur, err := c.Get(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, api.ErrKeyNotFound) {
			return 0, err
		}
		value, err := fn(cur, exists)
		if err != nil {
			return 0, err
		}
		rev, err := c.PutIf(ctx, key, value, api.IfRevision(cur.Revision))
		if !errors.Is(err, api.ErrConflict) {
			return rev, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// Keys returns the keys under prefix, sorted, and the revision read at.
func (c *Client) Keys(ctx context.Context, prefix string, opts ...ReadOption) ([]string, int64, error) {
	items, rev, err := c.List(ctx, prefix, opts...)
	keys := make([]string, len(items))
	for i := range items {
		keys[i] = items[i].Key
	}
	return keys, rev, err
}

// Values returns the values under prefix, in key order, and the revision
// read at.
func (c *Client) Values(ctx context.Context, prefix string, opts ...ReadOption) ([]json.RawMessage, int64, error) {
	items, rev, err := c.List(ctx, prefix, opts...)
	values := make([]json.RawMessage, len(items))
	for i := range items {
		values[i] = items[i].Value
	}
	return values, rev, err
}

// Has reports whether key exists.
func (c *Client) Has(ctx context.Context, key string, opts ...ReadOption) (bool, error) {
	_, err := c.Get(ctx, key, opts...)
	if errors.Is(err, api.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns the items whose keys start with prefix, sorted by key, and
// the revision they were read at. The empty prefix lists every key.
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) ([]api.Item, int64, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpList, Key: prefix, Consistency: readConsistency(opts)})
	return resp.items, resp.revision, err
}
