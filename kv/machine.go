package kv

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/unrdf/consensus/api"
)

// Machine is the replicated key-value state: the part every node holds
// identically because it applies the same commands in the same log order.
// It implements consensus.StateMachine and consensus.Snapshotter. Apply,
// Snapshot and Restore are called by the raft loop; reads may run
// concurrently from any goroutine.
//
// Apply is deterministic: it reads no clock, no randomness and never
// iterates a map; its limits (WithMaxKeys, WithMaxValueBytes,
// WithMaxKeyBytes) must be configured alike on every node.
type Machine struct {
	maxKeyBytes   int
	maxValueBytes int
	maxKeys       int
	maxSessions   int
	sessionWindow int
	maxLeases     int
	maxLeaseKeys  int
	maxLocks      int
	maxLockWait   int
	maxTasks      int
	maxTaskBytes  int
	maxSchedules  int

	mu sync.RWMutex
	// items is ordered by key, so that prefix listing is a range scan and
	// Snapshot is an O(1) copy-on-write Clone.
	items *itemTree
	// bytes is the sum of the lengths of every key and value.
	bytes    int64
	revision int64
	applied  uint64
	sessions sessionTable
	// leases are the leases by id (lease.go); leaseObs hears of them.
	leases   *btree.BTreeG[lease]
	leaseObs LeaseObserver
	// locks are the locks by name (lock.go). lockWatch has a channel per
	// watched lock, closed at its next change (LockChanges); lockWaits one
	// per waiting lease, closed at its turn (lockWait). Neither is
	// replicated state.
	locks     *btree.BTreeG[lock]
	lockWatch map[string]chan struct{}
	lockWaits map[lockWaitKey]chan struct{}
	// tasks are the queues' tasks by queue and id (queue.go); taskReady
	// orders the waiting ones by ready time, taskDone the done ones by
	// when they finished; clock is the state machine's clock (Unix ms,
	// the latest proposer's time applied). queueCounts (derived) and
	// queueWatch (a channel per waited-for queue) are not replicated.
	tasks       *btree.BTreeG[task]
	taskReady   *btree.BTreeG[readyKey]
	taskDone    *btree.BTreeG[doneKey]
	clock       int64
	queueCounts map[string]*queueCounts
	queueWatch  map[string]*queueWaiters
	// schedules are the schedules by id (schedule.go).
	schedules *btree.BTreeG[schedule]
	// historyKeep bounds each workflow's history and historyTotal all of
	// them (wfhistory.go);
	// pendingHistory holds the task events of the command being applied,
	// history the cached event counts (derived, not replicated).
	historyKeep    int
	historyTotal   int
	recordHistory  bool // the command being applied writes history
	pendingHistory []pendingEvent
	history        historyIndex
	// hub receives every change, under mu, in revision order.
	hub watchHub
	// prevs are the items replaced or deleted by the changes of the
	// command being applied, one per event, for publish.
	prevs []Item
	// hashes are the recent hashes of the state (hashcheck.go); not
	// replicated state.
	hashes stateHashes
	// views are the views that paged lists read their later pages from
	// (list.go).
	views listViews
	// values, if set, holds the key space's values (WithValueStore).
	values *ValueStore
}

// Result is what Apply returns for a command: the revision the write was
// given, or the error that rejected it (nothing was changed then).
type Result struct {
	Revision int64
	Err      error
	// Etcd is an etcd transaction's result (opEtcdTxn).
	Etcd *EtcdTxnResult
	// Claim is a claim's task, epoch and lease (nil for other commands,
	// and for a claim answered from the session table).
	Claim *Claim
}

// Default limits of the state.
const (
	// DefaultMaxKeys is the default limit on the number of keys: the
	// seed's maxStateSize.
	DefaultMaxKeys = 100_000
	// DefaultMaxBatchOps bounds the operations of one batch.
	DefaultMaxBatchOps = api.DefaultMaxBatchOps
)

// Option configures a Machine.
type Option func(*Machine)

// WithMaxKeys limits the state to n keys (default DefaultMaxKeys). A write
// that would create key n+1 fails with ErrStateFull.
func WithMaxKeys(n int) Option { return func(m *Machine) { m.maxKeys = n } }

// WithMaxValueBytes limits a value to n bytes (default
// DefaultMaxValueBytes).
func WithMaxValueBytes(n int) Option { return func(m *Machine) { m.maxValueBytes = n } }

// WithMaxKeyBytes limits a key to n bytes (default DefaultMaxKeyBytes).
func WithMaxKeyBytes(n int) Option { return func(m *Machine) { m.maxKeyBytes = n } }

// WithSessions sets the exactly-once session table's bounds: at most
// clients sessions (least recently used evicted first, by log index), each
// remembering the results of its window (up to 2*window) most recent
// sequences. Defaults
// DefaultMaxSessions and DefaultSessionWindow.
func WithSessions(clients, window int) Option {
	return func(m *Machine) { m.maxSessions, m.sessionWindow = clients, window }
}

// WithValueStore keeps the key space's values in vs rather than in the
// Go heap (ValueStore). vs is the machine's alone; closing it is the
// caller's, after the machine's last use.
func WithValueStore(vs *ValueStore) Option { return func(m *Machine) { m.values = vs } }

// btreeDegree is the B-tree's degree: nodes of up to 63 items.
const btreeDegree = 32

// NewMachine returns an empty state with the default limits, adjusted by
// opts.
func NewMachine(opts ...Option) *Machine {
	m := &Machine{
		maxKeyBytes:   DefaultMaxKeyBytes,
		maxValueBytes: DefaultMaxValueBytes,
		maxKeys:       DefaultMaxKeys,
		maxSessions:   DefaultMaxSessions,
		sessionWindow: DefaultSessionWindow,
		maxLeases:     DefaultMaxLeases,
		maxLeaseKeys:  DefaultMaxLeaseKeys,
		maxLocks:      DefaultMaxLocks,
		maxLockWait:   DefaultMaxLockWaiters,
		maxTasks:      DefaultMaxTasks,
		maxTaskBytes:  DefaultMaxTaskBytes,
		maxSchedules:  DefaultMaxSchedules,
		historyKeep:   DefaultWorkflowHistory,
		historyTotal:  DefaultWorkflowHistoryTotal,
		leases:        btree.NewG(btreeDegree, leaseLess),
		locks:         btree.NewG(btreeDegree, lockLess),
		tasks:         btree.NewG(btreeDegree, taskLess),
		taskReady:     btree.NewG(btreeDegree, readyLess),
		taskDone:      btree.NewG(btreeDegree, doneLess),
		schedules:     btree.NewG(btreeDegree, scheduleLess),
		views:         listViews{max: DefaultListViews, ttl: DefaultListViewTTL},
	}
	for _, o := range opts {
		o(m)
	}
	m.items = newItemTreeIn(m.values)
	m.sessions = newSessionTable(m.maxSessions, m.sessionWindow)
	return m
}

// Apply implements consensus.StateMachine. It validates the command
// against the limits (identically on every node) and applies it. It never
// panics on a malformed command: it returns a Result carrying the error.
// A command carrying a (client, sequence) already applied returns the
// recorded result and changes nothing.
func (m *Machine) Apply(index uint64, cmd []byte) any {
	c, err := decodeCommand(cmd)
	m.mu.Lock()
	defer m.mu.Unlock()
	// A little of the value store's upkeep, if any is due: after the
	// command, under the same lock (it changes no item's value).
	defer func() { m.items.maintain() }()
	m.applied = index
	m.prevs = m.prevs[:0]
	if err != nil {
		return Result{Err: err}
	}
	if c.Client == "" {
		return m.apply(&c)
	}
	if r, ok := m.sessions.lookup(index, c.Client, c.Seq); ok {
		return r
	}
	r := m.apply(&c)
	m.sessions.record(index, c.Client, c.Seq, r)
	return r
}

// apply applies c, then writes the workflow history events it recorded.
func (m *Machine) apply(c *command) Result {
	m.recordHistory = c.History
	r := m.applyCommand(c)
	m.flushHistory(r.Err == nil)
	return r
}

func (m *Machine) applyCommand(c *command) Result {
	var err *applyError
	if c.FenceLock != "" {
		if err := m.checkFence(c.FenceLock, c.FenceToken); err != nil {
			return Result{Err: err}
		}
	}
	switch c.Op {
	case opPut:
		err = m.applyPut(c)
	case opDelete:
		err = m.applyDelete(c)
	case opTxn:
		err = m.applyTxn(c.Ops)
	case opWorkflowStart, opWorkflowStop, opWorkflowUpdate:
		err = m.applyWorkflow(c)
	case opNodeRegister, opNodeDeregister:
		err = m.applyNode(c)
	case opLeaseGrant:
		err = m.applyLeaseGrant(c)
	case opLeaseRevoke:
		err = m.applyLeaseRevoke(c)
	case opLeaseExpire:
		err = m.applyLeaseExpire(c)
	case opLockAcquire:
		err = m.applyLockAcquire(c)
	case opLockRelease:
		err = m.applyLockRelease(c)
	case opLockProclaim:
		err = m.applyLockProclaim(c)
	case opHashCheck:
		m.applyHashCheck()
	case opEtcdTxn:
		return m.applyEtcdTxn(c.Etcd)
	case opCompact:
		err = m.applyCompact(c)
	case opTaskEnqueue:
		created, err := m.applyEnqueue(c)
		if err != nil {
			return Result{Err: err}
		}
		return Result{Revision: created}
	case opTaskClaim:
		claim, err := m.applyClaim(c)
		if err != nil {
			return Result{Err: err}
		}
		return Result{Revision: claim.Epoch, Claim: claim}
	case opTaskComplete:
		err = m.applyComplete(c)
	case opTaskFail:
		err = m.applyFail(c)
	case opTaskRequeue:
		err = m.applyRequeue(c)
	case opSchedulePut:
		created, err := m.applySchedulePut(c)
		if err != nil {
			return Result{Err: err}
		}
		return Result{Revision: created}
	case opScheduleDelete, opScheduleFire:
		if c.Op == opScheduleDelete {
			err = m.applyScheduleDelete(c)
		} else {
			err = m.applyScheduleFire(c)
		}
		if err != nil {
			return Result{Err: err}
		}
		return Result{Revision: int64(m.applied)}
	}
	if err != nil {
		return Result{Err: err}
	}
	return Result{Revision: m.revision}
}

// checkCond checks a precondition on key's current revision (0: absent).
func checkCond(what, key string, cond *int64, cur Item, exists bool) *applyError {
	if cond == nil {
		return nil
	}
	if *cond == condExists {
		if exists {
			return nil
		}
		return fail(ErrConflict, "%s %q: key does not exist, want it to exist", what, key)
	}
	have := int64(0)
	if exists {
		have = cur.Revision
	}
	if have == *cond {
		return nil
	}
	switch {
	case *cond == 0:
		return fail(ErrConflict, "%s %q: key exists at revision %d, want it absent", what, key, have)
	case !exists:
		return fail(ErrConflict, "%s %q: key does not exist, want revision %d", what, key, *cond)
	}
	return fail(ErrConflict, "%s %q: key is at revision %d, want %d", what, key, have, *cond)
}

func (m *Machine) applyPut(c *command) *applyError {
	if err := checkKey(c.Key, m.maxKeyBytes); err != nil {
		return err
	}
	if err := checkValue(c.Value, m.maxValueBytes); err != nil {
		return err
	}
	cur, exists := m.items.Get(Item{Key: c.Key})
	if err := checkCond("put", c.Key, c.If, cur, exists); err != nil {
		return err
	}
	if !exists && m.keyCount() >= m.maxKeys {
		return m.full(c.Key)
	}
	switch {
	case c.TTL != 0:
		// A key that expires by itself: a lease of its own (the
		// proposer chose its id), removed with the key.
		if err := m.checkGrant(c.Lease, c.TTL); err != nil {
			return err
		}
	case c.Lease != 0:
		if err := m.checkAttach(c.Key, c.Lease, cur, exists); err != nil {
			return err
		}
	}
	if c.TTL != 0 {
		m.grant(c.Lease, c.TTL, true)
	}
	m.revision++
	m.publish(Event{Type: EventPut, Item: m.put(c.Key, c.Value, c.Lease, cur, exists)})
	return nil
}

func (m *Machine) full(key string) *applyError {
	return fail(ErrStateFull, "create %q: the state holds %d keys, its limit", key, m.keyCount())
}

func (m *Machine) applyDelete(c *command) *applyError {
	if err := checkKey(c.Key, m.maxKeyBytes); err != nil {
		return err
	}
	cur, exists := m.items.GetKey(Item{Key: c.Key})
	if err := checkCond("delete", c.Key, c.If, cur, exists); err != nil {
		return err
	}
	if !exists {
		return fail(ErrKeyNotFound, "delete %q", c.Key)
	}
	m.revision++
	m.publish(m.remove(c.Key))
	return nil
}

// applyTxn checks every operation of a batch against the state before it,
// then applies all of them at one revision, or none.
func (m *Machine) applyTxn(ops []txnOp) *applyError {
	if len(ops) == 0 {
		return fail(ErrInvalidBatch, "empty batch")
	}
	if len(ops) > DefaultMaxBatchOps {
		return fail(ErrInvalidBatch, "batch of %d operations exceeds %d", len(ops), DefaultMaxBatchOps)
	}
	// Duplicate keys are found by sorting a copy of the keys: no map, so
	// nothing depends on iteration order.
	keys := make([]string, len(ops))
	creates, deletes := 0, 0
	for i := range ops {
		o := &ops[i]
		keys[i] = o.Key
		if err := checkKey(o.Key, m.maxKeyBytes); err != nil {
			return err
		}
		cur, exists := m.items.GetKey(Item{Key: o.Key})
		switch o.Op {
		case opPut:
			if err := checkValue(o.Value, m.maxValueBytes); err != nil {
				return err
			}
			if !exists {
				creates++
			}
			if o.Lease != 0 {
				if err := m.checkAttach(o.Key, o.Lease, cur, exists); err != nil {
					return err
				}
			}
		case opDelete:
			if exists {
				deletes++
			}
		default:
			return fail(ErrInvalidBatch, "batch operation %d on %q is %v, want put or delete", i, o.Key, o.Op)
		}
		if err := checkCond("batch "+o.Op.String(), o.Key, o.If, cur, exists); err != nil {
			return err
		}
		if o.Op == opDelete && !exists {
			return fail(ErrKeyNotFound, "batch delete %q", o.Key)
		}
	}
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return fail(ErrInvalidBatch, "key %q appears more than once", keys[i])
		}
	}
	if creates > 0 && m.keyCount()+creates-deletes > m.maxKeys {
		return fail(ErrStateFull, "batch creates %d keys; the state holds %d of at most %d", creates, m.keyCount(), m.maxKeys)
	}
	m.revision++
	evs := make([]Event, len(ops))
	for i := range ops {
		if ops[i].Op == opPut {
			cur, exists := m.items.Get(Item{Key: ops[i].Key})
			evs[i] = Event{Type: EventPut, Item: m.put(ops[i].Key, ops[i].Value, ops[i].Lease, cur, exists)}
		} else {
			evs[i] = m.remove(ops[i].Key)
		}
	}
	m.publish(evs...)
	return nil
}

// put stores value under key, attached to lease (0: none), at the current
// revision and returns the item; cur and exists are the key's current
// item. The caller has checked the limits and the lease (checkAttach).
func (m *Machine) put(key string, value []byte, lease int64, cur Item, exists bool) Item {
	if exists && int64(cur.Lease) != lease && cur.Lease != 0 {
		m.detach(key, int64(cur.Lease))
	}
	if lease != 0 && (!exists || int64(cur.Lease) != lease) {
		m.attach(key, lease)
	}
	it := cur
	if exists {
		m.bytes -= int64(len(it.Value))
	} else {
		it = Item{Key: key, CreateRevision: m.revision}
		m.bytes += int64(len(key))
		if strings.HasPrefix(key, WorkflowHistoryPrefix) {
			m.historyTouched(it, 1)
		}
	}
	// The value is never changed in place after this: a snapshot's clone
	// shares it.
	it.Value = value
	it.Revision = m.revision
	it.Lease = LeaseID(lease)
	it.Version++
	m.bytes += int64(len(value))
	m.items.ReplaceOrInsert(it)
	if exists {
		m.prevs = append(m.prevs, cur)
	} else {
		m.prevs = append(m.prevs, Item{})
	}
	return it
}

// remove deletes key, which exists, at the current revision.
func (m *Machine) remove(key string) Event {
	if strings.HasPrefix(key, WorkflowHistoryPrefix) {
		if it, ok := m.items.GetKey(Item{Key: key}); ok {
			m.historyTouched(it, -1)
		}
	}
	it, _ := m.items.Delete(Item{Key: key})
	m.bytes -= int64(len(it.Key) + len(it.Value))
	if it.Lease != 0 {
		m.detach(key, int64(it.Lease))
	}
	m.prevs = append(m.prevs, it)
	return Event{Type: EventDelete, Item: Item{Key: key, Revision: m.revision}}
}

// publish hands the events of the command being applied to the watch
// history, with the items they replaced (m.prevs, which put and remove
// fill in the same order). The caller holds mu.
func (m *Machine) publish(evs ...Event) {
	m.hub.publishPrev(evs, m.prevs)
	clear(m.prevs) // let the old values go
	m.prevs = m.prevs[:0]
}

// Get returns the item under key from local state.
func (m *Machine) Get(key string) (Item, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.items.Get(Item{Key: key})
}

// List returns the items whose key starts with prefix, sorted by key, and
// the revision of the state they were read from.
func (m *Machine) List(prefix string) ([]Item, int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Item, 0)
	m.ascendPrefix(prefix, func(it Item) bool {
		out = append(out, it)
		return true
	})
	return out, m.revision
}

// ascendPrefix calls fn for each item under prefix, in key order, until
// fn returns false. The caller holds mu.
func (m *Machine) ascendPrefix(prefix string, fn func(Item) bool) {
	ascendPrefixed(m.items.AscendGreaterOrEqual, prefix, prefix, fn)
}

// ascendPrefixKeys is ascendPrefix without the values, which a value
// store would read for nothing.
func (m *Machine) ascendPrefixKeys(prefix string, fn func(Item) bool) {
	ascendPrefixed(m.items.AscendKeysGreaterOrEqual, prefix, prefix, fn)
}

// Revision returns the revision of the last applied write.
func (m *Machine) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.revision
}

// Len returns the number of keys.
func (m *Machine) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.keysRead()
}

// Stats describes the state.
type Stats struct {
	// Keys is the number of keys.
	Keys int `json:"keys"`
	// MaxKeys is the key limit.
	MaxKeys int `json:"maxKeys"`
	// Bytes is the total size of keys and values.
	Bytes int64 `json:"bytes"`
	// Revision is the revision of the last applied write.
	Revision int64 `json:"revision"`
	// AppliedIndex is the log index of the last applied command.
	AppliedIndex uint64 `json:"appliedIndex"`
	// SnapshotIndex is the log index of the node's newest snapshot (0 if
	// none); filled in by Store.Stats.
	SnapshotIndex uint64 `json:"snapshotIndex"`
	// Sessions is the number of clients in the exactly-once session table.
	Sessions int `json:"sessions"`
}

// Stats returns the state's counters as of the last applied command.
func (m *Machine) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Keys: m.keysRead(), MaxKeys: m.maxKeys, Bytes: m.bytes, Revision: m.revision,
		AppliedIndex: m.applied, Sessions: m.sessions.len()}
}

func checkValue(v []byte, limit int) *applyError {
	if len(v) > limit {
		return fail(ErrValueTooLarge, "value of %d bytes exceeds %d", len(v), limit)
	}
	if !json.Valid(v) {
		return fail(ErrInvalidValue, "value is not valid JSON")
	}
	return nil
}
