package kv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/unrdf/consensus/api"
)

// PutOptions are the options of PutWith.
type PutOptions struct {
	// Cond is a precondition on the key's revision.
	Cond Cond
	// Lease attaches the key to a lease: the key is deleted when the
	// lease expires or is revoked. A put without a lease detaches the key
	// from the one it had.
	Lease LeaseID
	// TTL, instead of Lease, gives the key a lease of its own with this
	// time to live (rounded down to milliseconds, at least
	// api.LeaseTTLFloorMs): the key is deleted when it expires, and the
	// lease goes when the key is written again without it or deleted.
	TTL time.Duration
}

// PutWith is Put with options: a precondition, a lease or a time to live.
func (s *Store) PutWith(ctx context.Context, key string, value []byte, o PutOptions) (int64, error) {
	if err := checkRequestKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	if err := checkHistoryWrite(key); err != nil {
		return 0, err
	}
	if err := checkValue(value, s.machine.maxValueBytes); err != nil {
		return 0, err
	}
	if err := o.Cond.Check(); err != nil {
		return 0, err
	}
	c := command{Op: opPut, Key: key, Value: value, If: condPtr(o.Cond), Lease: int64(o.Lease)}
	if err := leaseTTL(&c, o); err != nil {
		return 0, err
	}
	return s.write(ctx, c)
}

// leaseTTL gives c, a put or a node registration, the lease of its own
// that o.TTL asks for (a new random id, the time to live at least
// api.LeaseTTLFloorMs).
func leaseTTL(c *command, o PutOptions) error {
	if o.TTL == 0 {
		return nil
	}
	if o.Lease != 0 {
		return fmt.Errorf("kv: %q: a lease or a time to live, not both: %w", c.Key, ErrInvalidTTL)
	}
	c.TTL = o.TTL.Milliseconds()
	if err := checkTTL(c.TTL); err != nil {
		return err
	}
	c.TTL = max(c.TTL, api.LeaseTTLFloorMs)
	c.Lease = int64(newLeaseID())
	return nil
}

// newLeaseID picks a random lease id (positive, 63 bits). Ids are chosen
// before proposing, never in apply, so every node applies the same one.
func newLeaseID() LeaseID {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if id := LeaseID(binary.BigEndian.Uint64(b[:]) >> 1); id != 0 {
			return id
		}
	}
}

// Grant grants a lease with the time to live ttl (rounded down to
// milliseconds; api.MinLeaseTTLMs to api.MaxLeaseTTLMs, and raised to
// api.LeaseTTLFloorMs if shorter: the answer has the time to live
// granted) under id, or a random id if id is 0. Its countdown is the
// leader's (Lessor).
func (s *Store) Grant(ctx context.Context, ttl time.Duration, id LeaseID) (Lease, error) {
	ms := ttl.Milliseconds()
	if err := checkTTL(ms); err != nil {
		return Lease{}, err
	}
	ms = max(ms, api.LeaseTTLFloorMs)
	if id < 0 {
		return Lease{}, fmt.Errorf("kv: grant: lease id %d: %w", id, api.ErrInvalidLeaseID)
	}
	if id == 0 {
		id = newLeaseID()
	}
	if _, err := s.write(ctx, command{Op: opLeaseGrant, Lease: int64(id), TTL: ms}); err != nil {
		return Lease{}, err
	}
	return Lease{ID: id, TTLMs: ms}, nil
}

// Revoke revokes lease id: it and its keys are deleted, the keys at one
// revision, which it returns. ErrLeaseNotFound if there is no such lease.
func (s *Store) Revoke(ctx context.Context, id LeaseID) (int64, error) {
	return s.write(ctx, command{Op: opLeaseRevoke, Lease: int64(id)})
}

// Lease returns lease id as the replicated state has it (time to live and
// keys; the time left is the leader's to say: Lessor.TimeToLive).
func (s *Store) Lease(ctx context.Context, id LeaseID, c Consistency) (Lease, error) {
	if err := s.sync(ctx, c); err != nil {
		return Lease{}, err
	}
	l, ok := s.machine.LeaseInfo(id)
	if !ok {
		return Lease{}, fmt.Errorf("kv: lease %s: %w", id, ErrLeaseNotFound)
	}
	return l, nil
}

// UseLessor makes KeepAlive and TimeToLive ask l, the node's lease clock.
// Call it before serving.
func (s *Store) UseLessor(l *Lessor) { s.lessor = l }

// KeepAlive renews lease id on the leader's clock (Lessor.KeepAlive):
// consensus.ErrNotLeader on any other node.
func (s *Store) KeepAlive(ctx context.Context, id LeaseID) (Lease, error) {
	if s.lessor == nil {
		return Lease{}, fmt.Errorf("kv: keepalive: %w", errNoLessor)
	}
	return s.lessor.KeepAlive(ctx, id)
}

// TimeToLive describes lease id with the time it has left on the
// leader's clock (Lessor.TimeToLive): consensus.ErrNotLeader on any other
// node.
func (s *Store) TimeToLive(ctx context.Context, id LeaseID) (Lease, error) {
	if s.lessor == nil {
		return Lease{}, fmt.Errorf("kv: time to live: %w", errNoLessor)
	}
	return s.lessor.TimeToLive(ctx, id)
}

// ListLeases returns every lease with its time to live (not its keys), by
// id.
func (s *Store) ListLeases(ctx context.Context, c Consistency) ([]Lease, error) {
	if err := s.sync(ctx, c); err != nil {
		return nil, err
	}
	ids, ttls := s.machine.leaseTTLs()
	out := make([]Lease, len(ids))
	for i := range ids {
		out[i] = Lease{ID: ids[i], TTLMs: ttls[i]}
	}
	return out, nil
}

var errNoLessor = errors.New("this store has no lease clock (UseLessor)")
