package harness_test

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// opKind is a client operation on the key-value store.
type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
	// opPutIf is kv.Store.PutIf with kv.IfRevision(CondRev) (CondRev 0:
	// kv.IfAbsent).
	opPutIf
	// opUpdate is kv.Store.Update writing Value; Seen is the revision the
	// successful attempt's function saw (0: absent).
	opUpdate
	// opBatch is kv.Store.Batch putting Value under every key of Keys,
	// at one revision, with a precondition on Keys[0] if HasCond.
	opBatch
	// opList is kv.Store.List of every key: one linearizable read of
	// several keys at one revision.
	opList
)

func (k opKind) String() string {
	return [...]string{"get", "put", "delete", "putIf", "update", "batch", "list"}[k]
}

// kvInput is an operation's call.
type kvInput struct {
	Op    opKind
	Key   string
	Value string // put, putIf, update, batch
	// HasCond and CondRev are putIf's precondition, and a batch's on
	// Keys[0]: the key at revision CondRev, or absent if CondRev is 0.
	HasCond bool
	CondRev int64
	// Keys are a batch's keys, or the keys a list reads.
	Keys []string
}

// kvOutput is an operation's result. Unknown marks a write whose outcome
// the client could not learn (a timeout, a stopped node): it may have
// happened, once, at any time after its call, so the model accepts it
// with any result and the history gives it a return time after every
// other operation.
type kvOutput struct {
	Unknown bool
	// Conflict: a putIf or batch failed its precondition (kv.ErrConflict)
	// and changed nothing.
	Conflict bool
	// Found: for get, the key exists; for delete, it existed.
	Found bool
	// Value, CreateRevision and Version are a get's item.
	Value          string
	CreateRevision int64
	Version        int64
	// Revision is a get's item revision, or a write's own revision, or a
	// list's read revision.
	Revision int64
	// Seen is, for an update, the revision its function saw.
	Seen int64
	// Items are a list's items.
	Items []listItem
}

// listItem is one item of a list.
type listItem struct {
	Key, Value                        string
	Revision, CreateRevision, Version int64
}

// keyState is the model's state of one key. Revisions are checked too:
// a key's writes get increasing revisions in linearization order, and a
// read reports the revision, create revision and version of the write it
// sees. A revision written by an operation of unknown outcome is unknown
// (0) until a read reveals it.
type keyState struct {
	Exists    bool
	Value     string
	Version   int64
	ModRev    int64 // revision of the write that set Value; 0 if unknown
	CreateRev int64 // revision the key was created at; 0 if unknown
	// Floor is the highest revision known to have been given to a write
	// of this key so far: every later write's revision is above it.
	Floor int64
}

// kvModel is the sequential specification of the store, partitioned by
// key.
//
// Why per key, with batches and lists split into per-key operations,
// rather than one state over all keys: porcupine's search is exponential
// in the number of concurrent operations of a partition, and a run has
// thousands of operations, hundreds of unknown outcome, over 3 to 7 keys;
// one state over all keys makes every operation concurrent with every
// other and the check does not finish. Per key it finishes in seconds.
// What per key cannot see, that a batch is applied all or nothing at one
// revision and that a list is one consistent cut, is checked outside
// porcupine by checkAtomicity, which relies on the per-key check for
// everything else (each key's projection of a batch or a list is
// linearizable on its own).
//
// The model is nondeterministic (porcupine.NondeterministicModel) so that
// a conditional write of unknown outcome, or one whose precondition
// depends on a revision still unknown, can both apply and not.
var kvModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			for _, p := range projectOp(op) {
				k := p.Input.(kvInput).Key
				byKey[k] = append(byKey[k], p)
			}
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{keyState{}} },
	Step: func(state, input, output any) []any {
		next := stepKey(state.(keyState), input.(kvInput), output.(kvOutput))
		out := make([]any, len(next))
		for i := range next {
			out[i] = next[i]
		}
		return out
	},
	DescribeOperation: func(input, output any) string { return describeOp(input.(kvInput), output.(kvOutput)) },
	DescribeState: func(state any) string {
		s := state.(keyState)
		if !s.Exists {
			return fmt.Sprintf("absent (floor %d)", s.Floor)
		}
		return fmt.Sprintf("%s (rev %d, create %d, version %d)", s.Value, s.ModRev, s.CreateRev, s.Version)
	},
}).ToModel()

// projectOp splits a multi-key operation into its single-key parts, each
// with the whole operation's call and return times: a batch is a put of
// its value on each key (conditional on Keys[0] if it has a condition;
// a batch that failed its condition changed only what Keys[0]'s state
// says nothing about, so it is kept on that key alone), and a list is a
// get of each key it read. Other operations are kept as they are.
func projectOp(op porcupine.Operation) []porcupine.Operation {
	in, out := op.Input.(kvInput), op.Output.(kvOutput)
	part := func(pin kvInput, pout kvOutput) porcupine.Operation {
		p := op
		p.Input, p.Output = pin, pout
		return p
	}
	switch in.Op {
	case opBatch:
		var ps []porcupine.Operation
		for i, k := range in.Keys {
			pin := kvInput{Op: opPut, Key: k, Value: in.Value}
			if i == 0 && in.HasCond {
				pin.Op, pin.HasCond, pin.CondRev = opPutIf, true, in.CondRev
			} else if out.Conflict {
				continue
			}
			ps = append(ps, part(pin, kvOutput{Unknown: out.Unknown, Conflict: out.Conflict, Revision: out.Revision}))
		}
		return ps
	case opList:
		found := map[string]listItem{}
		for _, it := range out.Items {
			found[it.Key] = it
		}
		ps := make([]porcupine.Operation, 0, len(in.Keys))
		for _, k := range in.Keys {
			pout := kvOutput{}
			if it, ok := found[k]; ok {
				pout = kvOutput{Found: true, Value: it.Value, Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version}
			}
			ps = append(ps, part(kvInput{Op: opGet, Key: k}, pout))
		}
		return ps
	}
	return []porcupine.Operation{op}
}

func describeOp(in kvInput, out kvOutput) string {
	var res string
	switch {
	case out.Unknown:
		res = "unknown"
	case out.Conflict:
		res = "conflict"
	case in.Op == opList:
		items := make([]string, len(out.Items))
		for i, it := range out.Items {
			items[i] = fmt.Sprintf("%s=%s@%d", it.Key, it.Value, it.Revision)
		}
		res = fmt.Sprintf("at rev %d: [%s]", out.Revision, strings.Join(items, " "))
	case in.Op == opGet && out.Found:
		res = fmt.Sprintf("%s (rev %d, create %d, version %d)", out.Value, out.Revision, out.CreateRevision, out.Version)
	case in.Op == opGet || (in.Op == opDelete && !out.Found):
		res = "not found"
	case in.Op == opUpdate:
		res = fmt.Sprintf("rev %d (saw rev %d)", out.Revision, out.Seen)
	default:
		res = fmt.Sprintf("rev %d", out.Revision)
	}
	cond := ""
	if in.HasCond {
		cond = fmt.Sprintf(" if rev=%d", in.CondRev)
	}
	switch in.Op {
	case opPut, opPutIf, opUpdate:
		return fmt.Sprintf("%s(%s, %s%s) -> %s", in.Op, in.Key, in.Value, cond, res)
	case opBatch:
		return fmt.Sprintf("batch(%v, %s%s) -> %s", in.Keys, in.Value, cond, res)
	case opList:
		return fmt.Sprintf("list(%v) -> %s", in.Keys, res)
	}
	return fmt.Sprintf("%s(%s) -> %s", in.Op, in.Key, res)
}

// condMayHold and condMayFail say whether a precondition on s (the key at
// revision rev, or absent if rev is 0) can hold and can fail; both can
// when s's revision is unknown.
func condMayHold(s keyState, rev int64) bool {
	if rev == 0 {
		return !s.Exists
	}
	return s.Exists && (s.ModRev == rev || (s.ModRev == 0 && rev > s.Floor))
}

func condMayFail(s keyState, rev int64) bool {
	if rev == 0 {
		return s.Exists
	}
	return !s.Exists || s.ModRev != rev
}

// put returns s after a put of value at revision rev (0 if unknown).
func (s keyState) put(value string, rev int64) keyState {
	n := keyState{Exists: true, Value: value, Version: 1, Floor: s.Floor}
	if s.Exists {
		n.Version, n.CreateRev = s.Version+1, s.CreateRev
	}
	if rev != 0 {
		n.ModRev, n.Floor = rev, rev
		if !s.Exists {
			n.CreateRev = rev
		}
	}
	return n
}

// stepKey returns the states s may move to by the single-key operation
// in with result out; none if it cannot have that result.
func stepKey(s keyState, in kvInput, out kvOutput) []keyState {
	switch in.Op {
	case opGet:
		if !out.Found {
			if s.Exists {
				return nil
			}
			return []keyState{s}
		}
		if !s.Exists || out.Value != s.Value || out.Version != s.Version {
			return nil
		}
		if s.ModRev != 0 && out.Revision != s.ModRev {
			return nil
		}
		if s.ModRev == 0 && out.Revision <= s.Floor {
			return nil
		}
		if s.CreateRev != 0 && out.CreateRevision != s.CreateRev {
			return nil
		}
		if out.CreateRevision <= 0 || out.CreateRevision > out.Revision {
			return nil
		}
		s.ModRev, s.CreateRev, s.Floor = out.Revision, out.CreateRevision, max(s.Floor, out.Revision)
		return []keyState{s}

	case opPut, opUpdate, opPutIf:
		hold, fail := true, false
		switch {
		case in.Op == opPutIf:
			hold, fail = condMayHold(s, in.CondRev), condMayFail(s, in.CondRev)
		case in.Op == opUpdate && !out.Unknown:
			// The update's last attempt was a put on condition that the
			// key was still at the revision its function saw.
			hold, fail = condMayHold(s, out.Seen), false
		}
		if out.Unknown {
			var next []keyState
			if hold {
				next = append(next, s.put(in.Value, 0))
			}
			if fail {
				next = append(next, s)
			}
			return next
		}
		if out.Conflict {
			if !fail {
				return nil
			}
			return []keyState{s}
		}
		if !hold || out.Revision <= s.Floor {
			return nil
		}
		return []keyState{s.put(in.Value, out.Revision)}

	case opDelete:
		if out.Unknown {
			return []keyState{{Floor: s.Floor}}
		}
		if !out.Found {
			if s.Exists {
				return nil
			}
			return []keyState{s}
		}
		if !s.Exists || out.Revision <= s.Floor {
			return nil
		}
		return []keyState{{Floor: out.Revision}}
	}
	return nil
}
