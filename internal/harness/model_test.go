package harness_test

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// opKind is a client operation on the key-value store.
type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
)

func (k opKind) String() string {
	return [...]string{"get", "put", "delete"}[k]
}

// kvInput is an operation's call.
type kvInput struct {
	Op    opKind
	Key   string
	Value string // put only
}

// kvOutput is an operation's result. Unknown marks a write whose outcome
// the client could not learn (a timeout, a stopped node): it may have
// happened, once, at any time after its call, so the model accepts it
// with any result and the history gives it a return time after every
// other operation.
type kvOutput struct {
	Unknown bool
	// Found: for get, the key exists; for delete, it existed.
	Found bool
	// Value, CreateRevision and Version are a get's item.
	Value          string
	CreateRevision int64
	Version        int64
	// Revision is a get's item revision, or a write's own revision.
	Revision int64
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
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
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
	Init: func() any { return keyState{} },
	Step: func(state, input, output any) (bool, any) {
		return stepKey(state.(keyState), input.(kvInput), output.(kvOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		var res string
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Op == opGet && out.Found:
			res = fmt.Sprintf("%s (rev %d, create %d, version %d)", out.Value, out.Revision, out.CreateRevision, out.Version)
		case in.Op == opGet || (in.Op == opDelete && !out.Found):
			res = "not found"
		default:
			res = fmt.Sprintf("rev %d", out.Revision)
		}
		if in.Op == opPut {
			return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.Op, in.Key, res)
	},
	DescribeState: func(state any) string {
		s := state.(keyState)
		if !s.Exists {
			return fmt.Sprintf("absent (floor %d)", s.Floor)
		}
		return fmt.Sprintf("%s (rev %d, create %d, version %d)", s.Value, s.ModRev, s.CreateRev, s.Version)
	},
}

func stepKey(s keyState, in kvInput, out kvOutput) (bool, keyState) {
	switch in.Op {
	case opGet:
		if !out.Found {
			return !s.Exists, s
		}
		if !s.Exists || out.Value != s.Value || out.Version != s.Version {
			return false, s
		}
		if s.ModRev != 0 && out.Revision != s.ModRev {
			return false, s
		}
		if s.ModRev == 0 && out.Revision <= s.Floor {
			return false, s
		}
		if s.CreateRev != 0 && out.CreateRevision != s.CreateRev {
			return false, s
		}
		if out.CreateRevision <= 0 || out.CreateRevision > out.Revision {
			return false, s
		}
		s.ModRev, s.CreateRev, s.Floor = out.Revision, out.CreateRevision, max(s.Floor, out.Revision)
		return true, s

	case opPut:
		n := keyState{Exists: true, Value: in.Value, Version: 1, Floor: s.Floor}
		if s.Exists {
			n.Version, n.CreateRev = s.Version+1, s.CreateRev
		}
		if out.Unknown {
			return true, n
		}
		if out.Revision <= s.Floor {
			return false, s
		}
		n.ModRev, n.Floor = out.Revision, out.Revision
		if !s.Exists {
			n.CreateRev = out.Revision
		}
		return true, n

	case opDelete:
		if out.Unknown {
			return true, keyState{Floor: s.Floor}
		}
		if !out.Found {
			return !s.Exists, s
		}
		if !s.Exists || out.Revision <= s.Floor {
			return false, s
		}
		return true, keyState{Floor: out.Revision}
	}
	return false, s
}
