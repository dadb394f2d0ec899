package consensus_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/memnet"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/storage"
	"github.com/unrdf/consensus/transport"
)

// tally is a Snapshotter test machine: each command "key=value" sets a
// key, and the state is the map plus the number of commands applied.
type tally struct {
	mu      sync.Mutex
	vals    map[string]string
	applied uint64
	// lastIndex is the index of the last entry Apply saw; snapAt and
	// restoredAt are the positions the node gave Snapshot and Restore.
	lastIndex          uint64
	snapAt, restoredAt consensus.Position
	cmds               map[uint64]string // by index
}

var _ consensus.Snapshotter = (*tally)(nil)

func newTally() *tally { return &tally{vals: map[string]string{}, cmds: map[uint64]string{}} }

func (t *tally) Apply(index uint64, cmd []byte) any {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastIndex = index
	t.cmds[index] = string(cmd)
	k, v, _ := bytes.Cut(cmd, []byte("="))
	t.vals[string(k)] = string(v)
	t.applied++
	return t.applied
}

type tallyView struct {
	vals    map[string]string
	applied uint64
}

func (t *tally) Snapshot(at consensus.Position) (consensus.StateSnapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snapAt = at
	return &tallyView{vals: maps.Clone(t.vals), applied: t.applied}, nil
}

func (v *tallyView) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.BigEndian, v.applied)
	for _, k := range slices.Sorted(maps.Keys(v.vals)) {
		fmt.Fprintf(&buf, "%s=%s\n", k, v.vals[k])
	}
	return buf.WriteTo(w)
}

func (v *tallyView) Release() {}

func (t *tally) Restore(at consensus.Position, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) < 8 {
		return errors.New("tally: short snapshot")
	}
	vals := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSuffix(b[8:], []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			return errors.New("tally: bad line")
		}
		vals[string(k)] = string(v)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.vals, t.applied = vals, binary.BigEndian.Uint64(b[:8])
	t.restoredAt, t.lastIndex = at, at.Index
	return nil
}

func (t *tally) state() (map[string]string, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.vals), t.applied
}

type snapNode struct {
	node *consensus.Node
	sm   *tally
	tr   consensus.Transport
}

func snapConfig(name string, peers map[string]string) consensus.Config {
	cfg := consensus.DefaultConfig(name)
	cfg.Peers = peers
	cfg.SnapshotThreshold = 50
	cfg.SnapshotCatchUpEntries = 10
	// Snapshots by entries alone: with the default spacing, one snapshot
	// that took 200 ms on a loaded machine put the next 10 s away, the
	// tests' whole wait (TestFollowerCatchesUpBySnapshot and
	// TestRestartFromSnapshotAndTail timed out now and then).
	cfg.SnapshotSpacing = 0
	return cfg
}

// snapCluster is three nodes with small snapshot thresholds, over memnet
// (isolate cuts a node off) or over real WebSocket transports with Pebble
// and snapshot files on disk (isolate stops a node; heal restarts it).
type snapCluster struct {
	t       *testing.T
	nodes   map[string]*snapNode
	isolate func(name string)
	heal    func()
}

func newMemnetSnapCluster(t *testing.T) *snapCluster {
	const seed = 7
	t.Logf("seed %d", seed)
	net := memnet.New(memnet.Config{Seed: seed})
	t.Cleanup(net.Close)
	peers := map[string]string{"a": "a", "b": "b", "c": "c"}
	c := &snapCluster{t: t, nodes: map[string]*snapNode{}}
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		sm := newTally()
		node, err := consensus.NewNode(snapConfig(name, peers), storage.NewMemory(), sm)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := net.Attach(consensus.RaftID(name), node)
		if err != nil {
			t.Fatal(err)
		}
		node.Start(tr)
		c.nodes[name] = &snapNode{node, sm, tr}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.node.Stop()
			_ = n.tr.Close()
		}
	})
	c.isolate = func(name string) { net.Isolate(consensus.RaftID(name)) }
	c.heal = net.Heal
	return c
}

func newWebSocketSnapCluster(t *testing.T) *snapCluster {
	dir := t.TempDir()
	lns := map[string]net.Listener{}
	peers := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[name], peers[name] = ln, ln.Addr().String()
	}
	c := &snapCluster{t: t, nodes: map[string]*snapNode{}}
	stores := map[string]*storage.Pebble{}
	start := func(name string, ln net.Listener) {
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", peers[name]); err != nil {
				t.Fatal(err)
			}
		}
		st, err := storage.Open(filepath.Join(dir, name, "raft"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := storage.OpenSnapshotDir(filepath.Join(dir, name, "snap"), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := snapConfig(name, peers)
		cfg.Snapshots = snaps
		sm := newTally()
		node, err := consensus.NewNode(cfg, st, sm)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := transport.New(transport.Config{ID: consensus.RaftID(name), Name: name, Listener: ln, ClusterID: node.ClusterID()}, node)
		if err != nil {
			t.Fatal(err)
		}
		node.Start(tr)
		c.nodes[name], stores[name] = &snapNode{node, sm, tr}, st
	}
	stop := func(name string) {
		n := c.nodes[name]
		n.node.Stop()
		_ = n.tr.Close()
		_ = stores[name].Close()
	}
	for name, ln := range lns {
		start(name, ln)
	}
	t.Cleanup(func() {
		for name := range c.nodes {
			stop(name)
		}
	})
	var down string
	c.isolate = func(name string) { stop(name); down = name }
	c.heal = func() { start(down, nil) }
	return c
}

func (c *snapCluster) leader() string {
	var leader string
	testwait.For(c.t, 10*time.Second, "a leader", func() bool {
		for name, n := range c.nodes {
			if n.node.IsLeader() {
				leader = name
				return true
			}
		}
		return false
	})
	return leader
}

// A follower cut off while more than three snapshot thresholds of entries
// are written, and compacted away, catches up by receiving a snapshot and
// ends with the leader's state.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	for name, newCluster := range map[string]func(*testing.T) *snapCluster{
		"memnet": newMemnetSnapCluster, "websocket": newWebSocketSnapCluster,
	} {
		t.Run(name, func(t *testing.T) { testFollowerCatchesUpBySnapshot(t, newCluster(t)) })
	}
}

func testFollowerCatchesUpBySnapshot(t *testing.T, c *snapCluster) {
	leader := c.leader()
	var lagger string
	for _, name := range slices.Sorted(maps.Keys(c.nodes)) {
		if name != leader {
			lagger = name
			break
		}
	}
	c.isolate(lagger)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const writes = 4 * 50
	for i := range writes {
		if _, err := c.nodes[leader].node.Propose(ctx, fmt.Appendf(nil, "k%d=v%d", i%37, i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	testwait.For(t, 10*time.Second, "the leader's snapshot", func() bool {
		return c.nodes[leader].node.Status().SnapshotIndex >= 3*50
	})
	c.heal()
	sub := c.nodes[lagger].node.SubscribeSnapshots(16)
	defer sub.Close()
	want, wantApplied := c.nodes[leader].sm.state()
	testwait.For(t, 20*time.Second, "the lagging follower to catch up", func() bool {
		_, applied := c.nodes[lagger].sm.state()
		return applied == wantApplied
	})
	got, _ := c.nodes[lagger].sm.state()
	if !maps.Equal(got, want) {
		t.Fatalf("follower state differs from the leader's:\n got %v\nwant %v", got, want)
	}
	if si := c.nodes[lagger].node.Status().SnapshotIndex; si < 3*50 {
		t.Fatalf("follower's snapshot index is %d: it caught up without a snapshot", si)
	}
	select {
	case ev := <-sub.C():
		if ev.Type != consensus.SnapshotRestored || ev.Index < 3*50 {
			t.Fatalf("follower's first snapshot event = %+v, want a restore at >= 150", ev)
		}
		t.Logf("follower restored snapshot at index %d (%d bytes) in %v", ev.Index, ev.Bytes, ev.Duration)
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot_restored event")
	}
}

// A restarted node loads its newest snapshot plus the log tail after it,
// from disk, and ends with the state it had.
func TestRestartFromSnapshotAndTail(t *testing.T) {
	dir := t.TempDir()
	peers := map[string]string{"solo": "solo"}
	open := func() (*consensus.Node, *tally, *storage.Pebble) {
		st, err := storage.Open(dir+"/raft", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := storage.OpenSnapshotDir(dir+"/snap", nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := snapConfig("solo", peers)
		cfg.Snapshots = snaps
		sm := newTally()
		node, err := consensus.NewNode(cfg, st, sm)
		if err != nil {
			t.Fatal(err)
		}
		net := memnet.New(memnet.Config{})
		tr, err := net.Attach(consensus.RaftID("solo"), node)
		if err != nil {
			t.Fatal(err)
		}
		node.Start(tr)
		t.Cleanup(func() { _ = tr.Close(); net.Close() })
		return node, sm, st
	}
	node, sm, st := open()
	testwait.For(t, 5*time.Second, "leadership", node.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 175 {
		if _, err := node.Propose(ctx, fmt.Appendf(nil, "k%d=v%d", i%11, i)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, 10*time.Second, "a snapshot at 150 or more", func() bool { return node.Status().SnapshotIndex >= 150 })
	want, wantApplied := sm.state()
	sm.mu.Lock()
	snapAt := sm.snapAt
	sm.mu.Unlock()
	node.Stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	node, sm, st = open()
	defer func() { node.Stop(); _ = st.Close() }()
	first, err := st.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Fatalf("log was not compacted: first index %d", first)
	}
	// Everything applied before the restart is back before any new write.
	testwait.For(t, 10*time.Second, "replay of the tail", func() bool {
		_, applied := sm.state()
		return applied >= wantApplied
	})
	got, gotApplied := sm.state()
	if gotApplied != wantApplied {
		t.Fatalf("applied %d commands after restart, want %d (a replayed entry applied twice?)", gotApplied, wantApplied)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("state after restart differs:\n got %v\nwant %v", got, want)
	}
	if si := node.Status().SnapshotIndex; si < 150 {
		t.Fatalf("snapshot index after restart = %d, want >= 150", si)
	}
	// Restore was told which snapshot it restored: the last one taken.
	sm.mu.Lock()
	restoredAt := sm.restoredAt
	sm.mu.Unlock()
	if restoredAt != snapAt || restoredAt.Index != node.Status().SnapshotIndex || restoredAt.Term == 0 {
		t.Fatalf("Restore was given %+v; the snapshot was taken at %+v, status says index %d", restoredAt, snapAt, node.Status().SnapshotIndex)
	}
}
