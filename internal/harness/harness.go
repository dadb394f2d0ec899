// Package harness runs in-process clusters for tests: N nodes, each a
// consensus.Node with a kv.Machine and a kv.Store over it, talking over a
// fault-injecting memnet.Network. A test can partition and isolate nodes,
// heal the network, crash and restart nodes, and check that every running
// node holds the same state.
//
// # Crashes and storage
//
// Crash stops a node abruptly, and atomically with respect to everything a
// test can observe: at the crash instant the node's storage gate closes,
// so a Save that returns after it is never acknowledged to the node (it
// fails, and the node stops without sending, applying or answering on its
// strength); then its transport is cut, so nothing it does afterwards
// reaches anyone; then its file system is copied as a power loss would
// leave it, and the node is stopped. Without the gate, a leader whose
// fsync was in flight at the copy could finish it on the discarded file
// system, count its own vote for an entry one follower also held, commit
// and acknowledge it, and lose it on restart: a success no real crash can
// produce (issue 13; see TestCrashIsAtomic). Its storage keeps exactly
// what a real disk would after a power loss:
//
//   - With MemoryStorage (storage.Memory) every Save is synced the moment
//     it returns, so the same Memory instance is kept and reused by
//     Restart: the crashed node comes back with every Save it completed.
//   - With CrashablePebble each node's storage.Pebble lives on its own
//     pebble vfs.NewCrashableMem file system. Crash takes the file system
//     as a power loss would leave it (vfs.MemFS.CrashClone: everything
//     synced, and at random none, half or all of what was not), and
//     Restart opens a new storage.Pebble on that copy.
//
// Restart builds a new Node and a new, empty kv.Machine over the kept
// storage; the machine's state is rebuilt by replaying the log.
//
// Methods of Cluster are safe for concurrent use (a nemesis goroutine can
// inject faults while clients run), except New and AssertSameState, which
// must run on the test's goroutine.
package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/memnet"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
)

// StorageKind selects the log storage of a cluster's nodes.
type StorageKind int

const (
	// MemoryStorage is storage.Memory: fast; every Save is synced.
	MemoryStorage StorageKind = iota
	// CrashablePebble is storage.Pebble on an in-memory file system that
	// can lose unsynced data in a crash.
	CrashablePebble
)

// String names the kind.
func (k StorageKind) String() string {
	if k == CrashablePebble {
		return "crashable-pebble"
	}
	return "memory"
}

// Options configures a Cluster.
type Options struct {
	// Nodes is the number of nodes, named n1, n2, ... Default 3.
	Nodes int
	// Seed seeds the network's faults and the harness's own choices.
	Seed uint64
	// Storage is the nodes' log storage.
	Storage StorageKind
	// ValuesOnDisk gives each incarnation of a node a kv.ValueStore, as a
	// server has, on the real disk under the test's temporary directory,
	// with segments of 4 KiB so that sealing and evacuation happen all
	// the time. A restart opens it again, empty, as a server's start does.
	ValuesOnDisk bool
	// Configure, if set, adjusts each node's configuration (built from
	// consensus.DefaultConfig) before it starts.
	Configure func(*consensus.Config)
	// Logger receives the nodes' logs. Nil discards them.
	Logger *slog.Logger
	// QueueLimit bounds each node's inbound network queue; zero means
	// memnet.DefaultQueueLimit.
	QueueLimit int
	// WrapStorage, if set, wraps each node's log storage at every start
	// (inside the harness's crash gate), so a test can watch or hold
	// Saves. It must not call back into the Cluster.
	WrapStorage func(name string, st consensus.LogStorage) consensus.LogStorage
	// OnCrash, if set, is called by Crash after it has taken the copy of
	// the node's storage and before it stops the node, which until then
	// runs on, cut off from the network (see TestCrashIsAtomic). It must
	// not call back into the Cluster.
	OnCrash func(name string)
	// Leases, if set, runs a lease clock (kv.Lessor) beside every node's
	// store, with this configuration (its Logger defaults to Logger), so
	// the stores serve KeepAlive and TimeToLive and leases expire.
	Leases *kv.LessorConfig
	// Schedules, if set, runs a schedule clock (kv.Scheduler) beside
	// every node's store, with this configuration (its Logger defaults
	// to Logger), so the leader fires schedules.
	Schedules *kv.SchedulerConfig
	// OnStart, if set, is called with every incarnation of every node
	// (at New, Restart and StartJoining) after it is created and before
	// it starts, so a test can subscribe to its events from the first
	// one on. It must not call back into the Cluster.
	OnStart func(name string, node *consensus.Node)
	// Serve, if set, is called with every incarnation of every node and
	// its store once it has started, so a test can serve the store over
	// an API of its own (etcd's, in TestLinearizabilityEtcd). The function
	// it returns, if not nil, is called when that incarnation stops (a
	// crash, a removal, Close), before the node stops. Neither may call
	// back into the Cluster.
	Serve func(name string, node *consensus.Node, store *kv.Store) (stop func())
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t     testing.TB
	opts  Options
	net   *memnet.Network
	names []string
	peers map[string]string

	// opMu serialises Crash, Restart and Close, which take a while.
	opMu sync.Mutex

	mu      sync.Mutex
	rng     *rand.Rand
	members map[string]*member
	closed  bool
	// valuesDir holds the nodes' value stores (Options.ValuesOnDisk).
	valuesDir string
}

// member is one node and everything that outlives its crashes.
type member struct {
	name string
	id   uint64
	// fs holds a CrashablePebble node's files; after a crash, the
	// crash-time copy.
	fs *vfs.MemFS
	// storage is the log storage while running; for MemoryStorage it is
	// kept across crashes.
	storage consensus.LogStorage
	// gate wraps the running incarnation's storage; Crash closes it.
	gate *crashGate
	// snapFS holds a MemoryStorage node's snapshot files, kept across
	// crashes like its storage (a CrashablePebble node keeps them in fs).
	snapFS  *vfs.MemFS
	node    *consensus.Node
	machine *kv.Machine
	// values is the running incarnation's value store
	// (Options.ValuesOnDisk); stop closes it.
	values *kv.ValueStore
	store  *kv.Store
	lessor *kv.Lessor // with Options.Leases
	// scheduler is the schedule clock, with Options.Schedules.
	scheduler *kv.Scheduler
	unserve   func() // from Options.Serve
	tr        *memnet.Transport
	running   bool
	// joins marks a node added after the cluster started: with empty
	// storage it joins instead of bootstrapping (see members.go).
	joins bool
	// removed marks a node removed from the cluster (Remove): it is
	// stopped for good and no longer among Names or RunningNames.
	removed bool
}

// New starts a cluster and registers its shutdown with t.Cleanup. It
// fails t if a node cannot start.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	c := &Cluster{
		t:       t,
		opts:    opts,
		net:     memnet.New(memnet.Config{Seed: opts.Seed, QueueLimit: opts.QueueLimit}),
		peers:   make(map[string]string),
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x68726e73)),
		members: make(map[string]*member),
	}
	if opts.ValuesOnDisk {
		c.valuesDir = t.TempDir()
	}
	for i := 1; i <= opts.Nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		c.names = append(c.names, name)
		c.peers[name] = "memnet:" + name
	}
	t.Cleanup(c.Close)
	for _, name := range c.names {
		m := &member{name: name, id: consensus.RaftID(name)}
		switch opts.Storage {
		case CrashablePebble:
			m.fs = vfs.NewCrashableMem()
		default:
			m.storage = storage.NewMemory()
			m.snapFS = vfs.NewMem()
		}
		c.members[name] = m
		if err := c.start(m); err != nil {
			t.Fatalf("harness: start %s: %v", name, err)
		}
	}
	return c
}

// dataDir is where a CrashablePebble node keeps its store on its own
// file system.
const dataDir = "/data"

// start opens m's storage (CrashablePebble) and starts a new node and
// state machine over it.
func (c *Cluster) start(m *member) error {
	st := m.storage
	if c.opts.Storage == CrashablePebble {
		p, err := storage.Open(dataDir, storage.Options{FS: m.fs, MemTableSize: 1 << 20, Logger: c.opts.Logger})
		if err != nil {
			return err
		}
		st = p
	}
	snapFS, snapDir := m.snapFS, "/snap"
	if c.opts.Storage == CrashablePebble {
		snapFS, snapDir = m.fs, dataDir+"/snap"
	}
	snaps, err := storage.OpenSnapshotDir(snapDir, snapFS)
	if err != nil {
		c.closeStorage(st)
		return err
	}
	cfg := consensus.DefaultConfig(m.name)
	// Each node gets its own copy: Join adds names later.
	c.mu.Lock()
	cfg.Peers = maps.Clone(c.peers)
	c.mu.Unlock()
	cfg.Join = m.joins
	cfg.Logger = c.opts.Logger
	cfg.Snapshots = snaps
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	var values *kv.ValueStore
	var machineOpts []kv.Option
	if c.opts.ValuesOnDisk {
		values, err = kv.OpenValueStore(filepath.Join(c.valuesDir, m.name), kv.ValueStoreOptions{SegmentBytes: 4 << 10})
		if err != nil {
			c.closeStorage(st)
			return err
		}
		machineOpts = append(machineOpts, kv.WithValueStore(values))
	}
	closeValues := func() {
		if values != nil {
			_ = values.Close()
		}
	}
	machine := kv.NewMachine(machineOpts...)
	var nodeStorage consensus.LogStorage = st
	if c.opts.WrapStorage != nil {
		nodeStorage = c.opts.WrapStorage(m.name, nodeStorage)
	}
	gate := &crashGate{LogStorage: nodeStorage}
	gate.ids, _ = st.(consensus.ClusterIDStore)
	node, err := consensus.NewNode(cfg, gate, machine)
	if err != nil {
		c.closeStorage(st)
		closeValues()
		return err
	}
	tr, err := c.net.Attach(m.id, node)
	if err != nil {
		c.closeStorage(st)
		closeValues()
		return err
	}
	if c.opts.OnStart != nil {
		c.opts.OnStart(m.name, node)
	}
	store := kv.NewStore(node, machine)
	var lessor *kv.Lessor
	if c.opts.Leases != nil {
		lcfg := *c.opts.Leases
		if lcfg.Logger == nil && c.opts.Logger != nil {
			lcfg.Logger = c.opts.Logger.With("node", m.name, "part", "lessor")
		}
		lessor = kv.NewLessor(kv.LeaderOf(node), machine, lcfg)
		store.UseLessor(lessor)
	}
	var scheduler *kv.Scheduler
	if c.opts.Schedules != nil {
		scfg := *c.opts.Schedules
		if scfg.Logger == nil && c.opts.Logger != nil {
			scfg.Logger = c.opts.Logger.With("node", m.name, "part", "scheduler")
		}
		scheduler = kv.NewScheduler(kv.LeaderOf(node), machine, scfg)
	}
	node.Start(tr)
	if lessor != nil {
		lessor.Start()
	}
	if scheduler != nil {
		scheduler.Start()
	}
	var unserve func()
	if c.opts.Serve != nil {
		unserve = c.opts.Serve(m.name, node, store)
	}
	c.mu.Lock()
	m.storage, m.gate, m.node, m.machine, m.values, m.tr = st, gate, node, machine, values, tr
	m.store, m.lessor, m.scheduler, m.unserve = store, lessor, scheduler, unserve
	m.running = true
	c.mu.Unlock()
	return nil
}

// stop stops m's running incarnation: what serves it (Options.Serve),
// its lease clock and schedule clock, then its node.
func (m *member) stop() {
	if m.unserve != nil {
		m.unserve()
		m.unserve = nil
	}
	if m.lessor != nil {
		m.lessor.Stop()
	}
	if m.scheduler != nil {
		m.scheduler.Stop()
	}
	m.node.Stop()
	if m.values != nil {
		// Last: nothing applies to or reads the machine any more.
		_ = m.values.Close()
		m.values = nil
	}
}

// closeStorage closes a Pebble; a Memory stays open for the next start.
func (c *Cluster) closeStorage(st consensus.LogStorage) {
	if c.opts.Storage == CrashablePebble {
		_ = st.Close()
	}
}

// Names returns the names of the nodes that are members: n1 to nN, then
// those added with Join or StartJoining, less those removed with Remove.
func (c *Cluster) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(c.names), func(n string) bool { return c.members[n].removed })
}

// ID returns the raft id of the named node.
func (c *Cluster) ID(name string) uint64 { return consensus.RaftID(name) }

// Network returns the cluster's network, for link rules.
func (c *Cluster) Network() *memnet.Network { return c.net }

// Client returns the kv.Store of the named node's current incarnation. A
// crashed node's store answers with consensus.ErrStopped until Restart
// (after which Client returns the new one).
func (c *Cluster) Client(name string) *kv.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(name).store
}

// Lessor returns the lease clock of the named node's current incarnation
// (nil without Options.Leases).
func (c *Cluster) Lessor(name string) *kv.Lessor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(name).lessor
}

// Node returns the named node's current incarnation.
func (c *Cluster) Node(name string) *consensus.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(name).node
}

// Running reports whether the named node is running (not crashed).
func (c *Cluster) Running(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(name).running
}

// RunningNames returns the names of the running nodes.
func (c *Cluster) RunningNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range c.names {
		if m := c.members[name]; m.running && !m.removed {
			out = append(out, name)
		}
	}
	return out
}

// member returns the named member; an unknown name is a bug in the test.
// Callers hold c.mu.
func (c *Cluster) member(name string) *member {
	m, ok := c.members[name]
	if !ok {
		panic(fmt.Sprintf("harness: no node %q (nodes are %v)", name, c.names))
	}
	return m
}

// Leader returns the running node that believes it leads in the highest
// term, or "" if none does.
func (c *Cluster) Leader() string {
	leader, term := "", uint64(0)
	for _, name := range c.RunningNames() {
		st := c.Node(name).Status()
		if st.IsLeader && st.Term >= term {
			leader, term = name, st.Term
		}
	}
	return leader
}

// WaitLeader waits until every running node (or, if names are given,
// every running node among them) names the same leader, one of those
// nodes, and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration, names ...string) (string, error) {
	var last, agreedLeader string
	err := poll(timeout, func() bool {
		leader := ""
		running := c.RunningNames()
		if len(names) > 0 {
			running = slices.DeleteFunc(running, func(n string) bool { return !slices.Contains(names, n) })
		}
		var views []string
		agreed := len(running) > 0
		for _, name := range running {
			l := c.Node(name).Leader()
			views = append(views, name+"->"+l)
			if l == "" || (leader != "" && l != leader) {
				agreed = false
			}
			leader = l
		}
		last = strings.Join(views, " ")
		if agreed && slices.Contains(running, leader) && c.Node(leader).IsLeader() {
			agreedLeader = leader
			return true
		}
		return false
	})
	if err != nil {
		return "", fmt.Errorf("harness: no agreed leader within %v (last views: %s)\n%s", timeout, last, c.Describe())
	}
	return agreedLeader, nil
}

// Describe returns one line per node with its raft state, for failure
// messages.
func (c *Cluster) Describe() string {
	var b strings.Builder
	for _, name := range c.Names() {
		c.mu.Lock()
		m := c.member(name)
		node, running := m.node, m.running
		c.mu.Unlock()
		if !running {
			fmt.Fprintf(&b, "  %s: crashed\n", name)
			continue
		}
		st := node.Status()
		fmt.Fprintf(&b, "  %s: leader %q term %d commit %d applied %d connected %v err %v\n",
			name, st.LeaderID, st.Term, st.CommitIndex, st.AppliedIndex, st.ConnectedPeers, node.Err())
	}
	fmt.Fprintf(&b, "  network: %+v", c.net.Stats())
	return b.String()
}

// Partition splits the nodes into groups that cannot reach each other.
// Nodes named in no group form one more group. It replaces any earlier
// partition.
func (c *Cluster) Partition(groups ...[]string) {
	ids := make([][]uint64, len(groups))
	for i, g := range groups {
		for _, name := range g {
			ids[i] = append(ids[i], consensus.RaftID(name))
		}
	}
	c.net.Partition(ids...)
}

// Isolate cuts the named node off from every other.
func (c *Cluster) Isolate(name string) { c.net.Isolate(consensus.RaftID(name)) }

// Heal removes every partition, isolation and cut. Link rules (drop,
// delay, duplicate) stay; see Network().ClearRules.
func (c *Cluster) Heal() { c.net.Heal() }

// Crash stops the named node abruptly, keeping only its synced storage
// (see the package documentation). It fails if the node is not running.
func (c *Cluster) Crash(name string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	m := c.member(name)
	if !m.running || m.removed || c.closed {
		c.mu.Unlock()
		return fmt.Errorf("harness: crash %s: not running", name)
	}
	m.running = false
	// The crash instant: from here on nothing the node saves counts.
	m.gate.crash()
	unsynced := []int{0, 0, 50, 100}[c.rng.IntN(4)]
	rng := rand.New(rand.NewPCG(c.rng.Uint64(), c.rng.Uint64()))
	c.mu.Unlock()

	// Cut the wire first: from here on nothing the node does is seen.
	_ = m.tr.Close()
	var crashed *vfs.MemFS
	if c.opts.Storage == CrashablePebble {
		crashed = m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rng})
	}
	if c.opts.OnCrash != nil {
		c.opts.OnCrash(name)
	}
	m.stop()
	if crashed != nil {
		// The old store writes its last flush to the pre-crash file
		// system, which is then forgotten.
		_ = m.storage.Close()
		c.mu.Lock()
		m.fs, m.storage = crashed, nil
		c.mu.Unlock()
	}
	return nil
}

// Restart starts a crashed node again: a new Node and a new kv.Machine
// over the storage its crash left. It fails if the node is running or
// cannot start (for CrashablePebble, an error from storage.Open such as
// storage.ErrCorrupt).
func (c *Cluster) Restart(name string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	m := c.member(name)
	if m.running || m.removed || c.closed {
		c.mu.Unlock()
		return fmt.Errorf("harness: restart %s: already running or removed", name)
	}
	c.mu.Unlock()
	if err := c.start(m); err != nil {
		return fmt.Errorf("harness: restart %s: %w", name, err)
	}
	return nil
}

// Close stops every node and the network. It is registered with
// t.Cleanup by New and safe to call more than once.
func (c *Cluster) Close() {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	var running []*member
	for _, name := range c.names {
		if m := c.members[name]; m.running {
			m.running = false
			running = append(running, m)
		}
	}
	c.mu.Unlock()
	for _, m := range running {
		m.stop()
	}
	c.net.Close()
	for _, m := range c.members {
		if m.storage == nil {
			continue // a crashed CrashablePebble node's store is closed
		}
		if err := m.storage.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
			c.t.Errorf("harness: close %s storage: %v", m.name, err)
		}
	}
}

// State is what every node must agree on: the applied index and the
// key-value state at it.
type State struct {
	AppliedIndex uint64
	Revision     int64
	Items        []kv.Item
}

// nodeState is one node's view, for comparison and error messages.
type nodeState struct {
	name string
	State
}

// SameState waits until every running node, after a linearizable read,
// has applied the same index and holds the same items and revision, and
// returns that state. It fails when ctx ends first, describing how the
// nodes differed last. Run it after Heal (and ClearRules) so that the
// nodes can catch up.
func (c *Cluster) SameState(ctx context.Context) (State, error) {
	var last string
	for {
		states, why := c.collectStates(ctx)
		if why == "" {
			first := states[0]
			for _, s := range states[1:] {
				switch {
				case s.AppliedIndex != first.AppliedIndex:
					why = fmt.Sprintf("applied index: %s at %d, %s at %d", first.name, first.AppliedIndex, s.name, s.AppliedIndex)
				case s.Revision != first.Revision || !reflect.DeepEqual(s.Items, first.Items):
					why = fmt.Sprintf("at applied index %d: %s has revision %d and %d items, %s has revision %d and %d items; first difference: %s",
						first.AppliedIndex, first.name, first.Revision, len(first.Items), s.name, s.Revision, len(s.Items), firstDiff(first.Items, s.Items))
				}
				if why != "" {
					break
				}
			}
			if why == "" {
				return first.State, nil
			}
		}
		last = why
		select {
		case <-ctx.Done():
			return State{}, fmt.Errorf("harness: nodes do not converge: %s\n%s", last, c.Describe())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// collectStates reads every running node's state after a linearizable
// read, or says why it could not.
func (c *Cluster) collectStates(ctx context.Context) ([]nodeState, string) {
	running := c.RunningNames()
	if len(running) == 0 {
		return nil, "no node is running"
	}
	var out []nodeState
	for _, name := range running {
		c.mu.Lock()
		m := c.member(name)
		node, machine := m.node, m.machine
		c.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := node.LinearizableRead(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Sprintf("linearizable read on %s: %v", name, err)
		}
		// Apply may run between these reads; a state read across it is
		// retried rather than compared.
		before := node.AppliedIndex()
		items, rev := machine.List("")
		if after := node.AppliedIndex(); after != before {
			return nil, fmt.Sprintf("%s applied %d..%d while being read", name, before, after)
		}
		out = append(out, nodeState{name, State{AppliedIndex: before, Revision: rev, Items: items}})
	}
	return out, ""
}

// firstDiff describes the first item where a and b differ.
func firstDiff(a, b []kv.Item) string {
	for i := range max(len(a), len(b)) {
		switch {
		case i >= len(a):
			return fmt.Sprintf("only the second has %+v", b[i])
		case i >= len(b):
			return fmt.Sprintf("only the first has %+v", a[i])
		case !reflect.DeepEqual(a[i], b[i]):
			return fmt.Sprintf("%+v vs %+v", a[i], b[i])
		}
	}
	return "none"
}

// AssertSameState is SameState on the test's goroutine: it fails the
// test if the running nodes do not converge within timeout.
func (c *Cluster) AssertSameState(timeout time.Duration) State {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := c.SameState(ctx)
	if err != nil {
		c.t.Fatalf("seed %d: %v", c.opts.Seed, err)
	}
	return s
}

// poll calls cond every few milliseconds until it is true or timeout
// passes.
func poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
