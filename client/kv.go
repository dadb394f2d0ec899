package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/unrdf/consensus/api"
)

// ReadOption adjusts a read (Get, List and the other lists).
type ReadOption func(*readOptions)

type readOptions struct {
	consistency api.Consistency
	limit       int
	keysOnly    bool
}

// WithConsistency selects how a read is served: kv.Linearizable (the
// default) or kv.Local (this endpoint's state; fast, possibly stale).
func WithConsistency(c api.Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// WithLimit sets the page size of a list (List, Keys, Values, Pages): at
// most n items a page (0: kv.DefaultListLimit; at most kv.MaxListLimit).
// A page also ends before it would outgrow a frame.
func WithLimit(n int) ReadOption {
	return func(o *readOptions) { o.limit = max(0, min(n, api.MaxListLimit)) }
}

// KeysOnly makes a list (List, Pages) return its items without values.
func KeysOnly() ReadOption {
	return func(o *readOptions) { o.keysOnly = true }
}

func readOpts(opts []ReadOption) readOptions {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func readConsistency(opts []ReadOption) api.Consistency { return readOpts(opts).consistency }

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

// Has reports whether key exists.
func (c *Client) Has(ctx context.Context, key string, opts ...ReadOption) (bool, error) {
	_, err := c.Get(ctx, key, opts...)
	if errors.Is(err, api.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns an iterator over the items whose keys start with prefix,
// in key order (the empty prefix lists every key). It reads them in pages
// (WithLimit, default kv.DefaultListLimit items, each page within one
// frame) at one revision, the first page's, so that a prefix of any size
// is listed with one page in memory, and the items are those of one
// point in time however long the iteration takes. An error ends the
// iteration: ErrCompacted (a *kv.CompactedError) when the server no
// longer keeps that revision's view and the rest of the list changed
// since, after a long pause or a failover; start over. Pages gives the
// revision.
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[api.Item, error] {
	return func(yield func(api.Item, error) bool) {
		for p, err := range c.Pages(ctx, prefix, opts...) {
			if err != nil {
				yield(api.Item{}, err)
				return
			}
			for _, it := range p.Items {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// Entries is List (the seed's entries).
func (c *Client) Entries(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[api.Item, error] {
	return c.List(ctx, prefix, opts...)
}

// Keys returns an iterator over the keys under prefix, in order, read as
// List reads items but without their values.
func (c *Client) Keys(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for p, err := range c.Pages(ctx, prefix, append(opts, KeysOnly())...) {
			if err != nil {
				yield("", err)
				return
			}
			for _, it := range p.Items {
				if !yield(it.Key, nil) {
					return
				}
			}
		}
	}
}

// Values returns an iterator over the values under prefix, in key order,
// read as List reads them.
func (c *Client) Values(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		for it, err := range c.List(ctx, prefix, opts...) {
			if !yield(it.Value, err) || err != nil {
				return
			}
		}
	}
}

// Pages returns an iterator over the pages of the list of prefix: each
// page's Revision is the one every page is read at, and Next the key the
// following page starts at. It ends after the page whose More is false,
// or after yielding an error.
func (c *Client) Pages(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[api.ListPage, error] {
	o := readOpts(opts)
	mode := api.ListItems
	if o.keysOnly {
		mode = api.ListKeysOnly
	}
	return func(yield func(api.ListPage, error) bool) {
		req := api.Request{Op: api.OpListPage, Key: prefix, Consistency: o.consistency, Limit: int64(o.limit), Mode: mode}
		for {
			resp, err := c.doRequest(ctx, &req)
			if err != nil {
				yield(api.ListPage{}, err)
				return
			}
			p := resp.page
			if p.More && p.Next <= req.Start {
				// A server that does not move forward would loop forever.
				yield(api.ListPage{}, fmt.Errorf("client: list %q: page at %q names %q next: %w", prefix, req.Start, p.Next, ErrUnavailable))
				return
			}
			if !yield(p, nil) || !p.More {
				return
			}
			req.Start, req.Revision = p.Next, p.Revision
		}
	}
}

// Count returns how many keys start with prefix, and the revision it
// counted at.
func (c *Client) Count(ctx context.Context, prefix string, opts ...ReadOption) (int64, int64, error) {
	o := readOpts(opts)
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpListPage, Key: prefix, Consistency: o.consistency, Mode: api.ListCountOnly})
	return resp.page.Count, resp.page.Revision, err
}
