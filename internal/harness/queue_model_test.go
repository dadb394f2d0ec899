package harness_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// The queue model: each task alone in a queue of its own (so that a claim
// that finds nothing says something about that task alone, and the
// history partitions by task), enqueued, claimed, heartbeated, completed
// and failed (retried at once) by clients under the nemesis, with claim
// leases of 1 s that expire whenever nobody heartbeats them in time. It
// checks: at most one live epoch per task (heartbeat, complete and fail
// succeed only with the current claim's epoch), epochs strictly
// increasing from claim to claim, complete and fail with any other epoch
// refused, and a completed task never claimed (or completed) again. A
// claim's lease may expire at any moment the task is claimed: the model
// allows that step before every operation.

type queueOpKind uint8

const (
	queueEnqueue queueOpKind = iota
	queueClaim
	queueHeartbeat
	queueComplete
	queueFail
	queueRead
)

func (k queueOpKind) String() string {
	return [...]string{"enqueue", "claim", "heartbeat", "complete", "fail", "read"}[k]
}

type queueIn struct {
	Op    queueOpKind
	Task  int
	Epoch int64 // heartbeat, complete, fail
}

type queueOut struct {
	Unknown bool
	// OK: enqueued, claimed, kept alive, completed, failed; a read's task
	// exists. Not OK: nothing to claim, stale epoch, no such task.
	OK    bool
	Epoch int64  // claim OK: the epoch; read OK: the task's epoch
	State string // read OK: the task's state
}

// Task phases in the model.
const (
	phaseAbsent uint8 = iota
	phaseWaiting
	phaseClaimed
	phaseDone
)

// queueModelState is one task as the model has it. Epoch is the current
// claim's epoch when claimed (-1: a claim of unknown outcome took it, its
// epoch above Last), else the last claim's. Last is the highest epoch
// the history has shown.
type queueModelState struct {
	Phase uint8
	Epoch int64
	Last  int64
}

func (s queueModelState) holdsWith(e int64) bool {
	return s.Phase == phaseClaimed && (s.Epoch == e || (s.Epoch == -1 && e > s.Last))
}

func (s queueModelState) learn(e int64) queueModelState {
	if s.Epoch == -1 {
		s.Epoch = e
	}
	s.Last = max(s.Last, s.Epoch)
	return s
}

// expand returns s and, if it is claimed, s after its claim's lease
// expired: the task waits again.
func (s queueModelState) expand() []queueModelState {
	if s.Phase != phaseClaimed {
		return []queueModelState{s}
	}
	return []queueModelState{s, {Phase: phaseWaiting, Epoch: s.Epoch, Last: max(s.Last, s.Epoch)}}
}

func stepQueueTask(s0 queueModelState, in queueIn, out queueOut) []queueModelState {
	var next []queueModelState
	for _, s := range s0.expand() {
		next = append(next, stepQueueOnce(s, in, out)...)
	}
	return next
}

func stepQueueOnce(s queueModelState, in queueIn, out queueOut) []queueModelState {
	switch in.Op {
	case queueEnqueue:
		switch {
		case s.Phase == phaseAbsent && (out.OK || out.Unknown):
			added := s
			added.Phase = phaseWaiting
			if out.Unknown {
				return []queueModelState{s, added}
			}
			return []queueModelState{added}
		case s.Phase != phaseAbsent && (out.OK || out.Unknown):
			return []queueModelState{s} // the same id again: nothing added
		}
	case queueClaim:
		switch {
		case out.Unknown:
			if s.Phase == phaseWaiting {
				return []queueModelState{s, {Phase: phaseClaimed, Epoch: -1, Last: s.Last}}
			}
			return []queueModelState{s}
		case out.OK && s.Phase == phaseWaiting && out.Epoch > s.Last:
			return []queueModelState{{Phase: phaseClaimed, Epoch: out.Epoch, Last: out.Epoch}}
		case !out.OK && s.Phase != phaseWaiting:
			return []queueModelState{s}
		}
	case queueHeartbeat:
		switch {
		case out.Unknown:
			return []queueModelState{s}
		case out.OK && s.holdsWith(in.Epoch):
			return []queueModelState{s.learn(in.Epoch)}
		case !out.OK:
			// Refused: the epoch is not current, or its lease's deadline
			// passed on the leader's clock with the expiry not applied
			// yet (it may never be, if that leader's term ends). A
			// heartbeat's refusal asserts nothing.
			return []queueModelState{s}
		}
	case queueComplete, queueFail:
		after := queueModelState{Phase: phaseDone, Epoch: in.Epoch, Last: max(s.Last, in.Epoch)}
		if in.Op == queueFail {
			after.Phase = phaseWaiting
		}
		switch {
		case out.Unknown:
			if s.holdsWith(in.Epoch) {
				return []queueModelState{s, after}
			}
			return []queueModelState{s}
		case out.OK && s.holdsWith(in.Epoch):
			return []queueModelState{after}
		case !out.OK && !(s.Phase == phaseClaimed && s.Epoch == in.Epoch):
			return []queueModelState{s}
		}
	case queueRead:
		switch {
		case !out.OK && s.Phase == phaseAbsent:
			return []queueModelState{s}
		case !out.OK:
			return nil
		case out.State == api.TaskClaimed && s.holdsWith(out.Epoch):
			return []queueModelState{s.learn(out.Epoch)}
		case out.State == api.TaskDone && s.Phase == phaseDone && s.Epoch == out.Epoch:
			return []queueModelState{s}
		case out.State == api.TaskReady && s.Phase == phaseWaiting && out.Epoch >= s.Epoch:
			// A claim of unknown outcome, expired since, may have had a
			// higher epoch than the history showed.
			s.Epoch, s.Last = out.Epoch, max(s.Last, out.Epoch)
			return []queueModelState{s}
		}
	}
	return nil
}

var queueModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byTask := map[int][]porcupine.Operation{}
		for _, op := range history {
			task := op.Input.(queueIn).Task
			byTask[task] = append(byTask[task], op)
		}
		tasks := make([]int, 0, len(byTask))
		for task := range byTask {
			tasks = append(tasks, task)
		}
		sort.Ints(tasks)
		out := make([][]porcupine.Operation, len(tasks))
		for i, task := range tasks {
			out[i] = byTask[task]
		}
		return out
	},
	Init: func() []any { return []any{queueModelState{}} },
	Step: func(state, input, output any) []any {
		next := stepQueueTask(state.(queueModelState), input.(queueIn), output.(queueOut))
		out := make([]any, len(next))
		for i := range next {
			out[i] = next[i]
		}
		return out
	},
	Equal: func(a, b any) bool { return a.(queueModelState) == b.(queueModelState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(queueIn), output.(queueOut)
		if out.Unknown {
			return fmt.Sprintf("%v task %d epoch %d -> unknown", in.Op, in.Task, in.Epoch)
		}
		return fmt.Sprintf("%v task %d epoch %d -> ok %v epoch %d %s", in.Op, in.Task, in.Epoch, out.OK, out.Epoch, out.State)
	},
	DescribeState: func(state any) string {
		s := state.(queueModelState)
		return fmt.Sprintf("%s epoch %d (last %d)", [...]string{"absent", "waiting", "claimed", "done"}[s.Phase], s.Epoch, s.Last)
	},
}).ToModel()

func modelQueue(task int) string { return "model-queue-" + strconv.Itoa(task) }

const modelTaskID = "task"

// queueClient is one sequential worker. held maps a task to the epoch it
// believes it holds; stale to an epoch it held before, for operations
// that must be refused.
type queueClient struct {
	cid    int
	ids    *atomic.Int64
	rng    *rand.Rand
	c      *harness.Cluster
	h      *history
	window func() int // the first task of the tasks in play now
	held   map[int]int64
	stale  map[int]int64
}

// queueTasksInPlay is how many tasks the clients work on at a time.
const queueTasksInPlay = 4

func (cl *queueClient) run() {
	running := cl.c.RunningNames()
	if len(running) == 0 {
		backOff()
		return
	}
	node := running[cl.rng.IntN(len(running))]
	task := cl.window() + cl.rng.IntN(queueTasksInPlay)
	for held := range cl.held {
		if cl.rng.IntN(2) == 0 {
			task = held // work on what it holds, mostly
		}
	}
	if _, ok := cl.held[task]; ok && cl.rng.IntN(2) == 0 {
		// Heartbeats are the leader's: ask it (a follower refuses).
		if leader := cl.c.Leader(); leader != "" {
			node = leader
		}
	}
	st := cl.c.Client(node)
	queue := modelQueue(task)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(300+cl.rng.IntN(700))*time.Millisecond)
	defer cancel()
	in := queueIn{Task: task}
	var out queueOut
	var err error
	call := cl.h.now()
	epoch, holds := cl.held[task]
	staleEpoch, hasStale := cl.stale[task]
	switch r := cl.rng.IntN(12); {
	case r == 0:
		in.Op = queueRead
		var info kv.TaskInfo
		info, err = st.TaskState(ctx, queue, modelTaskID, kv.Linearizable)
		switch {
		case err == nil:
			out = queueOut{OK: true, Epoch: info.Epoch, State: info.State}
		case errors.Is(err, kv.ErrTaskNotFound):
			err = nil
		}
	case holds && r < 6:
		in.Op, in.Epoch = queueHeartbeat, epoch
		_, err = st.Heartbeat(ctx, queue, modelTaskID, epoch)
		cl.epochOutcome(&err, &out, task, epoch)
	case holds && r < 9:
		in.Op, in.Epoch = queueComplete, epoch
		err = st.Complete(ctx, queue, modelTaskID, epoch, []byte(strconv.Itoa(cl.cid)))
		cl.epochOutcome(&err, &out, task, epoch)
		if out.OK {
			cl.dropHeld(task)
		}
	case holds:
		in.Op, in.Epoch = queueFail, epoch
		zero := time.Duration(0)
		err = st.Fail(ctx, queue, modelTaskID, epoch, "model failure", &zero)
		cl.epochOutcome(&err, &out, task, epoch)
		if out.OK {
			cl.dropHeld(task)
		}
	case hasStale && r < 4:
		// A late worker: its old epoch must be refused.
		in.Op, in.Epoch = []queueOpKind{queueComplete, queueFail}[r%2], staleEpoch
		if in.Op == queueComplete {
			err = st.Complete(ctx, queue, modelTaskID, staleEpoch, []byte(`"late"`))
		} else {
			zero := time.Duration(0)
			err = st.Fail(ctx, queue, modelTaskID, staleEpoch, "late", &zero)
		}
		cl.epochOutcome(&err, &out, task, staleEpoch)
	case r < 7:
		in.Op = queueEnqueue
		_, _, err = st.Enqueue(ctx, queue, []byte(`{"task":`+strconv.Itoa(task)+`}`), kv.EnqueueOptions{ID: modelTaskID, MaxAttempts: api.MaxTaskAttempts})
		out.OK = err == nil
	default:
		in.Op = queueClaim
		var claim kv.Claim
		claim, err = st.Claim(ctx, queue, "worker-"+strconv.Itoa(cl.cid), time.Second, 0)
		switch {
		case err == nil:
			out = queueOut{OK: true, Epoch: claim.Epoch}
			cl.held[task] = claim.Epoch
		case errors.Is(err, kv.ErrNoTask):
			err = nil
		}
	}
	switch {
	case err == nil:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: cl.h.now()})
	case in.Op == queueRead || in.Op == queueHeartbeat || notProposed(err) || errors.Is(err, consensus.ErrNotLeader):
		if errors.Is(err, consensus.ErrNotLeader) {
			err = nil // a heartbeat asked of a node that just lost the lead
		}
		cl.h.count(true, in.Op == queueRead || in.Op == queueHeartbeat, unexpectedErr(err))
		backOff()
	default:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: queueOut{Unknown: true}, Return: math.MaxInt64})
		cl.h.count(false, false, unexpectedErr(err))
		cl.cid = int(cl.ids.Add(1))
		if in.Op == queueClaim || in.Op == queueComplete || in.Op == queueFail {
			cl.dropHeld(task) // whatever happened, the lease will see to it
		}
	}
}

// epochOutcome turns a stale epoch into a refusal (not OK, no error) and
// forgets the claim.
func (cl *queueClient) epochOutcome(err *error, out *queueOut, task int, epoch int64) {
	switch {
	case *err == nil:
		out.OK = true
	case errors.Is(*err, kv.ErrStaleEpoch):
		*err = nil
		if cl.held[task] == epoch {
			cl.dropHeld(task)
		}
	}
}

func (cl *queueClient) dropHeld(task int) {
	if e, ok := cl.held[task]; ok {
		cl.stale[task] = e
		delete(cl.held, task)
	}
}

// TestQueueLinearizability runs queue workers under the nemesis (crashes,
// partitions, leader isolation, lossy links, membership changes) and
// checks their history against the queue model with porcupine.
func TestQueueLinearizability(t *testing.T) {
	runFor := 6 * time.Second
	if d := soakDuration(t); d > 0 {
		runFor = d
	}
	seed := uint64(15_1)
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	rng := rand.New(rand.NewPCG(seed, 0x71756575))
	kind := []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble}[rng.IntN(2)]
	t.Logf("seed %d: 5 nodes, %s storage, %v (replay: go test -race -run '%s' ./internal/harness/ -seed=%d)", seed, kind, runFor, t.Name(), seed)
	snaps := newSnapWatch()
	c := harness.New(t, harness.Options{Nodes: 5, Seed: seed, Storage: kind, Leases: &kv.LessorConfig{},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 40; cfg.SnapshotCatchUpEntries = 8 },
		OnStart:   snaps.watch})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h := &history{start: time.Now()}
	const nClients = 5
	var ids atomic.Int64
	ids.Store(nClients - 1)
	// The tasks in play move on every 250 ms, so that many tasks go
	// through their whole life.
	start := time.Now()
	window := func() int { return int(time.Since(start) / (250 * time.Millisecond)) }
	clients := make([]*queueClient, nClients)
	for i := range clients {
		clients[i] = &queueClient{cid: i, ids: &ids, rng: rand.New(rand.NewPCG(seed, uint64(i))), c: c, h: h,
			window: window, held: map[int]int64{}, stale: map[int]int64{}}
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
	nem, nemErr := runNemesis(c, seed, snaps, 5, runFor, stop, &wg)
	if nemErr != nil {
		t.Fatalf("nemesis: %v", nemErr)
	}
	h.mu.Lock()
	ops := h.ops
	h.mu.Unlock()
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(queueIn), op.Output.(queueOut)
		switch {
		case out.Unknown:
			counts["unknown"]++
		case out.OK:
			counts[in.Op.String()]++
		default:
			counts[in.Op.String()+" refused"]++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(queueModel, ops, 60*time.Second)
	t.Logf("seed %d: %d operations %v over %d tasks; %d left out, %d unexpected errors %q; faults %v",
		seed, len(ops), counts, window()+queueTasksInPlay, h.omitted, h.unexpected, h.unexpectedSample, nem.faults)
	if h.unexpected > 0 {
		t.Errorf("unexpected errors: %q", h.unexpectedSample)
	}
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := visualizationPath(t, seed)
		if err := porcupine.VisualizePath(queueModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("seed %d: the queue history is not linearizable", seed)
	default:
		t.Fatalf("seed %d: the check did not finish", seed)
	}
	if counts["claim"] < 5 || counts["complete"] == 0 || counts["complete refused"]+counts["fail refused"] == 0 || counts["heartbeat"] == 0 {
		t.Fatalf("the run exercised too little: %v", counts)
	}
}

// Snapshots and restarts keep queues and epochs: after log compaction by
// snapshots and a crash and restart of every node, each task has the
// state, attempt and epoch it had; a claim held across the restarts
// still completes with its epoch, a finished claim's epoch is still
// refused, and the next claim's epoch is above every earlier one.
func TestQueueSurvivesSnapshotsAndRestarts(t *testing.T) {
	const seed = 15_2
	t.Logf("seed %d", seed)
	c := harness.New(t, harness.Options{Seed: seed, Storage: harness.CrashablePebble, Leases: &kv.LessorConfig{},
		Configure: func(cfg *consensus.Config) { cfg.SnapshotThreshold = 20; cfg.SnapshotCatchUpEntries = 4 }})
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := c.Client(leader)
	const queue = "durable"
	for i := range 30 {
		if _, _, err := st.Enqueue(ctx, queue, []byte(strconv.Itoa(i)), kv.EnqueueOptions{ID: fmt.Sprintf("t%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var claims []kv.Claim
	for range 6 {
		cl, err := st.Claim(ctx, queue, "w", time.Hour, 0)
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl)
	}
	if err := st.Complete(ctx, queue, claims[0].Task.ID, claims[0].Epoch, []byte(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	hour := time.Hour
	if err := st.Fail(ctx, queue, claims[1].Task.ID, claims[1].Epoch, "later", &hour); err != nil {
		t.Fatal(err)
	}
	// Enough writes for several snapshots and compactions.
	for i := range 60 {
		if _, err := st.Put(ctx, fmt.Sprintf("fill/%d", i), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := st.Machine().Tasks(queue, "", "", 100, 0)
	maxEpoch := claims[len(claims)-1].Epoch
	for _, name := range c.Names() {
		if c.Node(name).Status().SnapshotIndex == 0 {
			t.Fatalf("%s took no snapshot", name)
		}
		if err := c.Crash(name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range c.Names() {
		if err := c.Restart(name); err != nil {
			t.Fatal(err)
		}
	}
	if leader, err = c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	st = c.Client(leader)
	for _, want := range before {
		got, err := st.TaskState(ctx, queue, want.ID, kv.Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != want.State || got.Epoch != want.Epoch || got.Attempt != want.Attempt || got.Lease != want.Lease {
			t.Fatalf("task %s after the restarts: %+v, before: %+v", want.ID, got, want)
		}
	}
	if err := st.Complete(ctx, queue, claims[0].Task.ID, claims[0].Epoch, nil); !errors.Is(err, kv.ErrStaleEpoch) {
		t.Fatalf("a finished claim's epoch after the restarts: %v", err)
	}
	if err := st.Complete(ctx, queue, claims[2].Task.ID, claims[2].Epoch, nil); err != nil {
		t.Fatalf("a claim held across the restarts: %v", err)
	}
	next, err := st.Claim(ctx, queue, "w", time.Hour, 0)
	if err != nil || next.Epoch <= maxEpoch {
		t.Fatalf("claim after the restarts: %+v, %v; want an epoch above %d", next, err, maxEpoch)
	}
	// Every node holds the same queue.
	testwait.For(t, 10*time.Second, "every node's queue to agree", func() bool {
		var first []kv.TaskInfo
		for i, name := range c.RunningNames() {
			if err := c.Node(name).LinearizableRead(ctx); err != nil {
				return false
			}
			got, _ := c.Client(name).Machine().Tasks(queue, "", "", 100, 0)
			if i == 0 {
				first = got
			} else if !reflect.DeepEqual(first, got) {
				return false
			}
		}
		return true
	})
}
