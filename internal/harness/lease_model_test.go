package harness_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/kv"
)

// The lease model: a few keys written with or without a lease, leases
// granted (ids chosen by the test, never reused) and revoked, keys
// deleted and read. A key attached to a lease disappears when, and only
// when, that lease is revoked (or the key is deleted or written without
// it); a put with a lease that is gone is refused. Leases live an hour
// here: none expires during the run, so every disappearance must be a
// revoke's.

const (
	leaseModelKeys   = 3
	leaseModelLeases = 63 // ids 1 to 63: a bit each in alive
)

type leaseOpKind uint8

const (
	lmPut    leaseOpKind = iota // Lease 0: without a lease
	lmDelete                    // the key
	lmGet
	lmGrant
	lmRevoke
)

func (k leaseOpKind) String() string {
	return [...]string{"put", "delete", "get", "grant", "revoke"}[k]
}

type leaseModelIn struct {
	Op    leaseOpKind
	Key   int
	Value string
	Lease int64
}

type leaseModelOut struct {
	Unknown bool
	// OK: put, delete, grant, revoke applied; get found the key.
	OK    bool
	Value string // get
	Lease int64  // get
}

type leaseKey struct {
	Exists bool
	Value  string
	Lease  int64
}

type leaseModelState struct {
	Keys  [leaseModelKeys]leaseKey
	Alive uint64 // bit i: lease i is granted and not revoked
	Used  uint64 // bit i: lease i was granted (ids are never reused)
}

func bit(id int64) uint64 { return 1 << uint(id) }

func (s leaseModelState) revoke(id int64) leaseModelState {
	s.Alive &^= bit(id)
	for i := range s.Keys {
		if s.Keys[i].Exists && s.Keys[i].Lease == id {
			s.Keys[i] = leaseKey{}
		}
	}
	return s
}

func stepLease(s leaseModelState, in leaseModelIn, out leaseModelOut) []leaseModelState {
	alive := in.Lease == 0 || s.Alive&bit(in.Lease) != 0
	switch in.Op {
	case lmPut:
		applied := s
		applied.Keys[in.Key] = leaseKey{Exists: true, Value: in.Value, Lease: in.Lease}
		switch {
		case out.Unknown && alive:
			return []leaseModelState{s, applied}
		case out.Unknown:
			return []leaseModelState{s}
		case out.OK && alive:
			return []leaseModelState{applied}
		case !out.OK && !alive:
			return []leaseModelState{s}
		}
	case lmDelete:
		applied := s
		applied.Keys[in.Key] = leaseKey{}
		switch {
		case out.Unknown:
			return []leaseModelState{s, applied}
		case out.OK && s.Keys[in.Key].Exists:
			return []leaseModelState{applied}
		case !out.OK && !s.Keys[in.Key].Exists:
			return []leaseModelState{s}
		}
	case lmGet:
		k := s.Keys[in.Key]
		if (!out.OK && !k.Exists) || (out.OK && k.Exists && k.Value == out.Value && k.Lease == out.Lease) {
			return []leaseModelState{s}
		}
	case lmGrant:
		applied := s
		applied.Alive |= bit(in.Lease)
		applied.Used |= bit(in.Lease)
		switch {
		case s.Used&bit(in.Lease) != 0:
			// Granted before (an earlier attempt): refused as existing.
			if !out.OK {
				return []leaseModelState{s}
			}
		case out.Unknown:
			return []leaseModelState{s, applied}
		case out.OK:
			return []leaseModelState{applied}
		}
	case lmRevoke:
		switch {
		case out.Unknown && alive:
			return []leaseModelState{s, s.revoke(in.Lease)}
		case out.Unknown:
			return []leaseModelState{s}
		case out.OK && alive:
			return []leaseModelState{s.revoke(in.Lease)}
		case !out.OK && !alive:
			return []leaseModelState{s}
		}
	}
	return nil
}

var leaseKVModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{leaseModelState{}} },
	Step: func(state, input, output any) []any {
		next := stepLease(state.(leaseModelState), input.(leaseModelIn), output.(leaseModelOut))
		out := make([]any, len(next))
		for i := range next {
			out[i] = next[i]
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(leaseModelIn), output.(leaseModelOut)
		res := fmt.Sprintf("ok %v", out.OK)
		if out.Unknown {
			res = "unknown"
		} else if in.Op == lmGet && out.OK {
			res = fmt.Sprintf("%s (lease %d)", out.Value, out.Lease)
		}
		return fmt.Sprintf("%v k%d %s lease %d -> %s", in.Op, in.Key, in.Value, in.Lease, res)
	},
}).ToModel()

// leaseModelClient is one sequential client.
type leaseModelClient struct {
	cid    int
	ids    *atomic.Int64
	rng    *rand.Rand
	c      *harness.Cluster
	h      *history
	nextID *atomic.Int64 // the next lease id to grant (shared)
	seq    int
}

func (cl *leaseModelClient) run(t *testing.T) {
	running := cl.c.RunningNames()
	if len(running) == 0 {
		backOff()
		return
	}
	st := cl.c.Client(running[cl.rng.IntN(len(running))])
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(300+cl.rng.IntN(700))*time.Millisecond)
	defer cancel()
	cl.seq++
	key := cl.rng.IntN(leaseModelKeys)
	lease := 1 + cl.rng.Int64N(max(1, cl.nextID.Load()-1))
	var in leaseModelIn
	var out leaseModelOut
	var err error
	call := cl.h.now()
	// About one grant and one revoke in a hundred operations: leases
	// come and go a few dozen times a run, ids are not used up.
	switch r := cl.rng.IntN(100); {
	case r < 30:
		in = leaseModelIn{Op: lmPut, Key: key, Value: fmt.Sprintf(`"c%d-%d"`, cl.cid, cl.seq), Lease: lease}
		if r < 8 {
			in.Lease = 0
		}
		_, err = st.PutWith(ctx, "lk"+strconv.Itoa(key), []byte(in.Value), kv.PutOptions{Lease: kv.LeaseID(in.Lease)})
		out.OK = err == nil
		if errors.Is(err, kv.ErrLeaseNotFound) {
			err = nil
		}
	case r < 40:
		in = leaseModelIn{Op: lmDelete, Key: key}
		_, err = st.Delete(ctx, "lk"+strconv.Itoa(key))
		out.OK = err == nil
		if errors.Is(err, kv.ErrKeyNotFound) {
			err = nil
		}
	case r < 98:
		in = leaseModelIn{Op: lmGet, Key: key}
		var it kv.Item
		it, err = st.Get(ctx, "lk"+strconv.Itoa(key), kv.Linearizable)
		if err == nil {
			out = leaseModelOut{OK: true, Value: string(it.Value), Lease: int64(it.Lease)}
		} else if errors.Is(err, kv.ErrKeyNotFound) {
			err = nil
		}
	case r == 98:
		id := cl.nextID.Add(1) - 1
		if id > leaseModelLeases {
			return
		}
		in = leaseModelIn{Op: lmGrant, Lease: id}
		_, err = st.Grant(ctx, time.Hour, kv.LeaseID(id))
		out.OK = err == nil
		if errors.Is(err, kv.ErrLeaseExists) {
			err = nil
		}
	default:
		in = leaseModelIn{Op: lmRevoke, Lease: lease}
		_, err = st.Revoke(ctx, kv.LeaseID(lease))
		out.OK = err == nil
		if errors.Is(err, kv.ErrLeaseNotFound) {
			err = nil
		}
	}
	switch {
	case err == nil:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: cl.h.now()})
	case in.Op == lmGet || (notProposed(err) && !errors.Is(err, consensus.ErrRemoved)):
		cl.h.count(true, in.Op == lmGet, unexpectedErr(err))
		backOff()
	default:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: leaseModelOut{Unknown: true}, Return: math.MaxInt64})
		cl.h.count(false, false, unexpectedErr(err))
		cl.cid = int(cl.ids.Add(1))
	}
}

// TestLeaseLinearizability runs lease clients under the nemesis and checks
// the history against the lease model with porcupine.
func TestLeaseLinearizability(t *testing.T) {
	runFor := 5 * time.Second
	seed := uint64(14_1)
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6d))
	kind := []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble}[rng.IntN(2)]
	t.Logf("seed %d: 5 nodes, %s storage, %v (replay: go test -race -run TestLeaseLinearizability ./internal/harness/ -seed=%d)", seed, kind, runFor, seed)
	snaps := newSnapWatch()
	c := harness.New(t, harness.Options{Nodes: 5, Seed: seed, Storage: kind, Leases: &kv.LessorConfig{},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 40; cfg.SnapshotCatchUpEntries = 8 },
		OnStart:   snaps.watch})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h := &history{start: time.Now()}
	const nClients = 3
	var ids, nextID atomic.Int64
	ids.Store(nClients - 1)
	nextID.Store(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range nClients {
		cl := &leaseModelClient{cid: i, ids: &ids, rng: rand.New(rand.NewPCG(seed, uint64(i))), c: c, h: h, nextID: &nextID}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cl.run(t)
			}
		})
	}
	nem, nemErr := runNemesis(c, seed, snaps, 5, runFor, stop, &wg)
	if nemErr != nil {
		t.Fatalf("nemesis: %v", nemErr)
	}
	h.mu.Lock()
	ops := h.ops
	h.mu.Unlock()
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(leaseModelIn), op.Output.(leaseModelOut)
		switch {
		case out.Unknown:
			counts["unknown"]++
		case in.Op == lmRevoke && out.OK:
			counts["revokes"]++
		case in.Op == lmPut && in.Lease != 0 && out.OK:
			counts["leased puts"]++
		case in.Op == lmPut && in.Lease != 0:
			counts["puts refused (lease gone)"]++
		case in.Op == lmGet && out.OK && out.Lease != 0:
			counts["reads of leased keys"]++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(leaseKVModel, ops, 60*time.Second)
	t.Logf("seed %d: %d operations %v; %d left out, %d unexpected errors %q; faults %v", seed, len(ops), counts, h.omitted, h.unexpected, h.unexpectedSample, nem.faults)
	if h.unexpected > 0 {
		t.Errorf("unexpected errors: %q", h.unexpectedSample)
	}
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := visualizationPath(t, seed)
		if err := porcupine.VisualizePath(leaseKVModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("seed %d: the lease history is not linearizable", seed)
	default:
		t.Fatalf("seed %d: the check did not finish", seed)
	}
	if counts["revokes"] == 0 || counts["leased puts"] == 0 || counts["reads of leased keys"] == 0 {
		t.Fatalf("the run exercised too little: %v", counts)
	}
}
