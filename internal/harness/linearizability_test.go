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

// shortSeeds are the seeds of the default, bounded run.
var shortSeeds = []uint64{1, 2, 3}

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

// TestLinearizability runs concurrent clients doing gets, puts and deletes
// against random nodes while a nemesis partitions the network, isolates
// the leader, crashes and restarts nodes and makes links lossy, slow and
// duplicating, then checks the history with porcupine against a per-key
// model (which also checks revisions, create revisions and versions). A
// write whose outcome the client could not learn (ErrTimeout, ErrStopped,
// a context error) is an operation of unknown outcome; one that was
// definitely not proposed (ErrNoLeader, a rejected argument) is left out,
// as are failed reads. Crash-able Pebble storage alternates with
// in-memory storage, so crashes also lose unsynced data.
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
			s := runLinearizability(t, seed, runFor)
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
	faults                      map[string]int
	violations, inconclusive    int
	revisionViolations          int
	unexpectedErrs, restartErrs int
}

func (s *linStats) add(o linStats) {
	s.runs += o.runs
	s.checked += o.checked
	s.ok += o.ok
	s.unknown += o.unknown
	s.omitted += o.omitted
	s.readErrs += o.readErrs
	s.violations += o.violations
	s.inconclusive += o.inconclusive
	s.revisionViolations += o.revisionViolations
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
		"%d faults injected (%s); %d linearizability violations, %d revision-order violations, %d inconclusive checks, %d unexpected errors, %d failed restarts",
		s.runs, s.checked, s.ok, s.unknown, s.omitted, s.readErrs, total, strings.Join(kinds, " "),
		s.violations, s.revisionViolations, s.inconclusive, s.unexpectedErrs, s.restartErrs)
}

// history records operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// counters of what was left out or went wrong.
	omitted, readErrs, unexpected int
	unexpectedSample              []string
}

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
type client struct {
	id   *atomic.Int64 // shared source of client ids
	cid  int
	name string
	rng  *rand.Rand
	seq  int
	keys []string
	c    *harness.Cluster
	h    *history
}

// do runs one random operation on a random running node and records it.
func (cl *client) do() {
	running := cl.c.RunningNames()
	if len(running) == 0 {
		time.Sleep(5 * time.Millisecond) // every node is down; wait for a restart
		return
	}
	node := running[cl.rng.IntN(len(running))]
	store := cl.c.Client(node)
	key := cl.keys[cl.rng.IntN(len(cl.keys))]
	in := kvInput{Key: key}
	switch r := cl.rng.IntN(100); {
	case r < 45:
		in.Op = opGet
	case r < 85:
		in.Op = opPut
		cl.seq++
		in.Value = fmt.Sprintf(`"%s-%d"`, cl.name, cl.seq)
	default:
		in.Op = opDelete
	}
	timeout := time.Duration(300+cl.rng.IntN(1200)) * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	call := cl.h.now()
	var out kvOutput
	var err error
	switch in.Op {
	case opGet:
		var it kv.Item
		it, err = store.Get(ctx, key, kv.Linearizable)
		if err == nil {
			out = kvOutput{Found: true, Value: string(it.Value), Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version}
		} else if errors.Is(err, kv.ErrKeyNotFound) {
			err = nil
		}
	case opPut:
		out.Revision, err = store.Put(ctx, key, []byte(in.Value))
	case opDelete:
		out.Revision, err = store.Delete(ctx, key)
		out.Found = err == nil
		if errors.Is(err, kv.ErrKeyNotFound) {
			err = nil
		}
	}
	ret := cl.h.now()

	switch {
	case err == nil:
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: ret})
	case in.Op == opGet:
		// A read that failed changed nothing: leave it out.
		cl.h.count(false, true, unexpectedErr(err))
		backOff()
	case notProposed(err):
		cl.h.count(true, false, nil)
		backOff()
	default:
		// Proposed or maybe proposed: it may take effect at any time
		// from now on. Its return time is set at the end of the run.
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: kvOutput{Unknown: true}, Return: math.MaxInt64})
		cl.h.count(false, false, unexpectedErr(err))
		cl.cid = int(cl.id.Add(1))
	}
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
// meet under faults, else nil.
func unexpectedErr(err error) error {
	if errors.Is(err, consensus.ErrTimeout) || errors.Is(err, consensus.ErrStopped) || errors.Is(err, consensus.ErrNoLeader) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runLinearizability runs one seed's workload for runFor and checks it.
func runLinearizability(t *testing.T, seed uint64, runFor time.Duration) linStats {
	rng := rand.New(rand.NewPCG(seed, 0x6c696e))
	nodes := []int{3, 5}[rng.IntN(2)]
	kind := []harness.StorageKind{harness.MemoryStorage, harness.CrashablePebble}[rng.IntN(2)]
	t.Logf("seed %d: %d nodes, %s storage, %v (replay: go test -race -run 'TestLinearizability/seed=%d' ./internal/harness/ -seed=%d)",
		seed, nodes, kind, runFor, seed, seed)
	c := harness.New(t, harness.Options{Nodes: nodes, Seed: seed, Storage: kind})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	h := &history{start: time.Now()}
	keys := make([]string, 3+rng.IntN(5))
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ids atomic.Int64
	nClients := nodes + 3
	ids.Store(int64(nClients - 1))
	for i := range nClients {
		cl := &client{id: &ids, cid: i, name: fmt.Sprintf("c%d", i), rng: rand.New(rand.NewPCG(seed, uint64(i))), keys: keys, c: c, h: h}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cl.do()
			}
		})
	}
	nem := &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), faults: map[string]int{}}
	var nemErr error
	var nemWG sync.WaitGroup
	nemWG.Go(func() { nemErr = nem.run(stop) })

	time.Sleep(runFor) // the workload's length, not a synchronisation
	close(stop)
	nemWG.Wait()
	wg.Wait()

	// Let every node come back and converge, then read every key once
	// more: those reads are part of the history too.
	stats := linStats{runs: 1, faults: nem.faults}
	c.Heal()
	c.Network().ClearRules()
	for _, name := range c.Names() {
		if !c.Running(name) {
			if err := c.Restart(name); err != nil {
				stats.restartErrs++
				t.Errorf("seed %d: final restart of %s: %v", seed, name, err)
			}
		}
	}
	if nemErr != nil {
		stats.restartErrs++
		t.Errorf("seed %d: nemesis: %v", seed, nemErr)
	}
	if _, err := c.WaitLeader(20 * time.Second); err != nil {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		_ = os.WriteFile("/tmp/stuck-goroutines.txt", buf, 0o644)
		t.Fatalf("seed %d: after healing: %v", seed, err)
	}
	c.AssertSameState(20 * time.Second)
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
	if n := checkRevisionOrder(t, seed, ops); n > 0 {
		stats.revisionViolations = n
	}

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
		out = kvOutput{Found: true, Value: string(it.Value), Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version}
	case errors.Is(err, kv.ErrKeyNotFound):
	default:
		cl.h.count(false, true, unexpectedErr(err))
		return
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opGet, Key: key}, Call: call, Output: out, Return: ret})
}

// checkRevisionOrder checks what the per-key model cannot see: every
// acknowledged write has a revision of its own, and a write that began
// after another returned has a higher revision, whatever their keys.
func checkRevisionOrder(t *testing.T, seed uint64, ops []porcupine.Operation) int {
	type write struct {
		call, ret, rev int64
		desc           string
	}
	var ws []write
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if out.Unknown || in.Op == opGet || (in.Op == opDelete && !out.Found) {
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

// step injects, or undoes, one fault.
func (n *nemesis) step() error {
	c := n.c
	names := c.Names()
	running := c.RunningNames()
	crashed := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return slices.Contains(running, s) })
	maxDown := (len(names) - 1) / 2
	pick := func(from []string) string { return from[n.rng.IntN(len(from))] }

	switch r := n.rng.IntN(100); {
	case r < 20:
		n.faults["heal"]++
		c.Heal()
		c.Network().ClearRules()
	case r < 32:
		// A random split; the first group is the minority.
		perm := slices.Clone(names)
		n.rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		k := 1 + n.rng.IntN(len(perm)/2)
		n.faults["partition"]++
		c.Partition(perm[:k], perm[k:])
	case r < 42:
		if l := c.Leader(); l != "" {
			n.faults["isolate-leader"]++
			c.Isolate(l)
		}
	case r < 48:
		n.faults["isolate-node"]++
		c.Isolate(pick(names))
	case r < 54:
		a, b := pick(names), pick(names)
		if a != b {
			n.faults["cut-one-way"]++
			c.Network().Cut(c.ID(a), c.ID(b))
		}
	case r < 66:
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
	case r < 78:
		if len(crashed) < maxDown && len(running) > 0 {
			n.faults["crash"]++
			return c.Crash(pick(running))
		}
	case r < 86:
		if l := c.Leader(); l != "" && len(crashed) < maxDown {
			n.faults["crash-leader"]++
			return c.Crash(l)
		}
	default:
		if len(crashed) > 0 {
			n.faults["restart"]++
			return c.Restart(pick(crashed))
		}
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
	}
	for _, tt := range tests {
		if got := porcupine.CheckOperations(kvModel, tt.ops); got != tt.ok {
			t.Errorf("%s: linearizable = %v, want %v", tt.name, got, tt.ok)
		}
	}
}
