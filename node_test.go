package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanNet is a minimal in-process network: each node has an inbox served
// by one goroutine, so delivery is asynchronous and in order per sender.
type chanNet struct {
	mu      sync.Mutex
	inboxes map[uint64]chan []*raftpb.Message
	down    map[uint64]bool
	wg      sync.WaitGroup
}

func newChanNet() *chanNet {
	return &chanNet{inboxes: map[uint64]chan []*raftpb.Message{}, down: map[uint64]bool{}}
}

type chanTransport struct {
	net *chanNet
	id  uint64
	h   consensus.MessageHandler
}

func (cn *chanNet) attach(id uint64, h consensus.MessageHandler) *chanTransport {
	inbox := make(chan []*raftpb.Message, 1024)
	cn.mu.Lock()
	cn.inboxes[id] = inbox
	cn.mu.Unlock()
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		for msgs := range inbox {
			h.Deliver(msgs)
		}
	}()
	return &chanTransport{net: cn, id: id, h: h}
}

func (t *chanTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		cp := cloneMsg(m)
		t.net.mu.Lock()
		inbox, ok := t.net.inboxes[m.GetTo()]
		down := t.net.down[m.GetTo()] || t.net.down[t.id]
		t.net.mu.Unlock()
		if !ok || down {
			t.h.ReportUnreachable(m.GetTo())
			continue
		}
		select {
		case inbox <- []*raftpb.Message{cp}:
		default:
			t.h.ReportUnreachable(m.GetTo())
		}
	}
}

func cloneMsg(m *raftpb.Message) *raftpb.Message { return proto.Clone(m).(*raftpb.Message) }

func (t *chanTransport) AddPeer(uint64, string, string) {}
func (t *chanTransport) RemovePeer(uint64)              {}
func (t *chanTransport) ConnectedPeers() []uint64       { return nil }
func (t *chanTransport) Close() error {
	t.net.mu.Lock()
	inbox := t.net.inboxes[t.id]
	delete(t.net.inboxes, t.id)
	t.net.mu.Unlock()
	if inbox != nil {
		close(inbox)
	}
	return nil
}

// recorder is a StateMachine that records applied commands.
type recorder struct {
	mu   sync.Mutex
	cmds []string
}

func (r *recorder) Apply(index uint64, cmd []byte) any {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, string(cmd))
	return fmt.Sprintf("applied %s at %d", cmd, index)
}

func (r *recorder) applied() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cmds...)
}

type testNode struct {
	node *consensus.Node
	sm   *recorder
	tr   *chanTransport
}

func startCluster(t testing.TB, n int) (map[string]*testNode, *chanNet) {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with configure, if not nil, applied to
// each node's config.
func startClusterWith(t testing.TB, n int, configure func(*consensus.Config)) (map[string]*testNode, *chanNet) {
	t.Helper()
	peers := map[string]string{}
	for i := 1; i <= n; i++ {
		peers[fmt.Sprintf("n%d", i)] = fmt.Sprintf("mem-%d", i)
	}
	cn := newChanNet()
	nodes := map[string]*testNode{}
	for name := range peers {
		cfg := consensus.DefaultConfig(name)
		cfg.Peers = peers
		if configure != nil {
			configure(&cfg)
		}
		sm := &recorder{}
		node, err := consensus.NewNode(cfg, storage.NewMemory(), sm)
		if err != nil {
			t.Fatal(err)
		}
		tr := cn.attach(consensus.RaftID(name), node)
		node.Start(tr)
		nodes[name] = &testNode{node, sm, tr}
	}
	t.Cleanup(func() {
		// Every node stops before any inbox closes: a node still running
		// could otherwise send into a closed inbox (Send looks the inbox
		// up, then sends, outside the lock).
		for _, tn := range nodes {
			tn.node.Stop()
		}
		for _, tn := range nodes {
			tn.tr.Close()
		}
		cn.wg.Wait()
	})
	return nodes, cn
}

// waitLeader waits until every node of nodes knows the same leader and
// returns it: the one leader wait of this package's node tests.
func waitLeader(t testing.TB, nodes map[string]*testNode) string {
	t.Helper()
	var leader string
	testwait.For(t, 10*time.Second, "every node knows the same leader", func() bool {
		leader = ""
		for _, tn := range nodes {
			l := tn.node.Leader()
			if l == "" || (leader != "" && l != leader) {
				return false
			}
			leader = l
		}
		return true
	})
	return leader
}

func TestProposeOnFollowerAppliesEverywhereInOrder(t *testing.T) {
	nodes, _ := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	var follower string
	for name := range nodes {
		if name != leader {
			follower = name
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		res, err := nodes[follower].node.Propose(ctx, fmt.Appendf(nil, "cmd-%d", i))
		if err != nil {
			t.Fatalf("propose %d on follower: %v", i, err)
		}
		if s, _ := res.(string); s == "" {
			t.Fatalf("propose %d: result %v", i, res)
		}
	}
	want := nodes[follower].sm.applied()
	if len(want) != 10 {
		t.Fatalf("follower applied %d commands, want 10", len(want))
	}
	for name, tn := range nodes {
		if err := tn.node.LinearizableRead(ctx); err != nil {
			t.Fatalf("read on %s: %v", name, err)
		}
		if got := tn.sm.applied(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s applied %v, want %v", name, got, want)
		}
	}
}

func TestLinearizableReadSeesPriorWrite(t *testing.T) {
	nodes, _ := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[leader].node.Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	target := nodes[leader].node.AppliedIndex()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for _, tn := range nodes {
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := tn.node.LinearizableRead(ctx); err != nil {
					errs <- err
					return
				}
				if got := tn.node.AppliedIndex(); got < target {
					errs <- fmt.Errorf("read returned at applied %d < %d", got, target)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNoLeaderAndStoppedErrors(t *testing.T) {
	peers := map[string]string{"n1": "a", "n2": "b", "n3": "c"}
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = peers
	node, err := consensus.NewNode(cfg, storage.NewMemory(), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	cn := newChanNet()
	tr := cn.attach(consensus.RaftID("n1"), node)
	node.Start(tr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := node.Propose(ctx, []byte("x")); !errors.Is(err, consensus.ErrNoLeader) {
		t.Fatalf("propose without quorum: %v, want ErrNoLeader", err)
	}
	if err := node.LinearizableRead(ctx); !errors.Is(err, consensus.ErrNoLeader) {
		t.Fatalf("read without quorum: %v, want ErrNoLeader", err)
	}
	node.Stop()
	tr.Close()
	cn.wg.Wait()
	if _, err := node.Propose(ctx, []byte("x")); !errors.Is(err, consensus.ErrStopped) {
		t.Fatalf("propose after stop: %v, want ErrStopped", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := consensus.DefaultConfig("n1")
	if err := base.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := map[string]func(*consensus.Config){
		"no id":             func(c *consensus.Config) { c.ID = "" },
		"zero tick":         func(c *consensus.Config) { c.TickInterval = 0 },
		"max not twice min": func(c *consensus.Config) { c.ElectionTimeoutMax = 400 * time.Millisecond },
		"election too short": func(c *consensus.Config) {
			c.ElectionTimeoutMin, c.ElectionTimeoutMax = 100*time.Millisecond, 200*time.Millisecond
		},
		"peers without self": func(c *consensus.Config) { c.Peers = map[string]string{"n2": "x"} },
	}
	for name, mutate := range cases {
		c := base
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

var _ consensus.MessageHandler = (*consensus.Node)(nil)

func TestClusterIDIsDeterministicAndDistinct(t *testing.T) {
	a := map[string]string{"n1": "127.0.0.1:1", "n2": "127.0.0.1:2"}
	b := map[string]string{"n2": "127.0.0.1:2", "n1": "127.0.0.1:1"}
	c := map[string]string{"n1": "127.0.0.1:1", "n2": "127.0.0.1:3"}
	if consensus.ClusterID(a) != consensus.ClusterID(b) {
		t.Fatal("same peers, different cluster ids")
	}
	if consensus.ClusterID(a) == consensus.ClusterID(c) {
		t.Fatal("different peers, same cluster id")
	}
}

func TestClusterIDSurvivesRestart(t *testing.T) {
	st := storage.NewMemory()
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "a"}
	n1, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	id := n1.ClusterID()
	if id != consensus.ClusterID(cfg.Peers) {
		t.Fatalf("bootstrapped cluster id %x, want %x", id, consensus.ClusterID(cfg.Peers))
	}
	cn := newChanNet()
	tr := cn.attach(consensus.RaftID("n1"), n1)
	n1.Start(tr)
	deadline := time.Now().Add(10 * time.Second)
	for !n1.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	n1.Stop()
	tr.Close()
	cn.wg.Wait()
	// Restart with different peers: the stored id wins.
	cfg.Peers = map[string]string{"n1": "elsewhere"}
	n2, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	if n2.ClusterID() != id {
		t.Fatalf("restarted cluster id %x, want %x", n2.ClusterID(), id)
	}
}

// failingSave is log storage whose Save, once armed, holds until released
// and then fails.
type failingSave struct {
	consensus.LogStorage
	armed   chan struct{} // closed to arm
	held    chan struct{} // closed when an armed Save is held
	release chan struct{}
	once    sync.Once
}

func (s *failingSave) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	select {
	case <-s.armed:
		s.once.Do(func() { close(s.held) })
		<-s.release
		return errors.New("disk on fire")
	default:
		return s.LogStorage.Save(hs, ents, snap)
	}
}

// TestStopWhileSaveFails: a fatal storage error that reaches the raft loop
// while Stop is waiting for that loop must not deadlock the two (the loop
// used to wait for Stop's once to finish, and Stop for the loop).
func TestStopWhileSaveFails(t *testing.T) {
	st := &failingSave{LogStorage: storage.NewMemory(), armed: make(chan struct{}), held: make(chan struct{}), release: make(chan struct{})}
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "a"}
	node, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	cn := newChanNet()
	tr := cn.attach(consensus.RaftID("n1"), node)
	node.Start(tr)
	defer func() { tr.Close(); cn.wg.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The node elects itself a moment after Start: until then a proposal
	// fails with ErrNoLeader.
	for {
		_, err := node.Propose(ctx, []byte("first"))
		if err == nil {
			break
		}
		if !errors.Is(err, consensus.ErrNoLeader) || ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	close(st.armed)
	proposed := make(chan error, 1)
	go func() {
		_, err := node.Propose(ctx, []byte("second"))
		proposed <- err
	}()
	select {
	case <-st.held:
	case <-ctx.Done():
		t.Fatal("the armed Save never ran")
	}
	stopped := make(chan struct{})
	go func() { node.Stop(); close(stopped) }()
	select {
	case <-node.Done():
	case <-ctx.Done():
		t.Fatal("Stop did not start")
	}
	close(st.release)
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop deadlocked with the raft loop's fatal error")
	}
	if err := <-proposed; err == nil {
		t.Fatal("a proposal whose Save failed was acknowledged")
	}
	if err := node.Err(); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Err() = %v, want the Save error", err)
	}
}

// TestStopAfterFatalErrorWaits: after a fatal storage error stopped the
// node, Stop returns only once every loop has ended (goleak checks that
// none is left behind when the test binary ends).
func TestStopAfterFatalErrorWaits(t *testing.T) {
	st := &failingSave{LogStorage: storage.NewMemory(), armed: make(chan struct{}), held: make(chan struct{}), release: make(chan struct{})}
	close(st.release)
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "a"}
	node, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	cn := newChanNet()
	tr := cn.attach(consensus.RaftID("n1"), node)
	close(st.armed)
	node.Start(tr)
	select {
	case <-node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a failing Save did not stop the node")
	}
	node.Stop()
	tr.Close()
	cn.wg.Wait()
	if node.Err() == nil {
		t.Fatal("Err() is nil after a fatal storage error")
	}
}

// TestRecoveredMembers checks that a node restarted with other peers
// reports the membership its storage holds, and a new node reports none.
func TestRecoveredMembers(t *testing.T) {
	st := storage.NewMemory()
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": "127.0.0.1:1"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n1, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := n1.RecoveredMembers(ctx); ok || err != nil {
		t.Fatalf("new node: RecoveredMembers ok=%v err=%v, want false, nil", ok, err)
	}
	cn := newChanNet()
	tr := cn.attach(consensus.RaftID("n1"), n1)
	n1.Start(tr)
	if _, err := n1.Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	n1.Stop()
	tr.Close()

	cfg.Peers = map[string]string{"n1": "127.0.0.1:2"}
	n2, err := consensus.NewNode(cfg, st, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	tr = cn.attach(consensus.RaftID("n1"), n2)
	n2.Start(tr)
	defer func() {
		n2.Stop()
		tr.Close()
		cn.wg.Wait()
	}()
	members, ok, err := n2.RecoveredMembers(ctx)
	if !ok || err != nil {
		t.Fatalf("restarted node: RecoveredMembers ok=%v err=%v", ok, err)
	}
	if len(members) != 1 || members[0].ID != "n1" || members[0].PeerAddr != "127.0.0.1:1" {
		t.Fatalf("recovered members %+v, want n1 at 127.0.0.1:1", members)
	}
}

// countingObserver counts CommandApplied calls.
type countingObserver struct{ applied atomic.Int64 }

func (o *countingObserver) StorageSaved(time.Duration)           {}
func (o *countingObserver) CommandApplied(time.Duration)         { o.applied.Add(1) }
func (o *countingObserver) SnapshotDone(consensus.SnapshotEvent) {}

// TestObserverSeesApplyBeforeTheCaller: a command's apply is observed
// before its proposer hears the result, so metrics read after an
// acknowledged write count it (a server shutting its metrics down right
// after a write lost the last apply: TestOTLPExport, once under load).
func TestObserverSeesApplyBeforeTheCaller(t *testing.T) {
	obs := &countingObserver{}
	nodes, _ := startClusterWith(t, 1, func(c *consensus.Config) { c.Observer = obs })
	tn := nodes["n1"]
	waitLeader(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 200 {
		if _, err := tn.node.Propose(ctx, fmt.Appendf(nil, "c%d", i)); err != nil {
			t.Fatal(err)
		}
		if got := obs.applied.Load(); got < int64(i+1) {
			t.Fatalf("after %d acknowledged proposals the observer saw %d applies", i+1, got)
		}
	}
}
