package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
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
//
// Every write may carry a request id (WithRequestID): the state machine
// applies a (client id, sequence) once, and a retry of it, after a timeout
// or a leader change, returns the first attempt's result.
type Store struct {
	node    Raft
	machine *Machine
	lessor  *Lessor // UseLessor
	// diverged, when set, is what every read answers (SetDiverged).
	diverged atomic.Pointer[error]
	// clock, when set, is the wall clock queue writes carry (UseClock).
	clock atomic.Pointer[func() time.Time]
}

// IsLeader reports whether this store's node leads (false when the node
// cannot say).
func (s *Store) IsLeader() bool {
	if n, ok := s.node.(interface{ IsLeader() bool }); ok {
		return n.IsLeader()
	}
	return s.node.Status().IsLeader
}

// UseClock makes the queue writes of this store carry now's time instead
// of the system clock's: for tests and simulations of a node whose clock
// is off.
func (s *Store) UseClock(now func() time.Time) { s.clock.Store(&now) }

// now is the wall clock queue writes carry.
func (s *Store) now() time.Time {
	if p := s.clock.Load(); p != nil {
		return (*p)()
	}
	return time.Now()
}

// NewStore returns a Store that proposes through node and reads machine,
// which must be the StateMachine node applies to.
func NewStore(node Raft, machine *Machine) *Store {
	return &Store{node: node, machine: machine}
}

// Cond is a precondition on a key's revision, checked when the write is
// applied. The zero Cond is no precondition.
type Cond = api.Cond

// IfRevision requires the key to be at revision rev (the revision of the
// write that last changed it); rev 0 requires it not to exist. A negative
// rev is refused with ErrInvalidRevision.
func IfRevision(rev int64) Cond { return api.IfRevision(rev) }

// IfAbsent requires the key not to exist (create only).
func IfAbsent() Cond { return api.IfAbsent() }

// IfExists requires the key to exist, at any revision (update only; HTTP's
// If-Match: *).
func IfExists() Cond { return api.IfExists() }

// condExists is how IfExists travels in a replicated command: no key is
// ever at a negative revision.
const condExists = -1

// condPtr returns how c travels in a replicated command: nil for none.
func condPtr(c Cond) *int64 {
	r, ok := c.Revision()
	if !ok {
		return nil
	}
	if c.Exists() {
		r = condExists
	}
	return &r
}

// OpType says what a batch operation does.
type OpType = api.TxnOpType

// Batch operation types.
const (
	// OpPut stores Value under Key.
	OpPut = api.TxnPut
	// OpDelete deletes Key, which must exist.
	OpDelete = api.TxnDelete
)

// Op is one operation of a Batch.
type Op = api.TxnOp

// RequestID identifies one request of one client for exactly-once
// application.
type RequestID = api.RequestID

// MaxClientIDBytes bounds a client id.
const MaxClientIDBytes = api.MaxClientIDBytes

// ErrInvalidRequestID means a request id's client is empty, too long or
// not UTF-8, or its sequence is 0.
var ErrInvalidRequestID = api.ErrInvalidRequestID

type requestIDKey struct{}

// WithRequestID returns ctx carrying id: the write made with it is applied
// at most once per (id.Client, id.Seq) while the session table remembers
// it (DefaultSessionWindow sequences per client, DefaultMaxSessions
// clients).
func WithRequestID(ctx context.Context, id RequestID) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id ctx carries, if any.
func RequestIDFrom(ctx context.Context) (RequestID, bool) {
	id, ok := ctx.Value(requestIDKey{}).(RequestID)
	return id, ok && id.Client != ""
}

// Put stores value, a JSON value, under key and returns the write's
// revision (the seed's set).
func (s *Store) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return s.PutIf(ctx, key, value, Cond{})
}

// PutIf is Put when cond holds; otherwise it fails with ErrConflict and
// changes nothing.
func (s *Store) PutIf(ctx context.Context, key string, value []byte, cond Cond) (int64, error) {
	if err := checkRequestKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	if err := checkHistoryWrite(key); err != nil {
		return 0, err
	}
	if err := checkValue(value, s.machine.maxValueBytes); err != nil {
		return 0, err
	}
	if err := cond.Check(); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opPut, Key: key, Value: value, If: condPtr(cond)})
}

// Delete removes key and returns the delete's revision; ErrKeyNotFound if
// it did not exist. key may be any key the state holds
// (ValidateStoredKey), binary ones written through etcd's API included.
func (s *Store) Delete(ctx context.Context, key string) (int64, error) {
	return s.DeleteIf(ctx, key, Cond{})
}

// DeleteIf is Delete when cond holds; otherwise it fails with ErrConflict.
func (s *Store) DeleteIf(ctx context.Context, key string, cond Cond) (int64, error) {
	if err := checkKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	if err := cond.Check(); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opDelete, Key: key, If: condPtr(cond)})
}

// Batch applies ops all or nothing, as one log entry (the seed's
// batchUpdate): every Cond must hold, every deleted key must exist, no key
// may appear twice, and the keys created must fit the state. The whole
// batch gets one revision, which every changed key's Item.Revision takes
// (as an etcd transaction), and watchers see its events together.
func (s *Store) Batch(ctx context.Context, ops []Op) (int64, error) {
	if len(ops) == 0 || len(ops) > DefaultMaxBatchOps {
		return 0, fail(ErrInvalidBatch, "a batch holds 1 to %d operations, not %d", DefaultMaxBatchOps, len(ops))
	}
	c := command{Op: opTxn, Ops: make([]txnOp, len(ops))}
	for i, o := range ops {
		if err := checkRequestKey(o.Key, s.machine.maxKeyBytes); err != nil {
			return 0, err
		}
		if err := o.Cond.Check(); err != nil {
			return 0, err
		}
		t := txnOp{Key: o.Key, If: condPtr(o.Cond)}
		switch o.Type {
		case OpPut:
			if err := checkValue(o.Value, s.machine.maxValueBytes); err != nil {
				return 0, err
			}
			if err := checkHistoryWrite(o.Key); err != nil {
				return 0, err
			}
			t.Op, t.Value = opPut, o.Value
		case OpDelete:
			t.Op = opDelete
		default:
			return 0, fail(ErrInvalidBatch, "operation %d has type %d", i, o.Type)
		}
		c.Ops[i] = t
	}
	return s.write(ctx, c)
}

// UpdateFunc computes a key's new value from its current item (exists is
// false when the key is absent). Returning an error aborts the update.
type UpdateFunc = api.UpdateFunc

// Update is an atomic read-modify-write of key (the seed's update): it
// reads the key, calls fn, and writes the result on condition that the
// key is still at the revision fn saw; on a conflict it reads again and
// retries until it succeeds, fn fails, or ctx ends. fn may therefore run
// more than once and must have no side effects beyond its result. Each
// attempt is its own request (a request id in ctx is not used).
func (s *Store) Update(ctx context.Context, key string, fn UpdateFunc) (int64, error) {
	if err := checkRequestKey(key, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	ctx = context.WithValue(ctx, requestIDKey{}, RequestID{})
	for {
		// A local read suffices: the condition makes a stale read fail, and
		// after a conflict this node has applied the entry that conflicted,
		// so the next read is at least that new.
		cur, exists := s.machine.Get(key)
		value, err := fn(cur, exists)
		if err != nil {
			return 0, err
		}
		rev, err := s.PutIf(ctx, key, value, IfRevision(cur.Revision))
		if !errors.Is(err, ErrConflict) {
			return rev, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

func (s *Store) write(ctx context.Context, c command) (int64, error) {
	if id, ok := RequestIDFrom(ctx); ok {
		if err := id.Validate(); err != nil {
			return 0, err
		}
		c.Client, c.Seq = id.Client, id.Seq
	}
	if f, ok := FenceFrom(ctx); ok {
		if err := checkLockName(f.Lock); err != nil {
			return 0, err
		}
		c.FenceLock, c.FenceToken = f.Lock, f.Token
	}
	b, err := encodeCommand(withHistory(c))
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

// Get returns the item under key; ErrKeyNotFound if there is none. key
// may be any key the state holds (ValidateStoredKey).
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

// Has reports whether key exists.
func (s *Store) Has(ctx context.Context, key string, c Consistency) (bool, error) {
	_, err := s.Get(ctx, key, c)
	if errors.Is(err, ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns the items whose keys start with prefix, sorted by key, and
// the revision they were read at (the seed's entries). A prefix that
// ValidatePrefix refuses is ErrInvalidKey.
func (s *Store) List(ctx context.Context, prefix string, c Consistency) ([]Item, int64, error) {
	if err := ValidatePrefix(prefix, s.machine.maxKeyBytes); err != nil {
		return nil, 0, err
	}
	if err := s.sync(ctx, c); err != nil {
		return nil, 0, err
	}
	items, rev := s.machine.List(prefix)
	return items, rev, nil
}

// Entries is List: the items under prefix, by key.
func (s *Store) Entries(ctx context.Context, prefix string, c Consistency) ([]Item, int64, error) {
	return s.List(ctx, prefix, c)
}

// Keys returns the keys that start with prefix, sorted, and the revision
// they were read at.
func (s *Store) Keys(ctx context.Context, prefix string, c Consistency) ([]string, int64, error) {
	items, rev, err := s.List(ctx, prefix, c)
	if err != nil {
		return nil, 0, err
	}
	keys := make([]string, len(items))
	for i := range items {
		keys[i] = items[i].Key
	}
	return keys, rev, nil
}

// Values returns the values of the keys that start with prefix, in key
// order, and the revision they were read at.
func (s *Store) Values(ctx context.Context, prefix string, c Consistency) ([]json.RawMessage, int64, error) {
	items, rev, err := s.List(ctx, prefix, c)
	if err != nil {
		return nil, 0, err
	}
	values := make([]json.RawMessage, len(items))
	for i := range items {
		values[i] = items[i].Value
	}
	return values, rev, nil
}

// Stats returns the state's counters (keys, bytes, revision, applied
// index) and the node's last snapshot index (the seed's getStats).
func (s *Store) Stats(ctx context.Context, c Consistency) (Stats, error) {
	if err := s.sync(ctx, c); err != nil {
		return Stats{}, err
	}
	st := s.machine.Stats()
	st.SnapshotIndex = s.node.Status().SnapshotIndex
	return st, nil
}

// StartWorkflow starts workflow id (START_WORKFLOW) with fields, a JSON
// object (or nil), as its initial state: workflow:<id> becomes
// {...fields, "id", "status":"running", "startedAt"}. A running workflow
// cannot be started again (ErrInvalidTransition); a stopped one is
// replaced.
func (s *Store) StartWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	if err := checkRequestID("workflow", id, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opWorkflowStart, Key: id, Value: fields, At: time.Now().UnixMilli()})
}

// StopWorkflow stops a running workflow (STOP_WORKFLOW), merging fields
// (a JSON object, or nil) into it: "status" becomes "stopped" and
// "stoppedAt" is set. ErrWorkflowNotFound if there is none,
// ErrInvalidTransition if it is not running.
func (s *Store) StopWorkflow(ctx context.Context, id string, fields []byte) (int64, error) {
	if err := checkRequestID("workflow", id, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opWorkflowStop, Key: id, Value: fields, At: time.Now().UnixMilli()})
}

// UpdateWorkflowState merges fields, a JSON object, into a running
// workflow (UPDATE_STATE; a shallow merge, like the seed's {...prev,
// ...fields}) and sets "updatedAt". ErrWorkflowNotFound if there is none,
// ErrInvalidTransition if it is not running.
func (s *Store) UpdateWorkflowState(ctx context.Context, id string, fields []byte) (int64, error) {
	if err := checkRequestID("workflow", id, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opWorkflowUpdate, Key: id, Value: fields, At: time.Now().UnixMilli()})
}

// WorkflowState returns workflow id (the seed's getWorkflowState);
// ErrWorkflowNotFound if workflow:<id> does not exist.
func (s *Store) WorkflowState(ctx context.Context, id string, c Consistency) (Workflow, error) {
	if err := checkRequestID("workflow", id, s.machine.maxKeyBytes); err != nil {
		return Workflow{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return Workflow{}, err
	}
	it, ok := s.machine.Get(WorkflowPrefix + id)
	if !ok {
		return Workflow{}, fmt.Errorf("kv: workflow %q: %w", id, ErrWorkflowNotFound)
	}
	return WorkflowFromItem(it), nil
}

// Workflows returns every workflow, by id, and the revision read at.
func (s *Store) Workflows(ctx context.Context, c Consistency) ([]Workflow, int64, error) {
	items, rev, err := s.List(ctx, WorkflowPrefix, c)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Workflow, len(items))
	for i := range items {
		out[i] = WorkflowFromItem(items[i])
	}
	return out, rev, nil
}

// RegisterNode registers application node id (REGISTER_NODE) with
// metadata, a JSON object (or nil), under node:<id>; registering again
// replaces the metadata. Application nodes are not raft members.
func (s *Store) RegisterNode(ctx context.Context, id string, metadata []byte) (int64, error) {
	return s.RegisterNodeWith(ctx, id, metadata, PutOptions{})
}

// RegisterNodeWith is RegisterNode with liveness: o.Lease (the node's
// lease, kept alive by the node) or o.TTL (a lease of the registration's
// own) deregisters the node when the lease goes, and watchers of node:
// see the delete. o.Cond is not used.
func (s *Store) RegisterNodeWith(ctx context.Context, id string, metadata []byte, o PutOptions) (int64, error) {
	if err := checkRequestID("node", id, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	c := command{Op: opNodeRegister, Key: id, Value: metadata, At: time.Now().UnixMilli(), Lease: int64(o.Lease)}
	if err := leaseTTL(&c, o); err != nil {
		return 0, err
	}
	return s.write(ctx, c)
}

// DeregisterNode removes application node id (DEREGISTER_NODE);
// ErrNodeNotFound if it is not registered.
func (s *Store) DeregisterNode(ctx context.Context, id string) (int64, error) {
	if err := checkRequestID("node", id, s.machine.maxKeyBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opNodeDeregister, Key: id})
}

// Nodes returns the registered application nodes, by id, and the revision
// read at.
func (s *Store) Nodes(ctx context.Context, c Consistency) ([]Node, int64, error) {
	items, rev, err := s.List(ctx, NodePrefix, c)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Node, len(items))
	for i := range items {
		out[i] = NodeFromItem(items[i])
	}
	return out, rev, nil
}

func (s *Store) sync(ctx context.Context, c Consistency) error {
	if p := s.diverged.Load(); p != nil {
		return *p
	}
	if c == Local {
		return nil
	}
	return s.node.LinearizableRead(ctx)
}

// Status describes the node serving this store.
func (s *Store) Status() consensus.Status { return s.node.Status() }

// Ready returns nil when the node can serve requests: not while the
// store's state has diverged (SetDiverged).
func (s *Store) Ready() error {
	if err := s.Diverged(); err != nil {
		return err
	}
	return s.node.Ready()
}

// Machine returns the local state this store reads.
func (s *Store) Machine() *Machine { return s.machine }
