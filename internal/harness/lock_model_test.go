package harness_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/kv"
)

// The lock model: one lock, taken and released by clients that each hold
// a lease that never expires during the run (so the only way the lock
// changes hands is a release), with fenced writes. It checks mutual
// exclusion (an acquire succeeds only when the lock is free, or already
// the acquirer's), tokens strictly increasing from grant to grant, a
// release only by the holding token, and that a fenced write is applied
// exactly when its token holds the lock.

type lockOpKind uint8

const (
	lockAcquire lockOpKind = iota // try once
	lockRelease                   // by token
	lockWrite                     // a put fenced by (lock, token)
	lockRead                      // the lock's holder and token
)

func (k lockOpKind) String() string {
	return [...]string{"acquire", "release", "fenced-write", "read"}[k]
}

type lockIn struct {
	Op    lockOpKind
	Lease int64 // acquire: the acquirer
	Token int64 // release, write: the token used
}

type lockOut struct {
	Unknown bool
	// OK: acquired, released, written. For a read, whether it is held.
	OK    bool
	Token int64 // acquire OK, read OK: the holder's token
	Lease int64 // read OK: the holder's lease
}

// lockModelState is the lock as the model has it. Token -1 is a holder
// whose token is not known yet (an acquire of unknown outcome took it):
// it is above Last. Last is the highest token granted so far, as far as
// the history shows.
type lockModelState struct {
	Holder int64
	Token  int64
	Last   int64
}

func (s lockModelState) holdsWith(token int64) bool {
	return s.Holder != 0 && (s.Token == token || (s.Token == -1 && token > s.Last))
}

// learn returns s with an unknown holder token set to token.
func (s lockModelState) learn(token int64) lockModelState {
	if s.Token == -1 {
		s.Token = token
	}
	s.Last = max(s.Last, s.Token)
	return s
}

func stepLock(s lockModelState, in lockIn, out lockOut) []lockModelState {
	switch in.Op {
	case lockAcquire:
		switch {
		case out.Unknown:
			if s.Holder == 0 {
				return []lockModelState{s, {Holder: in.Lease, Token: -1, Last: s.Last}}
			}
			return []lockModelState{s}
		case out.OK && s.Holder == 0 && out.Token > s.Last:
			return []lockModelState{{Holder: in.Lease, Token: out.Token, Last: out.Token}}
		case out.OK && s.Holder == in.Lease && s.holdsWith(out.Token):
			return []lockModelState{s.learn(out.Token)}
		case !out.OK && s.Holder != 0 && s.Holder != in.Lease:
			return []lockModelState{s}
		}
	case lockRelease:
		switch {
		case out.Unknown:
			if s.holdsWith(in.Token) {
				return []lockModelState{s, {Last: max(s.Last, in.Token)}}
			}
			return []lockModelState{s}
		case out.OK && s.holdsWith(in.Token):
			return []lockModelState{{Last: max(s.Last, in.Token)}}
		case !out.OK && !(s.Holder != 0 && s.Token == in.Token):
			// A holder of unknown token refusing token t says nothing
			// certain here: t may simply not be its token.
			return []lockModelState{s}
		}
	case lockWrite:
		switch {
		case out.Unknown:
			return []lockModelState{s}
		case out.OK && s.holdsWith(in.Token):
			return []lockModelState{s.learn(in.Token)}
		case !out.OK && !(s.Holder != 0 && s.Token == in.Token):
			return []lockModelState{s}
		}
	case lockRead:
		switch {
		case !out.OK && s.Holder == 0:
			return []lockModelState{s}
		case out.OK && s.Holder == out.Lease && s.holdsWith(out.Token):
			return []lockModelState{s.learn(out.Token)}
		}
	}
	return nil
}

var lockModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{lockModelState{}} },
	Step: func(state, input, output any) []any {
		next := stepLock(state.(lockModelState), input.(lockIn), output.(lockOut))
		out := make([]any, len(next))
		for i := range next {
			out[i] = next[i]
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(lockIn), output.(lockOut)
		switch {
		case out.Unknown:
			return fmt.Sprintf("%v lease %d token %d -> unknown", in.Op, in.Lease, in.Token)
		case in.Op == lockRead && out.OK:
			return fmt.Sprintf("read -> lease %d token %d", out.Lease, out.Token)
		}
		return fmt.Sprintf("%v lease %d token %d -> ok %v token %d", in.Op, in.Lease, in.Token, out.OK, out.Token)
	},
	DescribeState: func(state any) string {
		s := state.(lockModelState)
		return fmt.Sprintf("holder %d token %d (last %d)", s.Holder, s.Token, s.Last)
	},
}).ToModel()

const modelLock = "model-lock"

// modelElection is the election TestElectionLinearizability runs: the
// lock kv.ElectionPrefix+modelElection underneath.
const modelElection = "model-election"

// lockClient is one sequential client with its own lease.
type lockClient struct {
	cid   int
	ids   *atomic.Int64
	rng   *rand.Rand
	c     *harness.Cluster
	h     *history
	lease kv.LeaseID
	// token is the token it believes it holds the lock with (0: none);
	// stale a token it held before, for writes that must be refused.
	token, stale int64
	// unsure is set after an operation of unknown outcome: the client
	// reads the lock before going on.
	unsure bool
	// election: campaign, resign and read the leader of modelElection
	// rather than take, release and read modelLock.
	election bool
}

// lockName is the lock the client's operations are on.
func (cl *lockClient) lockName() string {
	if cl.election {
		return kv.ElectionPrefix + modelElection
	}
	return modelLock
}

func (cl *lockClient) node() string {
	running := cl.c.RunningNames()
	if len(running) == 0 {
		return ""
	}
	return running[cl.rng.IntN(len(running))]
}

// run records one operation of the client's.
func (cl *lockClient) run() {
	node := cl.node()
	if node == "" {
		backOff()
		return
	}
	st := cl.c.Client(node)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(300+cl.rng.IntN(700))*time.Millisecond)
	defer cancel()
	var in lockIn
	var out lockOut
	var err error
	call := cl.h.now()
	switch {
	case cl.unsure || cl.rng.IntN(8) == 0:
		in = lockIn{Op: lockRead}
		var info kv.LockInfo
		if cl.election {
			info, err = st.ElectionLeader(ctx, modelElection, kv.Linearizable)
		} else {
			info, err = st.LockState(ctx, modelLock, kv.Linearizable)
		}
		if errors.Is(err, kv.ErrLockNotFound) {
			err = nil
		} else if err == nil {
			out = lockOut{OK: true, Token: info.Token, Lease: int64(info.Lease)}
		}
		if err == nil {
			cl.unsure = false
			if out.OK && out.Lease == int64(cl.lease) {
				cl.token = out.Token
			} else if cl.token != 0 {
				cl.stale, cl.token = cl.token, 0
			}
		}
	case cl.token == 0 && cl.stale != 0 && cl.rng.IntN(4) == 0:
		in = lockIn{Op: lockWrite, Token: cl.stale}
		err = cl.write(ctx, st, cl.stale, &out)
	case cl.token == 0:
		in = lockIn{Op: lockAcquire, Lease: int64(cl.lease)}
		var info kv.LockInfo
		if cl.election {
			info, err = st.Campaign(ctx, modelElection, cl.lease, []byte(fmt.Sprintf(`"candidate %d"`, cl.lease)), 0)
		} else {
			info, err = st.Acquire(ctx, modelLock, cl.lease, 0)
		}
		switch {
		case err == nil:
			out, cl.token = lockOut{OK: true, Token: info.Token}, info.Token
		case errors.Is(err, kv.ErrLocked):
			err = nil
		}
	case cl.rng.IntN(3) == 0:
		in = lockIn{Op: lockRelease, Token: cl.token}
		if cl.election {
			err = st.Resign(ctx, modelElection, cl.token)
		} else {
			err = st.Release(ctx, modelLock, cl.lease, cl.token)
		}
		switch {
		case err == nil:
			out.OK = true
			cl.stale, cl.token = cl.token, 0
		case errors.Is(err, kv.ErrNotHolder):
			err = nil
			cl.stale, cl.token = cl.token, 0
		}
	default:
		in = lockIn{Op: lockWrite, Token: cl.token}
		err = cl.write(ctx, st, cl.token, &out)
	}
	switch {
	case err == nil:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: cl.h.now()})
	case in.Op == lockRead || (notProposed(err) && !errors.Is(err, consensus.ErrRemoved)):
		cl.h.count(true, in.Op == lockRead, unexpectedErr(err))
		backOff()
	default:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: lockOut{Unknown: true}, Return: math.MaxInt64})
		cl.h.count(false, false, unexpectedErr(err))
		cl.cid = int(cl.ids.Add(1))
		cl.unsure = true
	}
}

// write puts a value fenced by token: OK if applied, not OK if fenced.
func (cl *lockClient) write(ctx context.Context, st *kv.Store, token int64, out *lockOut) error {
	_, err := st.Put(kv.WithFence(ctx, kv.Fence{Lock: cl.lockName(), Token: token}), "fenced", []byte(fmt.Sprint(token)))
	switch {
	case err == nil:
		out.OK = true
	case errors.Is(err, kv.ErrFenced):
		err = nil
		if token == cl.token {
			cl.stale, cl.token = cl.token, 0
		}
	}
	return err
}

// TestLockLinearizability runs lock clients under the nemesis (crashes,
// partitions, leader isolation, lossy links, membership changes) and
// checks their history against the lock model with porcupine.
func TestLockLinearizability(t *testing.T) { runLockModel(t, 14_3, false) }

// TestElectionLinearizability is TestLockLinearizability with candidates
// that campaign, resign and read the leader of an election (a lock with
// values underneath): exactly one leader at a time, tokens increasing,
// the leader's fenced writes applied exactly while it leads, and on every
// node the leadership observed in order.
func TestElectionLinearizability(t *testing.T) { runLockModel(t, 14_4, true) }

func runLockModel(t *testing.T, seed uint64, election bool) {
	runFor := 6 * time.Second
	if d := soakDuration(t); d > 0 {
		runFor = d
	}
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6f636b))
	kind := []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble}[rng.IntN(2)]
	t.Logf("seed %d: 5 nodes, %s storage, election %v, %v (replay: go test -race -run '%s' ./internal/harness/ -seed=%d)", seed, kind, election, runFor, t.Name(), seed)
	snaps := newSnapWatch()
	c := harness.New(t, harness.Options{Nodes: 5, Seed: seed, Storage: kind, Leases: &kv.LessorConfig{},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 40; cfg.SnapshotCatchUpEntries = 8 },
		OnStart:   snaps.watch})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := &history{start: time.Now()}
	const nClients = 5
	var ids atomic.Int64
	ids.Store(nClients - 1)
	clients := make([]*lockClient, nClients)
	for i := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l, err := c.Client(leader).Grant(ctx, time.Hour, 0)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = &lockClient{cid: i, ids: &ids, rng: rand.New(rand.NewPCG(seed, uint64(i))), c: c, h: h, lease: l.ID, election: election}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cl.run()
			}
		})
	}
	// Observers: on every node, the lock's token as the node applies it
	// never goes back (an incarnation replays its log from a snapshot or
	// the start, so each new machine is observed afresh).
	var obsMu sync.Mutex
	var obsBack []string
	observed := 0
	for _, name := range c.Names() {
		wg.Go(func() {
			var machine *kv.Machine
			var last int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !c.Running(name) {
					backOff()
					continue
				}
				m := c.Client(name).Machine()
				if m != machine {
					machine, last = m, 0
				}
				changed := m.LockChanges(clients[0].lockName())
				if info, ok := m.Lock(clients[0].lockName()); ok {
					obsMu.Lock()
					observed++
					if info.Token < last {
						obsBack = append(obsBack, fmt.Sprintf("%s: token %d after %d", name, info.Token, last))
					}
					obsMu.Unlock()
					last = info.Token
				}
				select {
				case <-changed:
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond): // a crashed node's machine changes no more
				}
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
	var acquired, fencedOK, fencedRefused, unknown int
	for _, op := range ops {
		in, out := op.Input.(lockIn), op.Output.(lockOut)
		switch {
		case out.Unknown:
			unknown++
		case in.Op == lockAcquire && out.OK:
			acquired++
		case in.Op == lockWrite && out.OK:
			fencedOK++
		case in.Op == lockWrite:
			fencedRefused++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(lockModel, ops, 60*time.Second)
	t.Logf("seed %d: %d operations (%d grants, %d fenced writes applied, %d refused, %d unknown outcome); %d left out, %d unexpected errors %q; faults %v",
		seed, len(ops), acquired, fencedOK, fencedRefused, unknown, h.omitted, h.unexpected, h.unexpectedSample, nem.faults)
	if h.unexpected > 0 {
		t.Errorf("unexpected errors: %q", h.unexpectedSample)
	}
	t.Logf("observers saw the lock %d times on the nodes' machines", observed)
	if len(obsBack) > 0 {
		t.Errorf("an observer saw a token go back: %q", obsBack)
	}
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := visualizationPath(t, seed)
		if err := porcupine.VisualizePath(lockModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("seed %d: the lock history is not linearizable", seed)
	default:
		t.Fatalf("seed %d: the check did not finish", seed)
	}
	if acquired < 3 || fencedOK == 0 || fencedRefused == 0 {
		t.Fatalf("the run exercised too little: %d grants, %d fenced writes applied, %d refused", acquired, fencedOK, fencedRefused)
	}
}
