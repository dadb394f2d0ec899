package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/unrdf/consensus/api"
)

// PutOptions are the options of PutWith.
type PutOptions struct {
	// Cond, if set, must hold when the put is applied (as PutIf's).
	Cond api.Cond
	// Lease attaches the key to a lease (Grant, Session.Lease): the key is
	// deleted when the lease expires or is revoked. kv.ErrLeaseNotFound if
	// there is no such lease. A put without a lease detaches the key from
	// the one it had.
	Lease api.LeaseID
	// TTL, instead of Lease, gives the key a lease of its own with this
	// time to live (whole milliseconds, 1 ms to 30 days): the key is
	// deleted when it expires, unless it is written again first.
	TTL time.Duration
}

// PutWith is Put with options: a precondition, a lease or a time to
// live. A put with both a lease and a time to live fails with
// kv.ErrInvalidTTL before anything is sent, as does a time to live out of
// range.
func (c *Client) PutWith(ctx context.Context, key string, value []byte, o PutOptions) (int64, error) {
	r := api.Request{Op: api.OpPut, Key: key, Value: value, Cond: o.Cond, Lease: o.Lease}
	if o.TTL != 0 {
		if o.Lease != 0 {
			return 0, fmt.Errorf("client: put %q: a lease or a time to live, not both: %w", key, api.ErrInvalidTTL)
		}
		ms, err := ttlMs(o.TTL)
		if err != nil {
			return 0, fmt.Errorf("client: put %q: %w", key, err)
		}
		r.TTLMs = ms
	}
	if o.Lease < 0 {
		return 0, fmt.Errorf("client: put %q: lease %d: %w", key, int64(o.Lease), api.ErrInvalidLeaseID)
	}
	resp, err := c.doWrite(ctx, &r)
	return resp.revision, err
}

// ttlMs returns ttl in whole milliseconds, or an error wrapping
// kv.ErrInvalidTTL when that is outside api.MinLeaseTTLMs to
// api.MaxLeaseTTLMs.
func ttlMs(ttl time.Duration) (int64, error) {
	ms := ttl.Milliseconds()
	if ms < api.MinLeaseTTLMs || ms > api.MaxLeaseTTLMs {
		return 0, fmt.Errorf("time to live %v: want 1ms to 720h (30 days): %w", ttl, api.ErrInvalidTTL)
	}
	return ms, nil
}

// GrantOption adjusts a grant.
type GrantOption func(*grantOptions)

type grantOptions struct {
	id api.LeaseID
}

// WithLeaseID grants the lease under id (positive) instead of a random
// one; kv.ErrLeaseExists if that id is in use.
func WithLeaseID(id api.LeaseID) GrantOption {
	return func(o *grantOptions) { o.id = id }
}

// Grant grants a lease with time to live ttl (whole milliseconds, 1 ms to
// 30 days; kv.ErrInvalidTTL otherwise; the cluster raises one below
// api.LeaseTTLFloorMs to it, and the answer's TTLMs says so). Its countdown is the leader's and
// starts when the grant is applied; KeepAlive starts it again. Grant is a
// write: the client picks the lease's id (at random, unless WithLeaseID),
// so a grant retried after a lost answer is the same grant.
func (c *Client) Grant(ctx context.Context, ttl time.Duration, opts ...GrantOption) (api.Lease, error) {
	ms, err := ttlMs(ttl)
	if err != nil {
		return api.Lease{}, fmt.Errorf("client: grant lease: %w", err)
	}
	var o grantOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.id == 0 {
		o.id = newLeaseID()
	} else if err := checkLeaseID(o.id); err != nil {
		return api.Lease{}, fmt.Errorf("client: grant lease: %w", err)
	}
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpLeaseGrant, TTLMs: ms, Lease: o.id})
	return resp.lease, err
}

// newLeaseID picks a random lease id: positive, 63 bits, as the server
// would.
func newLeaseID() api.LeaseID {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		if id := api.LeaseID(binary.BigEndian.Uint64(b[:]) >> 1); id != 0 {
			return id
		}
	}
}

// Revoke revokes lease id and deletes its keys, at one revision, which it
// returns; kv.ErrLeaseNotFound if there is no such lease (never granted,
// expired, or revoked already).
func (c *Client) Revoke(ctx context.Context, id api.LeaseID) (int64, error) {
	if err := checkLeaseID(id); err != nil {
		return 0, fmt.Errorf("client: revoke lease: %w", err)
	}
	resp, err := c.doWrite(ctx, &api.Request{Op: api.OpLeaseRevoke, Lease: id})
	return resp.revision, err
}

// KeepAlive starts lease id's countdown again at its full time to live
// and returns the lease with RemainingMs; kv.ErrLeaseNotFound if it has
// expired or was revoked. It is answered by the leader (a follower asks
// it) and costs no log entry. It changes no replicated state, so it is
// retried like a read.
func (c *Client) KeepAlive(ctx context.Context, id api.LeaseID) (api.Lease, error) {
	if err := checkLeaseID(id); err != nil {
		return api.Lease{}, fmt.Errorf("client: keep lease alive: %w", err)
	}
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpLeaseKeepAlive, Lease: id})
	return resp.lease, err
}

// TimeToLive returns lease id with the time it has left by the leader's
// clock (RemainingMs) and its keys, sorted; kv.ErrLeaseNotFound if there
// is no such lease.
func (c *Client) TimeToLive(ctx context.Context, id api.LeaseID) (api.Lease, error) {
	if err := checkLeaseID(id); err != nil {
		return api.Lease{}, fmt.Errorf("client: lease time to live: %w", err)
	}
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpLeaseTTL, Lease: id})
	return resp.lease, err
}

// Leases returns every lease, by id, with its time to live (not the time
// it has left, nor its keys).
func (c *Client) Leases(ctx context.Context, opts ...ReadOption) ([]api.Lease, error) {
	resp, err := c.doRequest(ctx, &api.Request{Op: api.OpLeaseList, Consistency: readConsistency(opts)})
	return resp.leases, err
}

func checkLeaseID(id api.LeaseID) error {
	if id <= 0 {
		return fmt.Errorf("lease %d: %w", int64(id), api.ErrInvalidLeaseID)
	}
	return nil
}
