package harness_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/memnet"
	"github.com/unrdf/consensus/kv"
)

var (
	soakFlag = flag.Duration("soak", 0, "run TestLinearizability for this long (also the SOAK environment variable); 0 runs the short, fixed-seed form")
	seedFlag = flag.Uint64("seed", 0, "run TestLinearizability from this seed (the short form otherwise uses fixed seeds; a soak starts from a time-derived seed)")
)

// shortSeeds are the seeds of the default, bounded run, chosen so that
// their 3 s between them usually add, remove and promote members,
// install snapshots under faults and crash a node right after a
// snapshot, on both storages and with 3 and 5 nodes (a seed replays the
// nemesis's decisions, not the scheduler's, so not always all of it).
var shortSeeds = []uint64{6, 44, 52}

const (
	// shortRun is how long each seed's workload runs by default.
	shortRun = 3 * time.Second
	// soakRun is how long each seed's workload runs in a soak; a soak
	// runs one seed after another.
	soakRun = 20 * time.Second
)

// soakDuration returns the -soak flag, else the SOAK environment
// variable, else 0.
func soakDuration(t *testing.T) time.Duration {
	if *soakFlag > 0 {
		return *soakFlag
	}
	if v := os.Getenv("SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK=%q: %v", v, err)
		}
		return d
	}
	return 0
}

// TestLinearizability runs concurrent clients doing gets, lists, puts,
// deletes, compare-and-sets (PutIf), Updates and multi-key batches against
// random nodes while a nemesis partitions the network, isolates the
// leader, crashes and restarts nodes (also right after a snapshot), makes
// links lossy, slow and duplicating, adds, promotes and removes members,
// all with snapshot thresholds small enough that snapshots, compaction and
// snapshot installs happen constantly. It then checks the history with
// porcupine against a per-key model (which also checks revisions, create
// revisions and versions) and checks batch and list atomicity, which a
// per-key model cannot see, separately (see kvModel). Writes carry request
// ids and are retried with them on another node when their outcome is
// unknown; each is recorded once. A write whose outcome the client never
// learned (ErrTimeout, ErrStopped, a context error) is an operation of
// unknown outcome; one that was definitely not proposed (ErrNoLeader, a
// rejected argument) is left out, as are failed reads. Crash-able Pebble
// storage alternates with in-memory storage, so crashes also lose unsynced
// data. Every run must create snapshots and have a node install one from a
// leader.
//
// By default it runs shortSeeds for shortRun each; with -soak=DURATION
// (or SOAK=DURATION) it runs seed after seed for that long.
func TestLinearizability(t *testing.T) {
	soak := soakDuration(t)
	var seeds []uint64
	runFor := shortRun
	if soak == 0 {
		seeds = shortSeeds
		if *seedFlag != 0 {
			seeds = []uint64{*seedFlag}
		}
	} else {
		runFor = min(soakRun, soak)
	}
	base := *seedFlag
	if base == 0 {
		base = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	deadline := time.Now().Add(soak)
	var total linStats
	for i := 0; ; i++ {
		var seed uint64
		if soak == 0 {
			if i >= len(seeds) {
				break
			}
			seed = seeds[i]
		} else {
			if i > 0 && time.Until(deadline) < runFor/2 {
				break
			}
			seed = base + uint64(i)
		}
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s := runLinearizability(t, seed, runFor, false)
			total.add(s)
		})
		if t.Failed() && soak > 0 {
			break
		}
	}
	t.Logf("TOTAL: %s", total.String())
}

// linStats are the figures of one or more runs.
type linStats struct {
	runs                        int
	checked, ok, unknown        int
	omitted, readErrs           int
	retries, retriesOK          int
	faults                      map[string]int
	snapsCreated, snapsRestored int
	violations, inconclusive    int
	revisionViolations          int
	atomicityViolations         int
	unexpectedErrs, restartErrs int
}

func (s *linStats) add(o linStats) {
	s.runs += o.runs
	s.checked += o.checked
	s.ok += o.ok
	s.unknown += o.unknown
	s.omitted += o.omitted
	s.readErrs += o.readErrs
	s.retries += o.retries
	s.retriesOK += o.retriesOK
	s.snapsCreated += o.snapsCreated
	s.snapsRestored += o.snapsRestored
	s.violations += o.violations
	s.inconclusive += o.inconclusive
	s.revisionViolations += o.revisionViolations
	s.atomicityViolations += o.atomicityViolations
	s.unexpectedErrs += o.unexpectedErrs
	s.restartErrs += o.restartErrs
	if s.faults == nil {
		s.faults = map[string]int{}
	}
	for k, v := range o.faults {
		s.faults[k] += v
	}
}

func (s linStats) String() string {
	kinds := make([]string, 0, len(s.faults))
	total := 0
	for k, v := range s.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		total += v
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d run(s); %d operations checked (%d definite, %d unknown outcome), %d writes left out (not proposed), %d failed reads left out; "+
		"%d write retries with the same request id (%d learned the outcome); %d snapshots created, %d installed from a leader; "+
		"%d faults injected (%s); %d linearizability violations, %d revision-order violations, %d batch/list atomicity violations, %d inconclusive checks, %d unexpected errors, %d failed restarts",
		s.runs, s.checked, s.ok, s.unknown, s.omitted, s.readErrs, s.retries, s.retriesOK, s.snapsCreated, s.snapsRestored,
		total, strings.Join(kinds, " "),
		s.violations, s.revisionViolations, s.atomicityViolations, s.inconclusive, s.unexpectedErrs, s.restartErrs)
}

// history records operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// counters of what was left out or went wrong.
	omitted, readErrs, unexpected int
	unexpectedSample              []string
	// retries counts writes retried with their request id; retriesOK,
	// those whose retry learned the outcome.
	retries, retriesOK atomic.Int64
}

func (h *history) retried(n int64)   { h.retries.Add(n) }
func (h *history) retriedOK(n int64) { h.retriesOK.Add(n) }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) record(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) count(omitted, readErr bool, unexpected error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if omitted {
		h.omitted++
	}
	if readErr {
		h.readErrs++
	}
	if unexpected != nil {
		h.unexpected++
		if len(h.unexpectedSample) < 5 {
			h.unexpectedSample = append(h.unexpectedSample, unexpected.Error())
		}
	}
}

// client is one sequential client of the store. After an operation of
// unknown outcome it takes a new porcupine client id, since that
// operation stays pending until the end of the history.
//
// Every write but an update carries a request id (kv.WithRequestID: the
// client's name and a sequence of its own); a write whose outcome the
// client could not learn is retried, with the same id, on another
// running node, up to maxAttempts in all. The state machine applies an id
// once and answers a retry with the first application's result, so the
// operation is recorded once, from its first call to the return of the
// attempt that learned its outcome; a write applied twice would show up in
// the model as a revision or version it cannot explain.
type client struct {
	id   *atomic.Int64 // shared source of client ids
	cid  int
	name string
	rng  *rand.Rand
	seq  int // numbers values and request ids
	keys []string
	c    *harness.Cluster
	h    *history
}

// maxAttempts bounds a write's attempts (the first and its retries).
const maxAttempts = 3

// pickNode returns a random running node other than not (unless it is
// the only one), or "" if none runs.
func (cl *client) pickNode(not string) string {
	running := cl.c.RunningNames()
	if len(running) > 1 {
		running = slices.DeleteFunc(running, func(n string) bool { return n == not })
	}
	if len(running) == 0 {
		return ""
	}
	return running[cl.rng.IntN(len(running))]
}

func (cl *client) timeout() time.Duration {
	return time.Duration(300+cl.rng.IntN(1200)) * time.Millisecond
}

func itemOutput(it kv.Item) kvOutput {
	return kvOutput{Found: true, Value: string(it.Value), Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version}
}

// do runs one random operation on a random running node and records it.
func (cl *client) do() {
	node := cl.pickNode("")
	if node == "" {
		time.Sleep(5 * time.Millisecond) // every node is down; wait for a restart
		return
	}
	key := cl.keys[cl.rng.IntN(len(cl.keys))]
	cl.seq++
	value := fmt.Sprintf(`"%s-%d"`, cl.name, cl.seq)
	switch r := cl.rng.IntN(100); {
	case r < 30:
		cl.read(node, key)
	case r < 38:
		cl.list(node)
	case r < 60:
		cl.write(node, kvInput{Op: opPut, Key: key, Value: value}, func(ctx context.Context, s *kv.Store) (kvOutput, error) {
			rev, err := s.Put(ctx, key, []byte(value))
			return kvOutput{Revision: rev}, err
		})
	case r < 68:
		cl.write(node, kvInput{Op: opDelete, Key: key}, func(ctx context.Context, s *kv.Store) (kvOutput, error) {
			rev, err := s.Delete(ctx, key)
			if errors.Is(err, kv.ErrKeyNotFound) {
				return kvOutput{}, nil
			}
			return kvOutput{Found: err == nil, Revision: rev}, err
		})
	case r < 80:
		// Compare-and-set on what a read just saw (or, now and then, on
		// a revision that is surely stale), so that both outcomes occur.
		cond, ok := cl.read(node, key)
		if !ok {
			return
		}
		if cl.rng.IntN(5) == 0 && cond > 0 {
			cond--
		}
		in := kvInput{Op: opPutIf, Key: key, Value: value, HasCond: true, CondRev: cond}
		cl.write(node, in, func(ctx context.Context, s *kv.Store) (kvOutput, error) {
			c := kv.IfRevision(cond)
			if cond == 0 {
				c = kv.IfAbsent()
			}
			rev, err := s.PutIf(ctx, key, []byte(value), c)
			return conflictOutput(rev, err)
		})
	case r < 88:
		cl.update(node, key, value)
	default:
		cl.batch(node, value)
	}
}

// conflictOutput turns kv.ErrConflict into a definite "conflict" result.
func conflictOutput(rev int64, err error) (kvOutput, error) {
	if errors.Is(err, kv.ErrConflict) {
		return kvOutput{Conflict: true}, nil
	}
	return kvOutput{Revision: rev}, err
}

// batch puts value under 2 or 3 distinct keys in one kv.Store.Batch,
// half the time on condition that the first key is at the revision a
// read just saw.
func (cl *client) batch(node, value string) {
	n := min(len(cl.keys), 2+cl.rng.IntN(2))
	perm := cl.rng.Perm(len(cl.keys))[:n]
	in := kvInput{Op: opBatch, Value: value}
	for _, i := range perm {
		in.Keys = append(in.Keys, cl.keys[i])
	}
	in.Key = in.Keys[0]
	if cl.rng.IntN(2) == 0 {
		cond, ok := cl.read(node, in.Keys[0])
		if !ok {
			return
		}
		in.HasCond, in.CondRev = true, cond
	}
	cl.write(node, in, func(ctx context.Context, s *kv.Store) (kvOutput, error) {
		ops := make([]kv.Op, len(in.Keys))
		for i, k := range in.Keys {
			ops[i] = kv.Op{Type: kv.OpPut, Key: k, Value: []byte(value)}
		}
		if in.HasCond {
			ops[0].Cond = kv.IfRevision(in.CondRev)
		}
		rev, err := s.Batch(ctx, ops)
		return conflictOutput(rev, err)
	})
}

// read is a linearizable get, recorded; it returns the revision it saw
// (0 if the key is absent) and whether it succeeded.
func (cl *client) read(node, key string) (int64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	call := cl.h.now()
	it, err := cl.c.Client(node).Get(ctx, key, kv.Linearizable)
	ret := cl.h.now()
	out := kvOutput{}
	switch {
	case err == nil:
		out = itemOutput(it)
	case errors.Is(err, kv.ErrKeyNotFound):
	default:
		// A read that failed changed nothing: leave it out.
		cl.h.count(false, true, unexpectedErr(err))
		backOff()
		return 0, false
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opGet, Key: key}, Call: call, Output: out, Return: ret})
	return out.Revision, true
}

// list reads every key at once (kv.Store.List), recorded.
func (cl *client) list(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	call := cl.h.now()
	items, rev, err := cl.c.Client(node).List(ctx, keyPrefix, kv.Linearizable)
	ret := cl.h.now()
	if err != nil {
		cl.h.count(false, true, unexpectedErr(err))
		backOff()
		return
	}
	out := kvOutput{Revision: rev}
	for _, it := range items {
		out.Items = append(out.Items, listItem{Key: it.Key, Value: string(it.Value), Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version})
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opList, Keys: cl.keys}, Call: call, Output: out, Return: ret})
}

// update is kv.Store.Update writing value; the recorded result says which
// revision the function saw on its last (the successful) attempt. Update
// retries conflicts itself and takes no request id, so it is not retried
// here.
func (cl *client) update(node, key, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	var seen int64
	call := cl.h.now()
	rev, err := cl.c.Client(node).Update(ctx, key, func(cur kv.Item, exists bool) ([]byte, error) {
		seen = 0
		if exists {
			seen = cur.Revision
		}
		return []byte(value), nil
	})
	ret := cl.h.now()
	in := kvInput{Op: opUpdate, Key: key, Value: value}
	switch {
	case err == nil:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: kvOutput{Revision: rev, Seen: seen}, Return: ret})
	case notProposed(err):
		cl.h.count(true, false, nil)
		backOff()
	default:
		cl.recordUnknown(in, call, err)
	}
}

// write runs attempt with a fresh request id on node and, while its
// outcome is unknown, again with the same id on other running nodes, and
// records the operation once.
func (cl *client) write(node string, in kvInput, attempt func(context.Context, *kv.Store) (kvOutput, error)) {
	cl.seq++
	id := kv.RequestID{Client: cl.name, Seq: uint64(cl.seq)}
	call := cl.h.now()
	var err error
	for i := range maxAttempts {
		if i > 0 {
			backOff()
			if node = cl.pickNode(node); node == "" {
				break
			}
			cl.h.retried(1)
		}
		ctx, cancel := context.WithTimeout(kv.WithRequestID(context.Background(), id), cl.timeout())
		var out kvOutput
		out, err = attempt(ctx, cl.c.Client(node))
		cancel()
		if err == nil {
			if i > 0 {
				cl.h.retriedOK(1)
			}
			cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: cl.h.now()})
			return
		}
		if i == 0 && notProposed(err) {
			// Not proposed at all: leave it out.
			cl.h.count(true, false, nil)
			backOff()
			return
		}
		if !unknownOutcome(err) {
			break
		}
	}
	cl.recordUnknown(in, call, err)
}

// recordUnknown records a write of unknown outcome: it may take effect at
// any time from its call on, so its return time is set at the end of the
// run.
func (cl *client) recordUnknown(in kvInput, call int64, err error) {
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: kvOutput{Unknown: true}, Return: math.MaxInt64})
	cl.h.count(false, false, unexpectedErr(err))
	cl.cid = int(cl.id.Add(1))
}

// unknownOutcome reports whether a write that failed with err may still
// take effect, so that a retry with its request id is worth making.
func unknownOutcome(err error) bool {
	return unexpectedErr(err) == nil || notProposed(err) || errors.Is(err, consensus.ErrRemoved)
}

// backOff pauses a client after a quick failure (no leader), as a real
// client would before retrying, so that it does not spin.
func backOff() { time.Sleep(10 * time.Millisecond) }

// notProposed reports whether err means the write was definitely not
// proposed: no leader, or a rejected argument.
func notProposed(err error) bool {
	return errors.Is(err, consensus.ErrNoLeader) || errors.Is(err, consensus.ErrTooLarge) ||
		errors.Is(err, kv.ErrInvalidKey) || errors.Is(err, kv.ErrInvalidValue) || errors.Is(err, kv.ErrValueTooLarge)
}

// unexpectedErr returns err if it is none of the errors a client may
// meet under faults, else nil. A node removed from the cluster answers
// ErrRemoved, or ErrStopped once the harness has stopped it.
func unexpectedErr(err error) error {
	if errors.Is(err, consensus.ErrTimeout) || errors.Is(err, consensus.ErrStopped) || errors.Is(err, consensus.ErrNoLeader) ||
		errors.Is(err, consensus.ErrRemoved) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// keyPrefix starts every key of the model; a list reads them all.
const keyPrefix = "k"

// runLinearizability runs one seed's workload for runFor and checks it;
// viaEtcd drives it through clientv3 and etcd's API (etcdClient) instead
// of the nodes' stores.
func runLinearizability(t *testing.T, seed uint64, runFor time.Duration, viaEtcd bool) linStats {
	rng := rand.New(rand.NewPCG(seed, 0x6c696e))
	nodes := []int{3, 5}[rng.IntN(2)]
	kind := []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble}[rng.IntN(2)]
	// Small snapshot thresholds, so that snapshots, log compaction and
	// snapshot installs (to a node that was partitioned, crashed or just
	// joined) happen all the time.
	snapThreshold := uint64(20 + rng.IntN(31))
	catchUp := uint64(5 + rng.IntN(6))
	autoPromote := rng.IntN(2) == 0
	// Two seeds in three keep the state's values on disk, as a server
	// does (of the short seeds, 6 and 52); taken from the seed, not rng,
	// so that the choices above stay what they were for every seed.
	valuesOnDisk := seed%3 != 2
	t.Logf("seed %d: %d nodes, %s storage, values on disk %v, snapshot every %d entries keeping %d, auto-promote %v, %v (replay: go test -race -run '%s/seed=%d' ./internal/harness/ -seed=%d)",
		seed, nodes, kind, valuesOnDisk, snapThreshold, catchUp, autoPromote, runFor, strings.Split(t.Name(), "/")[0], seed, seed)
	snaps := newSnapWatch()
	opts := harness.Options{
		Nodes: nodes, Seed: seed, Storage: kind, ValuesOnDisk: valuesOnDisk,
		Configure: func(cfg *consensus.Config) {
			cfg.SnapshotThreshold = snapThreshold
			cfg.SnapshotCatchUpEntries = catchUp
			cfg.AutoPromote = autoPromote
		},
		OnStart: snaps.watch,
	}
	var etcd *etcdListeners
	if viaEtcd {
		etcd = &etcdListeners{t: t, addrs: map[string]string{}}
		opts.Serve = etcd.serve
	}
	c := harness.New(t, opts)
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	h := &history{start: time.Now()}
	keys := make([]string, 3+rng.IntN(5))
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", keyPrefix, i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ids atomic.Int64
	nClients := nodes + 3
	ids.Store(int64(nClients - 1))
	for i := range nClients {
		cl := &client{id: &ids, cid: i, name: fmt.Sprintf("c%d", i), rng: rand.New(rand.NewPCG(seed, uint64(i))), keys: keys, c: c, h: h}
		do := cl.do
		if viaEtcd {
			do = newEtcdClient(t, cl, etcd.endpoints(c.Names())).do
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				do()
			}
		})
	}
	nem, nemErr := runNemesis(c, seed, snaps, nodes, runFor, stop, &wg)
	created, restored := snaps.totals()

	// Let every node come back and converge, then read every key once
	// more: those reads are part of the history too.
	stats := linStats{runs: 1, faults: nem.faults, snapsCreated: created, snapsRestored: restored,
		retries: int(h.retries.Load()), retriesOK: int(h.retriesOK.Load())}
	c.Heal()
	c.Network().ClearRules()
	for _, name := range c.Names() {
		if !c.Running(name) && name != nem.pendingRemove {
			if err := c.Restart(name); err != nil {
				stats.restartErrs++
				t.Errorf("seed %d: final restart of %s: %v", seed, name, err)
			}
		}
	}
	if len(nem.notes) > 0 {
		t.Logf("seed %d: failed membership changes: %q", seed, nem.notes)
	}
	if nemErr != nil {
		stats.restartErrs++
		t.Errorf("seed %d: nemesis: %v", seed, nemErr)
	}
	leader, err := c.WaitLeader(20 * time.Second)
	if err != nil {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		_ = os.WriteFile(filepath.Join(os.TempDir(), "stuck-goroutines.txt"), buf, 0o644)
		t.Fatalf("seed %d: after healing: %v", seed, err)
	}
	if nem.pendingRemove != "" {
		// A removal of unknown outcome: finish it (removing a removed
		// member succeeds), since its node may have been removed.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.Remove(ctx, leader, nem.pendingRemove)
		cancel()
		if err != nil {
			t.Fatalf("seed %d: finishing the removal of %s: %v\n%s", seed, nem.pendingRemove, err, c.Describe())
		}
		if _, err := c.WaitLeader(20 * time.Second); err != nil {
			t.Fatalf("seed %d: after the last removal: %v", seed, err)
		}
	}
	c.AssertSameState(20 * time.Second)
	// Snapshots must not silently stop: every run creates some, and a
	// node that fell behind must get one installed. If the faults did not
	// make that happen, make it happen now.
	if created == 0 {
		t.Errorf("seed %d: no snapshot was created (threshold %d entries)", seed, snapThreshold)
	}
	if restored == 0 {
		forceSnapshotInstall(t, seed, c, snaps, catchUp)
		c.AssertSameState(20 * time.Second)
	}
	final := &client{id: &ids, cid: int(ids.Add(1)), name: "final", rng: rand.New(rand.NewPCG(seed, 99)), c: c, h: h}
	for _, k := range keys {
		final.keys = []string{k}
		for range 3 { // a get may fail while leadership settles
			before := len(h.ops)
			final.doGet()
			if len(h.ops) > before {
				break
			}
		}
	}

	end := h.now() + 1
	ops := slices.Clone(h.ops)
	for i := range ops {
		if ops[i].Output.(kvOutput).Unknown {
			ops[i].Return = end
			stats.unknown++
		} else {
			stats.ok++
		}
	}
	stats.checked = len(ops)
	stats.omitted, stats.readErrs, stats.unexpectedErrs = h.omitted, h.readErrs, h.unexpected
	if h.unexpected > 0 {
		t.Errorf("seed %d: %d unexpected errors, e.g. %q", seed, h.unexpected, h.unexpectedSample)
	}
	stats.revisionViolations = checkRevisionOrder(t, seed, ops)
	stats.atomicityViolations = checkAtomicity(t, seed, ops)

	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, time.Minute)
	switch res {
	case porcupine.Illegal:
		stats.violations++
		path := visualizationPath(t, seed)
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("seed %d: write visualization: %v", seed, err)
		}
		t.Errorf("seed %d: history of %d operations is NOT linearizable; visualization: %s", seed, len(ops), path)
		if txt, err := dumpIllegalKeys(ops, strings.TrimSuffix(path, ".html")+".txt"); err == nil {
			t.Errorf("seed %d: the operations on each non-linearizable key: %s", seed, txt)
		}
	case porcupine.Unknown:
		stats.inconclusive++
		t.Logf("seed %d: linearizability check timed out (inconclusive)", seed)
	}
	t.Logf("seed %d: %s", seed, stats.String())
	return stats
}

// snapWatch counts every node's snapshot events (through the harness's
// OnStart hook, so every incarnation is watched from its start) and lets
// the nemesis wait for a node's next snapshot.
type snapWatch struct {
	mu                sync.Mutex
	created, restored map[string]int
	traps             map[string]chan struct{}
}

func newSnapWatch() *snapWatch {
	return &snapWatch{created: map[string]int{}, restored: map[string]int{}, traps: map[string]chan struct{}{}}
}

// watch subscribes to node's snapshot events until it stops.
func (w *snapWatch) watch(name string, node *consensus.Node) {
	sub := node.SubscribeSnapshots(1024)
	go func() {
		defer sub.Close()
		for {
			select {
			case ev := <-sub.C():
				w.note(name, ev)
			case <-node.Done():
				return
			}
		}
	}()
}

func (w *snapWatch) note(name string, ev consensus.SnapshotEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case consensus.SnapshotCreated:
		w.created[name]++
		if ch, ok := w.traps[name]; ok {
			close(ch)
			delete(w.traps, name)
		}
	case consensus.SnapshotRestored:
		w.restored[name]++
	}
}

// trap returns a channel closed when name next creates a snapshot.
func (w *snapWatch) trap(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.traps[name]
	if !ok {
		ch = make(chan struct{})
		w.traps[name] = ch
	}
	return ch
}

func (w *snapWatch) restoredBy(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.restored[name]
}

func (w *snapWatch) totals() (created, restored int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.created {
		created += n
	}
	for _, n := range w.restored {
		restored += n
	}
	return created, restored
}

// forceSnapshotInstall isolates a follower, writes (keys outside the
// model's) until the leader has compacted its log past the follower's,
// heals, and waits for the follower to install the leader's snapshot.
func forceSnapshotInstall(t *testing.T, seed uint64, c *harness.Cluster, snaps *snapWatch, catchUp uint64) {
	t.Helper()
	leader, err := c.WaitLeader(20 * time.Second)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	// Isolate a learner if there is one, else a voter whose absence
	// leaves a quorum (membership changes may have left two voters and a
	// learner).
	follower, voters, running := "", 0, c.RunningNames()
	for _, m := range c.Node(leader).Members() {
		if m.Voter {
			voters++
		}
		if m.ID != leader && slices.Contains(running, m.ID) && (follower == "" || !m.Voter) {
			follower = m.ID
		}
	}
	if m, err := c.Node(leader).Member(follower); follower == "" || (err == nil && m.Voter && voters < 3) {
		t.Fatalf("seed %d: no follower to isolate without losing the quorum\n%s", seed, c.Describe())
	}
	before := snaps.restoredBy(follower)
	c.Isolate(follower)
	st := c.Node(follower).Status()
	behind := max(st.CommitIndex, st.AppliedIndex)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; c.Node(leader).Status().SnapshotIndex <= behind+catchUp+20; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: the leader %s took no snapshot past index %d within 30s\n%s", seed, leader, behind+catchUp+20, c.Describe())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = c.Client(leader).Put(ctx, fmt.Sprintf("fill/%d", i), []byte("1"))
		cancel()
	}
	c.Heal()
	deadline = time.Now().Add(30 * time.Second)
	for snaps.restoredBy(follower) == before {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: %s installed no snapshot within 30s of rejoining\n%s", seed, follower, c.Describe())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("seed %d: no snapshot install happened under faults; forced one on %s", seed, follower)
}

// doGet is a final linearizable read with a generous timeout.
func (cl *client) doGet() {
	running := cl.c.RunningNames()
	node := running[cl.rng.IntN(len(running))]
	key := cl.keys[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := cl.h.now()
	it, err := cl.c.Client(node).Get(ctx, key, kv.Linearizable)
	ret := cl.h.now()
	out := kvOutput{}
	switch {
	case err == nil:
		out = itemOutput(it)
	case errors.Is(err, kv.ErrKeyNotFound):
	default:
		cl.h.count(false, true, unexpectedErr(err))
		return
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opGet, Key: key}, Call: call, Output: out, Return: ret})
}

// errorfer is where a check reports: the test, or a recorder in the
// check's own test.
type errorfer interface {
	Errorf(format string, args ...any)
}

// isWrite reports whether op is an acknowledged write that took a
// revision of its own.
func isWrite(in kvInput, out kvOutput) bool {
	switch {
	case out.Unknown || out.Conflict || in.Op == opGet || in.Op == opList:
		return false
	case in.Op == opDelete:
		return out.Found
	}
	return true
}

// checkRevisionOrder checks what the per-key model cannot see: every
// acknowledged write (a batch is one) has a revision of its own, and a
// write that began after another returned has a higher revision, whatever
// their keys.
func checkRevisionOrder(t *testing.T, seed uint64, ops []porcupine.Operation) int {
	type write struct {
		call, ret, rev int64
		desc           string
	}
	var ws []write
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if !isWrite(in, out) {
			continue
		}
		ws = append(ws, write{op.Call, op.Return, out.Revision, kvModel.DescribeOperation(in, out)})
	}
	bad := 0
	byRev := map[int64]string{}
	for _, w := range ws {
		if other, dup := byRev[w.rev]; dup {
			bad++
			t.Errorf("seed %d: two acknowledged writes have revision %d: %s and %s", seed, w.rev, other, w.desc)
		}
		byRev[w.rev] = w.desc
	}
	byRet := slices.Clone(ws)
	slices.SortFunc(byRet, func(a, b write) int { return int(a.ret - b.ret) })
	// prefixMax[i] is the write with the highest revision among byRet[:i+1].
	prefixMax := make([]write, len(byRet))
	for i, w := range byRet {
		prefixMax[i] = w
		if i > 0 && prefixMax[i-1].rev > w.rev {
			prefixMax[i] = prefixMax[i-1]
		}
	}
	for _, w := range ws {
		i := sort.Search(len(byRet), func(i int) bool { return byRet[i].ret >= w.call }) - 1
		if i >= 0 && prefixMax[i].rev >= w.rev {
			bad++
			if bad <= 5 {
				t.Errorf("seed %d: %s began after %s had returned, yet has a lower revision", seed, w.desc, prefixMax[i].desc)
			}
		}
	}
	return bad
}

// checkAtomicity checks what the per-key model cannot see of batches and
// lists (see kvModel): a batch is applied all or nothing, at one revision,
// and a list is one consistent cut of the state.
//
//   - Every value is written by one operation, so a read that sees a
//     batch's value reveals the batch's revision (for one of unknown
//     outcome too): every key read with that value must show the same
//     revision, the batch's own if it was acknowledged; a batch that
//     failed its condition must never be seen.
//   - A list at revision R holds no item above R, and for every batch at
//     a revision B <= R, each of the batch's keys that the list holds is at
//     B or later (at B, with the batch's value): a key still older than B
//     would be half a batch.
func checkAtomicity(t errorfer, seed uint64, ops []porcupine.Operation) int {
	type batch struct {
		keys     []string
		rev      int64 // 0 until known
		conflict bool
		desc     string
	}
	batches := map[string]*batch{}
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if in.Op == opBatch {
			batches[in.Value] = &batch{keys: in.Keys, rev: out.Revision, conflict: out.Conflict, desc: kvModel.DescribeOperation(in, out)}
		}
	}
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 5 {
			t.Errorf("seed %d: "+format, append([]any{seed}, args...)...)
		}
	}
	saw := func(key, value string, rev int64, where string) {
		b, ok := batches[value]
		switch {
		case !ok:
		case b.conflict:
			report("%s sees %s=%s of a batch that failed its condition: %s", where, key, value, b.desc)
		case !slices.Contains(b.keys, key):
			report("%s sees %s=%s, a key the batch did not write: %s", where, key, value, b.desc)
		case b.rev == 0:
			b.rev = rev
		case b.rev != rev:
			report("%s sees %s=%s at revision %d, but the batch is at revision %d: %s", where, key, value, rev, b.rev, b.desc)
		}
	}
	var lists []kvOutput
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		switch {
		case in.Op == opGet && out.Found:
			saw(in.Key, out.Value, out.Revision, "a get")
		case in.Op == opList:
			lists = append(lists, out)
			for _, it := range out.Items {
				saw(it.Key, it.Value, it.Revision, fmt.Sprintf("a list at revision %d", out.Revision))
			}
		}
	}
	for _, l := range lists {
		items := map[string]listItem{}
		for _, it := range l.Items {
			items[it.Key] = it
			if it.Revision > l.Revision {
				report("a list at revision %d holds %s at revision %d", l.Revision, it.Key, it.Revision)
			}
		}
		for value, b := range batches {
			if b.conflict || b.rev == 0 || b.rev > l.Revision {
				continue
			}
			for _, k := range b.keys {
				it, ok := items[k]
				if ok && (it.Revision < b.rev || (it.Revision == b.rev && it.Value != value)) {
					report("a list at revision %d holds %s=%s at revision %d, older than the batch at revision %d that wrote %s: %s",
						l.Revision, k, it.Value, it.Revision, b.rev, value, b.desc)
				}
			}
		}
	}
	return bad
}

// dumpIllegalKeys writes, as text, the operations on every key whose
// history alone is not linearizable, sorted by call time.
func dumpIllegalKeys(ops []porcupine.Operation, path string) (string, error) {
	var b strings.Builder
	for _, part := range kvModel.Partition(ops) {
		if porcupine.CheckOperationsTimeout(kvModel, part, time.Minute) != porcupine.Illegal {
			continue
		}
		part = slices.Clone(part)
		slices.SortFunc(part, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		// The shortest illegal prefix (by call time) ends at the first
		// operation that cannot be placed.
		n := sort.Search(len(part), func(n int) bool {
			return porcupine.CheckOperationsTimeout(kvModel, part[:n+1], time.Minute) == porcupine.Illegal
		})
		fmt.Fprintf(&b, "key %s: %d operations; the first %d are already not linearizable\n", part[0].Input.(kvInput).Key, len(part), n+1)
		for i, op := range part {
			if i == n+1 {
				b.WriteString("  ---- (end of the shortest non-linearizable prefix)\n")
			}
			ret := "end"
			if op.Return != math.MaxInt64 && !op.Output.(kvOutput).Unknown {
				ret = fmt.Sprintf("%.6f", float64(op.Return)/1e9)
			}
			fmt.Fprintf(&b, "  client %3d  [%.6f, %s]  %s\n", op.ClientId, float64(op.Call)/1e9, ret, kvModel.DescribeOperation(op.Input, op.Output))
		}
	}
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// visualizationPath is where a failing seed's porcupine visualization
// goes: $LIN_OUT if set, else the system's temporary directory (not
// t.TempDir, which is removed when the test ends).
func visualizationPath(t *testing.T, seed uint64) string {
	dir := os.Getenv("LIN_OUT")
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("LIN_OUT: %v", err)
	}
	return filepath.Join(dir, fmt.Sprintf("linearizability-seed-%d-%d.html", seed, time.Now().UnixNano()))
}

// nemesis injects faults at random moments.
type nemesis struct {
	c      *harness.Cluster
	rng    *rand.Rand
	faults map[string]int
	snaps  *snapWatch
	// initial is the cluster's size at the start; membership changes keep
	// it at initial or initial+1 members.
	initial int
	// nextID numbers the next new node (n<nextID>): ids are never reused.
	nextID int
	// pendingRemove is a node whose removal had an unknown outcome; it is
	// retried (removing a removed member succeeds) before any other
	// membership change, and finished at the end of the run.
	pendingRemove string
	// notes say why membership changes failed (refused, or of unknown
	// outcome), for the run's log.
	notes []string
}

// runNemesis runs a nemesis over c, with initial members, for runFor
// while the workload counted in wg runs; then it closes stop and waits
// for both. It returns the nemesis (its faults) and its error.
func runNemesis(c *harness.Cluster, seed uint64, snaps *snapWatch, initial int, runFor time.Duration, stop chan struct{}, wg *sync.WaitGroup) (*nemesis, error) {
	nem := &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), faults: map[string]int{}, snaps: snaps, initial: initial, nextID: initial + 1}
	var nemErr error
	var nemWG sync.WaitGroup
	nemWG.Go(func() { nemErr = nem.run(stop) })
	time.Sleep(runFor) // the workload's length, not a synchronisation
	close(stop)
	nemWG.Wait()
	wg.Wait()
	return nem, nemErr
}

// note records why a membership change failed (the first few).
func (n *nemesis) note(err error) {
	if len(n.notes) < 5 {
		n.notes = append(n.notes, err.Error())
	}
}

func (n *nemesis) run(stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(time.Duration(100+n.rng.IntN(500)) * time.Millisecond):
		}
		if err := n.step(); err != nil {
			return err
		}
	}
}

// quorumSafe reports whether a majority of the voters (as a running node
// sees them) would still run with target down, or removed if removing.
func (n *nemesis) quorumSafe(target string, removing bool) bool {
	running := n.c.RunningNames()
	if len(running) == 0 {
		return false
	}
	voters, up := 0, 0
	for _, m := range n.c.Node(running[0]).Members() {
		if !m.Voter || (removing && m.ID == target) {
			continue
		}
		voters++
		if m.ID != target && slices.Contains(running, m.ID) {
			up++
		}
	}
	return up > voters/2
}

// step injects, or undoes, one fault.
func (n *nemesis) step() error {
	c := n.c
	names := c.Names()
	running := c.RunningNames()
	crashed := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return slices.Contains(running, s) })
	maxDown := (len(names) - 1) / 2
	pick := func(from []string) string { return from[n.rng.IntN(len(from))] }
	canCrash := func(name string) bool { return len(crashed) < maxDown && n.quorumSafe(name, false) }

	switch r := n.rng.IntN(100); {
	case r < 18:
		n.faults["heal"]++
		c.Heal()
		c.Network().ClearRules()
	case r < 28:
		// A random split; the first group is the minority.
		perm := slices.Clone(names)
		n.rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		k := 1 + n.rng.IntN(len(perm)/2)
		n.faults["partition"]++
		c.Partition(perm[:k], perm[k:])
	case r < 36:
		if l := c.Leader(); l != "" {
			n.faults["isolate-leader"]++
			c.Isolate(l)
		}
	case r < 41:
		n.faults["isolate-node"]++
		c.Isolate(pick(names))
	case r < 46:
		a, b := pick(names), pick(names)
		if a != b {
			n.faults["cut-one-way"]++
			c.Network().Cut(c.ID(a), c.ID(b))
		}
	case r < 56:
		rule := memnet.Rule{
			Drop:      []float64{0, 0.05, 0.2}[n.rng.IntN(3)],
			Duplicate: []float64{0, 0.05, 0.2}[n.rng.IntN(3)],
			MaxDelay:  time.Duration(n.rng.IntN(30)) * time.Millisecond,
			// Bug B2 (docs/TESTING.md): a duplicated proposal is applied
			// twice.
			DuplicateProposals: true,
		}
		n.faults["lossy-links"]++
		if err := c.Network().SetDefaultRule(rule); err != nil {
			return err
		}
	case r < 66:
		if len(running) > 0 {
			if victim := pick(running); canCrash(victim) {
				n.faults["crash"]++
				return c.Crash(victim)
			}
		}
	case r < 72:
		if l := c.Leader(); l != "" && canCrash(l) {
			n.faults["crash-leader"]++
			return c.Crash(l)
		}
	case r < 77:
		// Crash a node the moment it has written a snapshot: its log
		// compaction, snapshot pruning and often its next snapshot are
		// in flight, and on crash-able Pebble what is not yet synced of
		// them may be lost.
		if len(running) > 0 {
			victim := pick(running)
			if !canCrash(victim) {
				break
			}
			select {
			case <-n.snaps.trap(victim):
				n.faults["crash-after-snapshot"]++
			case <-time.After(time.Second):
				n.faults["crash"]++
			}
			if c.Running(victim) && canCrash(victim) {
				return c.Crash(victim)
			}
		}
	case r < 88:
		if len(crashed) > 0 {
			if victim := pick(crashed); victim != n.pendingRemove {
				n.faults["restart"]++
				return c.Restart(victim)
			}
		}
	case r < 96:
		return n.changeMembers()
	default:
		return n.promote()
	}
	return nil
}

// membershipErr returns err unless it is one a membership change may meet
// under faults (its outcome is then unknown).
func membershipErr(err error) error {
	if unexpectedErr(err) == nil {
		return nil
	}
	return err
}

// changeMembers removes a follower (one whose removal had an unknown
// outcome first) when the cluster has grown, else adds a new node, which
// joins as a learner and is promoted (by the leader if AutoPromote, else
// by promote).
func (n *nemesis) changeMembers() error {
	c := n.c
	running := c.RunningNames()
	if len(running) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names := c.Names()
	if n.pendingRemove != "" || len(names) > n.initial {
		target := n.pendingRemove
		if target == "" {
			leader := c.Leader()
			candidates := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == leader || !n.quorumSafe(s, true) })
			if len(candidates) == 0 {
				return nil
			}
			target = candidates[n.rng.IntN(len(candidates))]
		}
		vias := slices.DeleteFunc(slices.Clone(running), func(s string) bool { return s == target })
		if len(vias) == 0 {
			return nil
		}
		n.faults["remove"]++
		if err := c.Remove(ctx, vias[n.rng.IntN(len(vias))], target); err != nil {
			n.faults["remove-failed"]++
			n.note(err)
			n.pendingRemove = target
			return membershipErr(err)
		}
		n.pendingRemove = ""
		return nil
	}
	name := fmt.Sprintf("n%d", n.nextID)
	n.nextID++
	n.faults["add"]++
	if err := c.Join(ctx, running[n.rng.IntN(len(running))], name); err != nil {
		// Added or not, the name is not used again; a learner that never
		// starts counts toward no quorum.
		n.faults["add-failed"]++
		n.note(err)
		return membershipErr(err)
	}
	return nil
}

// promote makes a running learner (a joined node not yet promoted) a
// voter; a promoted learner that is down would count against the quorum.
func (n *nemesis) promote() error {
	c := n.c
	running := c.RunningNames()
	if len(running) == 0 {
		return nil
	}
	via := running[n.rng.IntN(len(running))]
	var learners []string
	for _, m := range c.Node(via).Members() {
		if !m.Voter && slices.Contains(running, m.ID) {
			learners = append(learners, m.ID)
		}
	}
	if len(learners) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.faults["promote"]++
	if err := c.Node(via).PromoteMember(ctx, learners[n.rng.IntN(len(learners))]); err != nil {
		n.faults["promote-failed"]++
		n.note(err)
		return membershipErr(err)
	}
	return nil
}

// TestModelCatchesViolations makes sure the model and checker reject
// histories that a broken store would produce.
func TestModelCatchesViolations(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	put := func(v string) kvInput { return kvInput{Op: opPut, Key: "k", Value: v} }
	get := kvInput{Op: opGet, Key: "k"}
	del := kvInput{Op: opDelete, Key: "k"}
	found := func(v string, rev, create, version int64) kvOutput {
		return kvOutput{Found: true, Value: v, Revision: rev, CreateRevision: create, Version: version}
	}
	wrote := func(rev int64) kvOutput { return kvOutput{Revision: rev} }
	unknown := kvOutput{Unknown: true}
	putIf := func(v string, rev int64) kvInput {
		return kvInput{Op: opPutIf, Key: "k", Value: v, HasCond: true, CondRev: rev}
	}
	conflict := kvOutput{Conflict: true}
	const never = math.MaxInt64
	tests := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, get, found("a", 1, 1, 1)),
			op(0, 4, 5, put("b"), wrote(2)), op(0, 6, 7, get, found("b", 2, 1, 2)),
			op(0, 8, 9, del, kvOutput{Found: true, Revision: 3}), op(0, 10, 11, get, kvOutput{}),
			op(0, 12, 13, del, kvOutput{}),
		}, true},
		{"stale read", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, put("b"), wrote(2)), op(1, 4, 5, get, found("a", 1, 1, 1)),
		}, false},
		{"lost acknowledged write", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(1, 2, 3, get, kvOutput{}),
		}, false},
		{"wrong version", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, put("b"), wrote(2)), op(1, 4, 5, get, found("b", 2, 1, 1)),
		}, false},
		{"revision going back", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(5)), op(0, 2, 3, put("b"), wrote(4)),
		}, false},
		{"unknown write seen later", []porcupine.Operation{
			op(0, 0, never, put("a"), unknown), op(1, 2, 3, get, found("a", 7, 7, 1)),
		}, true},
		{"unknown write never seen", []porcupine.Operation{
			op(0, 0, never, put("a"), unknown), op(1, 2, 3, get, kvOutput{}),
		}, true},
		{"unknown write applied twice", []porcupine.Operation{
			op(0, 0, never, put("a"), unknown), op(1, 1, 2, get, found("a", 3, 3, 1)), op(1, 3, 4, get, found("a", 4, 3, 2)),
		}, false},
		{"concurrent writes, either order", []porcupine.Operation{
			op(0, 0, 10, put("a"), wrote(2)), op(1, 0, 10, put("b"), wrote(1)), op(2, 11, 12, get, found("a", 2, 1, 2)),
		}, true},
		{"retried write applied twice", []porcupine.Operation{
			op(0, 0, 5, put("a"), wrote(3)), op(1, 6, 7, get, found("a", 4, 3, 2)),
		}, false},
		{"putIf on the revision it saw", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, putIf("b", 1), wrote(2)), op(0, 4, 5, get, found("b", 2, 1, 2)),
			op(0, 6, 7, putIf("c", 1), conflict), op(0, 8, 9, putIf("d", 0), conflict),
		}, true},
		{"putIf applied although its condition failed", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, putIf("b", 0), wrote(2)),
		}, false},
		{"putIf refused although its condition held", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, putIf("b", 1), conflict),
		}, false},
		{"putIf on an unknown revision, either way", []porcupine.Operation{
			op(0, 0, never, put("a"), unknown), op(1, 1, 2, putIf("b", 9), conflict), op(1, 3, 4, putIf("c", 7), wrote(8)),
			op(1, 5, 6, get, found("c", 8, 7, 2)),
		}, true},
		{"unknown putIf whose condition failed, seen", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(1, 2, never, putIf("b", 5), unknown), op(0, 3, 4, get, found("b", 2, 1, 2)),
		}, false},
		{"update that saw a stale revision", []porcupine.Operation{
			op(0, 0, 1, put("a"), wrote(1)), op(0, 2, 3, put("b"), wrote(2)),
			op(0, 4, 5, kvInput{Op: opUpdate, Key: "k", Value: "u"}, kvOutput{Revision: 3, Seen: 1}),
		}, false},
		{"batch seen on one key only", []porcupine.Operation{
			op(0, 0, 1, kvInput{Op: opBatch, Key: "k", Keys: []string{"k", "j"}, Value: "x"}, wrote(1)),
			op(1, 2, 3, kvInput{Op: opGet, Key: "j"}, kvOutput{}),
		}, false},
		{"batch and list", []porcupine.Operation{
			op(0, 0, 1, kvInput{Op: opBatch, Key: "k", Keys: []string{"k", "j"}, Value: "x"}, wrote(1)),
			op(1, 2, 3, kvInput{Op: opList, Keys: []string{"k", "j", "i"}}, kvOutput{Revision: 1, Items: []listItem{{"j", "x", 1, 1, 1}, {"k", "x", 1, 1, 1}}}),
		}, true},
	}
	for _, tt := range tests {
		if got := porcupine.CheckOperations(kvModel, tt.ops); got != tt.ok {
			t.Errorf("%s: linearizable = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

// recorder collects what a check reports.
type recorder struct{ msgs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// TestAtomicityCatchesViolations makes sure checkAtomicity rejects half
// a batch, a batch at two revisions, a failed batch seen, and a list that
// is no consistent cut, and accepts a history without them.
func TestAtomicityCatchesViolations(t *testing.T) {
	op := func(in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{Input: in, Output: out}
	}
	batch := func(v string, keys ...string) kvInput {
		return kvInput{Op: opBatch, Key: keys[0], Keys: keys, Value: v}
	}
	get := func(k string) kvInput { return kvInput{Op: opGet, Key: k} }
	list := kvInput{Op: opList, Keys: []string{"a", "b", "c"}}
	found := func(v string, rev int64) kvOutput {
		return kvOutput{Found: true, Value: v, Revision: rev, CreateRevision: 1, Version: 1}
	}
	item := func(k, v string, rev int64) listItem { return listItem{k, v, rev, 1, 1} }
	tests := []struct {
		name string
		ops  []porcupine.Operation
		bad  bool
	}{
		{"consistent", []porcupine.Operation{
			op(batch("x", "a", "b"), kvOutput{Revision: 2}), op(get("a"), found("x", 2)),
			op(list, kvOutput{Revision: 3, Items: []listItem{item("a", "x", 2), item("b", "y", 3)}}),
			op(list, kvOutput{Revision: 1, Items: []listItem{item("a", "w", 1)}}),
		}, false},
		{"half a batch in a list", []porcupine.Operation{
			op(batch("x", "a", "b"), kvOutput{Revision: 2}),
			op(list, kvOutput{Revision: 2, Items: []listItem{item("a", "x", 2), item("b", "w", 1)}}),
		}, true},
		{"unknown batch revealed, then half of it", []porcupine.Operation{
			op(batch("x", "a", "b"), kvOutput{Unknown: true}), op(get("b"), found("x", 5)),
			op(list, kvOutput{Revision: 6, Items: []listItem{item("a", "w", 4), item("b", "x", 5)}}),
		}, true},
		{"batch at two revisions", []porcupine.Operation{
			op(batch("x", "a", "b"), kvOutput{Unknown: true}), op(get("a"), found("x", 5)), op(get("b"), found("x", 6)),
		}, true},
		{"failed batch seen", []porcupine.Operation{
			op(batch("x", "a", "b"), kvOutput{Conflict: true}), op(get("a"), found("x", 5)),
		}, true},
		{"list holds an item above its revision", []porcupine.Operation{
			op(list, kvOutput{Revision: 2, Items: []listItem{item("a", "w", 3)}}),
		}, true},
	}
	for _, tt := range tests {
		var r recorder
		if got := checkAtomicity(&r, 0, tt.ops) > 0; got != tt.bad {
			t.Errorf("%s: violation = %v, want %v (%q)", tt.name, got, tt.bad, r.msgs)
		}
	}
}
