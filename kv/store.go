package kv

import (
	"context"
	"fmt"

	"github.com/unrdf/consensus"
)

// Raft is what a Store needs from its node: *consensus.Node implements it.
type Raft interface {
	// Propose replicates a command and returns the state machine's result.
	Propose(ctx context.Context, cmd []byte) (any, error)
	// LinearizableRead returns once local state reflects every write
	// committed before the call.
	LinearizableRead(ctx context.Context) error
	// Status describes the node.
	Status() consensus.Status
	// Ready returns nil when the node knows a leader.
	Ready() error
}

// Store is the replicated key-value store as callers use it: writes go
// through raft, reads are linearizable unless asked otherwise. It is safe
// for concurrent use.
type Store struct {
	node    Raft
	machine *Machine
}

// NewStore returns a Store that proposes through node and reads machine,
// which must be the StateMachine node applies to.
func NewStore(node Raft, machine *Machine) *Store {
	return &Store{node: node, machine: machine}
}

// Put stores value, a JSON value, under key and returns the write's
// revision.
func (s *Store) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	if err := checkValue(value, s.machine.maxValueBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opPut, Key: key, Value: value})
}

// Delete removes key and returns the delete's revision; ErrKeyNotFound if
// it did not exist.
func (s *Store) Delete(ctx context.Context, key string) (int64, error) {
	if err := checkKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opDelete, Key: key})
}

func (s *Store) write(ctx context.Context, c command) (int64, error) {
	b, err := encodeCommand(c)
	if err != nil {
		return 0, err
	}
	res, err := s.node.Propose(ctx, b)
	if err != nil {
		return 0, err
	}
	r, ok := res.(Result)
	if !ok {
		return 0, fmt.Errorf("kv: unexpected apply result %T", res)
	}
	return r.Revision, r.Err
}

// Get returns the item under key; ErrKeyNotFound if there is none.
func (s *Store) Get(ctx context.Context, key string, c Consistency) (Item, error) {
	if err := checkKey(key, s.machine.maxKeyBytes); err != nil {
		return Item{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return Item{}, err
	}
	it, ok := s.machine.Get(key)
	if !ok {
		return Item{}, fmt.Errorf("kv: get %q: %w", key, ErrKeyNotFound)
	}
	return it, nil
}

// List returns the items whose keys start with prefix, sorted by key, and
// the revision they were read at.
func (s *Store) List(ctx context.Context, prefix string, c Consistency) ([]Item, int64, error) {
	if err := s.sync(ctx, c); err != nil {
		return nil, 0, err
	}
	items, rev := s.machine.List(prefix)
	return items, rev, nil
}

func (s *Store) sync(ctx context.Context, c Consistency) error {
	if c == Local {
		return nil
	}
	return s.node.LinearizableRead(ctx)
}

// Status describes the node serving this store.
func (s *Store) Status() consensus.Status { return s.node.Status() }

// Ready returns nil when the node can serve requests.
func (s *Store) Ready() error { return s.node.Ready() }

// Machine returns the local state this store reads.
func (s *Store) Machine() *Machine { return s.machine }
