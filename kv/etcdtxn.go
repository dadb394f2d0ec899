package kv

import (
	"bytes"
	"context"
	"fmt"
	"slices"
)

// opEtcdTxn applies an etcd v3 transaction (EtcdTxn, in command.Etcd):
// every write of etcd's API (Put, DeleteRange, Txn) is one. Numbered
// apart from the other operations so that both can grow.
const opEtcdTxn op = 32

// EtcdTxn is an etcd v3 transaction: if every Compare holds, Success is
// applied, otherwise Failure. Its writes all take one revision (none if
// it writes nothing), and its reads see the writes before them.
type EtcdTxn struct {
	Compares []EtcdCompare `msgpack:"c,omitempty"`
	Success  []EtcdOp      `msgpack:"s,omitempty"`
	Failure  []EtcdOp      `msgpack:"f,omitempty"`
}

// EtcdTarget is what an EtcdCompare looks at (etcd's Compare.Target).
type EtcdTarget uint8

// Compare targets: their values are part of the log format.
const (
	EtcdTargetVersion EtcdTarget = 0
	EtcdTargetCreate  EtcdTarget = 1
	EtcdTargetMod     EtcdTarget = 2
	EtcdTargetValue   EtcdTarget = 3
	EtcdTargetLease   EtcdTarget = 4
)

// EtcdCompareResult is how an EtcdCompare compares (etcd's
// Compare.Result).
type EtcdCompareResult uint8

// Compare results: their values are part of the log format.
const (
	EtcdEqual    EtcdCompareResult = 0
	EtcdGreater  EtcdCompareResult = 1
	EtcdLess     EtcdCompareResult = 2
	EtcdNotEqual EtcdCompareResult = 3
)

// EtcdCompare compares Target of the key Key (or of every key in [Key,
// End) when End is set) with Value (etcd bytes, for EtcdTargetValue) or
// Number. A missing key has version, revisions and lease 0, and no value
// (a value compare on it fails), as in etcd.
type EtcdCompare struct {
	Key    string            `msgpack:"k"`
	End    string            `msgpack:"e,omitempty"`
	Target EtcdTarget        `msgpack:"t,omitempty"`
	Result EtcdCompareResult `msgpack:"r,omitempty"`
	Value  []byte            `msgpack:"v,omitempty"`
	Number int64             `msgpack:"n,omitempty"`
}

// EtcdOpType says what an EtcdOp does.
type EtcdOpType uint8

// Operation types: their values are part of the log format.
const (
	EtcdRange  EtcdOpType = 1
	EtcdPut    EtcdOpType = 2
	EtcdDelete EtcdOpType = 3
	EtcdNested EtcdOpType = 4
)

// EtcdOp is one operation of an EtcdTxn. A range reads [Key, End) (Key
// alone when End is empty; EtcdRangeAll as End: every key from Key on);
// the caller applies a range's options (limit, sort, filters) to the
// items it returns. A put stores Value (a stored JSON value, see
// EtcdStoredValue) under Key with Lease (0: none), or keeps the key's
// value or lease (IgnoreValue, IgnoreLease; the key must exist); a delete
// removes the keys in [Key, End). PrevKV returns a put's or delete's
// previous items.
type EtcdOp struct {
	Type        EtcdOpType `msgpack:"o"`
	Key         string     `msgpack:"k"`
	End         string     `msgpack:"e,omitempty"`
	Value       []byte     `msgpack:"v,omitempty"`
	Lease       int64      `msgpack:"l,omitempty"`
	IgnoreValue bool       `msgpack:"iv,omitempty"`
	IgnoreLease bool       `msgpack:"il,omitempty"`
	PrevKV      bool       `msgpack:"p,omitempty"`
	Txn         *EtcdTxn   `msgpack:"t,omitempty"`
	// Revision reads a range as it was at that revision (0: now). Only
	// a read-only transaction (Machine.EtcdReadTxn) may set it: the
	// history that serves older revisions is each member's own, so a
	// replicated one (Store.EtcdTxn) refuses it.
	Revision int64 `msgpack:"rv,omitempty"`
}

// EtcdRangeAll as a range end means every key from the start key on
// (etcd's "\x00").
const EtcdRangeAll = "\x00"

// EtcdTxnResult is the result of an EtcdTxn.
type EtcdTxnResult struct {
	// Succeeded reports whether the compares held.
	Succeeded bool
	// Responses has one result per operation of the branch applied.
	Responses []EtcdOpResult
}

// EtcdOpResult is the result of one EtcdOp: a range's items, a put's
// previous item (with PrevKV), a delete's count and previous items (with
// PrevKV), a nested transaction's result.
type EtcdOpResult struct {
	Items   []Item
	Deleted int64
	Txn     *EtcdTxnResult
}

// ReadOnly reports whether t writes nothing on any branch: its
// operations, and those of its nested transactions, are all ranges.
func (t *EtcdTxn) ReadOnly() bool {
	return t.readOnly(0)
}

func (t *EtcdTxn) readOnly(depth int) bool {
	if t == nil || depth > maxEtcdTxnDepth {
		return false
	}
	for _, branch := range [][]EtcdOp{t.Success, t.Failure} {
		for i := range branch {
			switch branch[i].Type {
			case EtcdRange:
			case EtcdNested:
				if !branch[i].Txn.readOnly(depth + 1) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// EtcdReadTxn evaluates the read-only transaction t (EtcdTxn.ReadOnly)
// on this member's applied state, without the log: its compares, then
// the ranges of the branches they choose, all under one lock, so they
// see one revision, which it returns. A range with a Revision reads the
// state at that revision from the history, as EtcdRangeAt does, and fails
// as it does. The caller makes the read linearizable first, if it must
// be (Store.Sync). A transaction that writes wraps ErrInvalidBatch.
func (m *Machine) EtcdReadTxn(t *EtcdTxn) (*EtcdTxnResult, int64, error) {
	if !t.ReadOnly() {
		return nil, 0, fail(ErrInvalidBatch, "a read-only etcd transaction writes, or nests more than %d deep", maxEtcdTxnDepth)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	path, aerr := m.etcdPath(t, nil, 0)
	if aerr != nil {
		return nil, 0, aerr
	}
	x := etcdReader{m: m, path: path}
	res := x.run(t)
	if x.err != nil {
		return nil, 0, x.err
	}
	return res, m.revision, nil
}

// etcdReader runs the ranges on a read-only transaction's path; the
// caller holds m.mu. err is the first range's that failed.
type etcdReader struct {
	m    *Machine
	path []bool
	err  error
}

func (x *etcdReader) run(t *EtcdTxn) *EtcdTxnResult {
	ok := x.path[0]
	x.path = x.path[1:]
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	res := &EtcdTxnResult{Succeeded: ok, Responses: make([]EtcdOpResult, len(branch))}
	for i := range branch {
		o := &branch[i]
		switch o.Type {
		case EtcdRange:
			items, err := x.m.etcdRangeAtLocked(o.Key, o.End, o.Revision)
			if err != nil && x.err == nil {
				x.err = err
			}
			res.Responses[i].Items = items
		case EtcdNested:
			res.Responses[i].Txn = x.run(o.Txn)
		}
	}
	return res
}

// maxEtcdTxnDepth bounds nested transactions, so that a crafted entry
// cannot exhaust the stack.
const maxEtcdTxnDepth = 16

// EtcdTxn proposes t and returns its result and the store's revision
// after it.
func (s *Store) EtcdTxn(ctx context.Context, t *EtcdTxn) (*EtcdTxnResult, int64, error) {
	if err := s.checkEtcdTxn(t, 0); err != nil {
		return nil, 0, err
	}
	b, err := encodeCommand(command{Op: opEtcdTxn, Etcd: t})
	if err != nil {
		return nil, 0, err
	}
	res, err := s.node.Propose(ctx, b)
	if err != nil {
		return nil, 0, err
	}
	r, ok := res.(Result)
	if !ok {
		return nil, 0, fmt.Errorf("kv: unexpected apply result %T", res)
	}
	if r.Err != nil {
		return nil, 0, r.Err
	}
	return r.Etcd, r.Revision, nil
}

// checkEtcdTxn checks what a proposer can before proposing t.
func (s *Store) checkEtcdTxn(t *EtcdTxn, depth int) error {
	if depth > maxEtcdTxnDepth {
		return fail(ErrInvalidBatch, "transactions nested more than %d deep", maxEtcdTxnDepth)
	}
	for _, branch := range [][]EtcdOp{t.Success, t.Failure} {
		for i := range branch {
			o := &branch[i]
			switch o.Type {
			case EtcdPut:
				// etcd's keys are any bytes (checkKey), not the stricter
				// rule of our own APIs' writes (checkRequestKey).
				if err := checkKey(o.Key, s.machine.maxKeyBytes); err != nil {
					return err
				}
				if err := checkHistoryWrite(o.Key); err != nil {
					return err
				}
				if !o.IgnoreValue {
					if err := checkValue(o.Value, s.machine.maxValueBytes); err != nil {
						return err
					}
				}
			case EtcdRange:
				if o.Revision != 0 {
					return fail(ErrInvalidBatch, "a range at a revision in a transaction that writes")
				}
			case EtcdNested:
				if o.Txn == nil {
					return fail(ErrInvalidBatch, "a nested transaction is missing")
				}
				if err := s.checkEtcdTxn(o.Txn, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Sync returns once a read of the local state has consistency c: at
// once for Local, after a linearizable read (bounded by ctx) otherwise.
func (s *Store) Sync(ctx context.Context, c Consistency) error { return s.sync(ctx, c) }

// EtcdRange returns the items in [key, end) (key alone if end is empty)
// in key order, and the revision of the state they were read from.
func (m *Machine) EtcdRange(key, end string) ([]Item, int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.etcdRange(key, end), m.revision
}

// etcdRange is EtcdRange; the caller holds mu.
func (m *Machine) etcdRange(key, end string) []Item {
	if end == "" {
		if it, ok := m.items.Get(Item{Key: key}); ok {
			return []Item{it}
		}
		return nil
	}
	var out []Item
	m.items.AscendGreaterOrEqual(Item{Key: key}, func(it Item) bool {
		if end != EtcdRangeAll && it.Key >= end {
			return false
		}
		out = append(out, it)
		return true
	})
	return out
}

// applyEtcdTxn applies t all or nothing: the branch of every transaction
// (nested ones too) is chosen against the state before any write, as
// etcd does; the writes on that path are then checked, and applied only
// if all of them can be.
func (m *Machine) applyEtcdTxn(t *EtcdTxn) Result {
	if t == nil {
		return Result{Err: fail(ErrInvalidBatch, "an etcd transaction is missing")}
	}
	path, err := m.etcdPath(t, nil, 0)
	if err != nil {
		return Result{Err: err}
	}
	if err := m.checkEtcdPath(t, path); err != nil {
		return Result{Err: err}
	}
	x := etcdExec{m: m, path: path}
	res := x.run(t)
	if len(x.events) > 0 {
		m.publish(x.events...)
	}
	return Result{Revision: m.revision, Etcd: res}
}

// etcdPath evaluates t's compares, and those of the nested transactions
// of the branch taken, depth first: the branch of each in turn.
func (m *Machine) etcdPath(t *EtcdTxn, path []bool, depth int) ([]bool, *applyError) {
	if depth > maxEtcdTxnDepth {
		return nil, fail(ErrInvalidBatch, "transactions nested more than %d deep", maxEtcdTxnDepth)
	}
	ok := true
	for i := range t.Compares {
		if !m.etcdCompare(&t.Compares[i]) {
			ok = false
			break
		}
	}
	path = append(path, ok)
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	for i := range branch {
		if branch[i].Type != EtcdNested {
			continue
		}
		if branch[i].Txn == nil {
			return nil, fail(ErrInvalidBatch, "a nested transaction is missing")
		}
		var err *applyError
		if path, err = m.etcdPath(branch[i].Txn, path, depth+1); err != nil {
			return nil, err
		}
	}
	return path, nil
}

func (m *Machine) etcdCompare(c *EtcdCompare) bool {
	items := m.etcdRange(c.Key, c.End)
	if len(items) == 0 {
		if c.Target == EtcdTargetValue {
			return false
		}
		items = []Item{{}}
	}
	for i := range items {
		var cmp int
		it := &items[i]
		switch c.Target {
		case EtcdTargetVersion:
			cmp = compareInt(it.Version, c.Number)
		case EtcdTargetCreate:
			cmp = compareInt(it.CreateRevision, c.Number)
		case EtcdTargetMod:
			cmp = compareInt(it.Revision, c.Number)
		case EtcdTargetLease:
			cmp = compareInt(int64(it.Lease), c.Number)
		case EtcdTargetValue:
			cmp = bytes.Compare(EtcdValue(it.Value), c.Value)
		default:
			return false
		}
		var holds bool
		switch c.Result {
		case EtcdEqual:
			holds = cmp == 0
		case EtcdGreater:
			holds = cmp > 0
		case EtcdLess:
			holds = cmp < 0
		case EtcdNotEqual:
			holds = cmp != 0
		}
		if !holds {
			return false
		}
	}
	return true
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// etcdWalk calls fn for every operation on t's path (nested ones after
// the operations before them), in order.
func etcdWalk(t *EtcdTxn, path []bool, fn func(*EtcdOp) *applyError) ([]bool, *applyError) {
	ok := path[0]
	path = path[1:]
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	for i := range branch {
		o := &branch[i]
		if o.Type == EtcdNested {
			var err *applyError
			if path, err = etcdWalk(o.Txn, path, fn); err != nil {
				return nil, err
			}
			continue
		}
		if err := fn(o); err != nil {
			return nil, err
		}
	}
	return path, nil
}

// checkEtcdPath checks every write on t's path against the state before
// the transaction: keys and values valid, leases there, a key put once
// and not also deleted (etcd's "duplicate key given in txn request"),
// room for the keys created.
func (m *Machine) checkEtcdPath(t *EtcdTxn, path []bool) *applyError {
	var puts []string
	type span struct{ key, end string }
	var deletes []span
	creates := 0
	_, err := etcdWalk(t, path, func(o *EtcdOp) *applyError {
		switch o.Type {
		case EtcdRange:
			return nil
		case EtcdDelete:
			deletes = append(deletes, span{o.Key, o.End})
			return nil
		case EtcdPut:
		default:
			return fail(ErrInvalidBatch, "etcd operation type %d", o.Type)
		}
		if err := checkKey(o.Key, m.maxKeyBytes); err != nil {
			return err
		}
		cur, exists := m.items.GetKey(Item{Key: o.Key})
		if (o.IgnoreValue || o.IgnoreLease) && !exists {
			return fail(ErrKeyNotFound, "put %q keeping its value or lease", o.Key)
		}
		if !o.IgnoreValue {
			if err := checkValue(o.Value, m.maxValueBytes); err != nil {
				return err
			}
		}
		if !o.IgnoreLease && o.Lease != 0 {
			if err := m.checkAttach(o.Key, o.Lease, cur, exists); err != nil {
				return err
			}
		}
		if !exists {
			creates++
		}
		puts = append(puts, o.Key)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(puts)
	for i := range puts {
		if i > 0 && puts[i] == puts[i-1] {
			return fail(ErrInvalidBatch, "duplicate key given in txn request: %q", puts[i])
		}
		for _, d := range deletes {
			if puts[i] == d.key || (d.end != "" && puts[i] > d.key && (d.end == EtcdRangeAll || puts[i] < d.end)) {
				return fail(ErrInvalidBatch, "duplicate key given in txn request: %q is put and deleted", puts[i])
			}
		}
	}
	if creates > 0 && m.keyCount()+creates > m.maxKeys {
		return fail(ErrStateFull, "transaction creates %d keys; the state holds %d of at most %d", creates, m.keyCount(), m.maxKeys)
	}
	return nil
}

// etcdExec applies the operations of a checked path.
type etcdExec struct {
	m      *Machine
	path   []bool
	bumped bool
	events []Event
}

// write gives the transaction its revision at its first change.
func (x *etcdExec) write() {
	if !x.bumped {
		x.m.revision++
		x.bumped = true
	}
}

func (x *etcdExec) run(t *EtcdTxn) *EtcdTxnResult {
	ok := x.path[0]
	x.path = x.path[1:]
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	res := &EtcdTxnResult{Succeeded: ok, Responses: make([]EtcdOpResult, len(branch))}
	m := x.m
	for i := range branch {
		o := &branch[i]
		r := &res.Responses[i]
		switch o.Type {
		case EtcdRange:
			r.Items = m.etcdRange(o.Key, o.End)
		case EtcdPut:
			cur, exists := m.items.Get(Item{Key: o.Key})
			value, lease := o.Value, o.Lease
			if o.IgnoreValue {
				value = cur.Value
			}
			if o.IgnoreLease {
				lease = int64(cur.Lease)
			}
			if o.PrevKV && exists {
				r.Items = []Item{cur}
			}
			x.write()
			x.events = append(x.events, Event{Type: EventPut, Item: m.put(o.Key, value, lease, cur, exists)})
		case EtcdDelete:
			gone := m.etcdRange(o.Key, o.End)
			if o.PrevKV {
				r.Items = gone
			}
			r.Deleted = int64(len(gone))
			if len(gone) > 0 {
				x.write()
			}
			for _, it := range gone {
				x.events = append(x.events, m.remove(it.Key))
			}
		case EtcdNested:
			r.Txn = x.run(o.Txn)
		}
	}
	return res
}
