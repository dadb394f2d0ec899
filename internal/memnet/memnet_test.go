package memnet

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a MessageHandler that records what it is given.
type recorder struct {
	mu          sync.Mutex
	delivered   []*raftpb.Message
	at          []time.Time
	unreachable []uint64
	snapshots   []raft.SnapshotStatus
}

func (r *recorder) Deliver(msgs []*raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, m := range msgs {
		r.delivered = append(r.delivered, m)
		r.at = append(r.at, now)
	}
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable = append(r.unreachable, id)
}

func (r *recorder) ReportSnapshot(_ uint64, s raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snapshots = append(r.snapshots, s)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.delivered)
}

// indexes returns the Index field of every delivered message, in order.
func (r *recorder) indexes() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.delivered))
	for i, m := range r.delivered {
		out[i] = m.GetIndex()
	}
	return out
}

func msg(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type:  raftpb.MsgApp.Enum(),
		From:  proto.Uint64(from),
		To:    proto.Uint64(to),
		Index: proto.Uint64(index),
	}
}

// settle waits until the network has nothing left in flight.
func settle(t *testing.T, n *Network) Stats {
	t.Helper()
	testwait.For(t, 5*time.Second, "network settles", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, tr := range n.nodes {
			if len(tr.queue) > 0 {
				return false
			}
		}
		return true
	})
	return n.Stats()
}

type testNet struct {
	net  *Network
	tr   map[uint64]*Transport
	recs map[uint64]*recorder
}

func newTestNet(t *testing.T, cfg Config, ids ...uint64) *testNet {
	t.Helper()
	tn := &testNet{net: New(cfg), tr: map[uint64]*Transport{}, recs: map[uint64]*recorder{}}
	for _, id := range ids {
		r := &recorder{}
		tr, err := tn.net.Attach(id, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, peer := range ids {
			if peer != id {
				tr.AddPeer(peer, fmt.Sprint(peer), "")
			}
		}
		tn.tr[id], tn.recs[id] = tr, r
	}
	t.Cleanup(tn.net.Close)
	return tn
}

func (tn *testNet) send(from, to uint64, n int) {
	for i := range n {
		tn.tr[from].Send([]*raftpb.Message{msg(from, to, uint64(i))})
	}
}

func TestDeliversInOrderAndClones(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 1}, 1, 2)
	m := msg(1, 2, 7)
	tn.tr[1].Send([]*raftpb.Message{m})
	m.Index = proto.Uint64(99) // raft may reuse its messages after Send
	tn.send(1, 2, 100)
	testwait.For(t, 5*time.Second, "delivery", func() bool { return tn.recs[2].count() == 101 })
	got := tn.recs[2].indexes()
	if got[0] != 7 {
		t.Fatalf("first delivered index %d, want the 7 it had at Send", got[0])
	}
	if !slices.IsSorted(got[1:]) {
		t.Fatalf("without delays, messages were reordered: %v", got)
	}
	st := tn.net.Stats()
	if st.Sent != 101 || st.Delivered != 101 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDropProbability(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 2}, 1, 2)
	if err := tn.net.SetRule(1, 2, Rule{Drop: 0.3}); err != nil {
		t.Fatal(err)
	}
	tn.send(1, 2, 2000)
	tn.send(2, 1, 100) // the reverse link has no rule
	st := settle(t, tn.net)
	if st.Dropped < 450 || st.Dropped > 750 {
		t.Fatalf("dropped %d of 2000 at p=0.3", st.Dropped)
	}
	if got := tn.recs[2].count(); uint64(got) != 2000-st.Dropped {
		t.Fatalf("delivered %d, dropped %d, of 2000", got, st.Dropped)
	}
	if got := tn.recs[1].count(); got != 100 {
		t.Fatalf("reverse link delivered %d of 100", got)
	}
	if len(tn.recs[1].unreachable) != 0 {
		t.Fatalf("silent drops were reported unreachable: %v", tn.recs[1].unreachable)
	}
}

func TestSameSeedSameFaults(t *testing.T) {
	run := func(seed uint64) Stats {
		tn := newTestNet(t, Config{Seed: seed}, 1, 2)
		if err := tn.net.SetDefaultRule(Rule{Drop: 0.5, Duplicate: 0.5}); err != nil {
			t.Fatal(err)
		}
		tn.send(1, 2, 500)
		st := settle(t, tn.net)
		tn.net.Close()
		return st
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Fatalf("same seed, different faults: %+v vs %+v", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, identical faults: %+v", a)
	}
}

func TestDuplicate(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 3}, 1, 2)
	if err := tn.net.SetDefaultRule(Rule{Duplicate: 1}); err != nil {
		t.Fatal(err)
	}
	tn.send(1, 2, 50)
	testwait.For(t, 5*time.Second, "duplicates", func() bool { return tn.recs[2].count() == 100 })
	got := tn.recs[2].indexes()
	for i := range 50 {
		if n := len(slices.DeleteFunc(slices.Clone(got), func(x uint64) bool { return x != uint64(i) })); n != 2 {
			t.Fatalf("index %d delivered %d times", i, n)
		}
	}
	// Each copy is a message of its own.
	tn.recs[2].mu.Lock()
	defer tn.recs[2].mu.Unlock()
	if tn.recs[2].delivered[0] == tn.recs[2].delivered[1] {
		t.Fatal("a duplicate shares the original's message")
	}
}

func TestDelayAndReorder(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 4}, 1, 2)
	r := Rule{MinDelay: 5 * time.Millisecond, MaxDelay: 30 * time.Millisecond}
	if err := tn.net.SetRule(1, 2, r); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tn.send(1, 2, 200)
	testwait.For(t, 5*time.Second, "delayed delivery", func() bool { return tn.recs[2].count() == 200 })
	rec := tn.recs[2]
	rec.mu.Lock()
	first := slices.MinFunc(rec.at, func(a, b time.Time) int { return a.Compare(b) })
	rec.mu.Unlock()
	if first.Sub(start) < r.MinDelay {
		t.Fatalf("a message arrived after %v, before the minimum delay %v", first.Sub(start), r.MinDelay)
	}
	if slices.IsSorted(rec.indexes()) {
		t.Fatal("random delays did not reorder 200 messages")
	}
	if st := tn.net.Stats(); st.Delayed != 200 {
		t.Fatalf("delayed %d, want 200", st.Delayed)
	}
}

func TestCutsPartitionsIsolationHeal(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 5}, 1, 2, 3)
	// reach reports which links deliver a fresh message.
	reach := func() map[[2]uint64]bool {
		before := map[uint64]int{}
		for id, r := range tn.recs {
			before[id] = r.count()
		}
		for from := uint64(1); from <= 3; from++ {
			for to := uint64(1); to <= 3; to++ {
				if from != to {
					tn.tr[from].Send([]*raftpb.Message{msg(from, to, 1000+from)})
				}
			}
		}
		settle(t, tn.net)
		out := map[[2]uint64]bool{}
		for to, r := range tn.recs {
			r.mu.Lock()
			for _, m := range r.delivered[before[to]:] {
				out[[2]uint64{m.GetFrom(), to}] = true
			}
			r.mu.Unlock()
		}
		return out
	}
	all := func(except ...[2]uint64) map[[2]uint64]bool {
		out := map[[2]uint64]bool{}
		for from := uint64(1); from <= 3; from++ {
			for to := uint64(1); to <= 3; to++ {
				if from != to && !slices.Contains(except, [2]uint64{from, to}) {
					out[[2]uint64{from, to}] = true
				}
			}
		}
		return out
	}
	check := func(what string, want map[[2]uint64]bool, wantPeers map[uint64][]uint64) {
		t.Helper()
		if got := reach(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: links delivering %v, want %v", what, got, want)
		}
		for id, peers := range wantPeers {
			if got := tn.tr[id].ConnectedPeers(); !slices.Equal(got, peers) {
				t.Fatalf("%s: node %d connected peers %v, want %v", what, id, got, peers)
			}
		}
	}
	check("start", all(), map[uint64][]uint64{1: {2, 3}})

	tn.net.Cut(1, 2)
	check("one-way cut 1->2", all([2]uint64{1, 2}), map[uint64][]uint64{1: {3}, 2: {3}})
	tn.net.Heal()
	tn.net.Disconnect(1, 2)
	check("two-way cut 1-2", all([2]uint64{1, 2}, [2]uint64{2, 1}), nil)
	tn.net.Heal()
	tn.net.Isolate(3)
	check("isolate 3", map[[2]uint64]bool{{1, 2}: true, {2, 1}: true}, map[uint64][]uint64{3: nil})
	tn.net.Heal()
	tn.net.Partition([]uint64{1}, []uint64{2, 3})
	check("partition {1} {2,3}", map[[2]uint64]bool{{2, 3}: true, {3, 2}: true}, map[uint64][]uint64{2: {3}})
	tn.net.Partition([]uint64{1})
	check("partition {1} and the rest", map[[2]uint64]bool{{2, 3}: true, {3, 2}: true}, nil)
	tn.net.Heal()
	check("healed", all(), map[uint64][]uint64{1: {2, 3}})
	if st := tn.net.Stats(); st.Cut == 0 {
		t.Fatalf("no message counted as cut: %+v", st)
	}
	for id, r := range tn.recs {
		if len(r.unreachable) != 0 {
			t.Fatalf("node %d was told of unreachable peers %v for silent cuts", id, r.unreachable)
		}
	}
}

func TestCutDropsMessagesInFlight(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 6}, 1, 2)
	if err := tn.net.SetRule(1, 2, Rule{MinDelay: time.Hour, MaxDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	tn.send(1, 2, 10)
	tn.net.Isolate(2)
	tn.net.ClearRules()
	// Messages already queued keep their due time: still an hour away.
	tn.net.mu.Lock()
	queued := len(tn.tr[2].queue)
	tn.net.mu.Unlock()
	if queued != 10 {
		t.Fatalf("%d queued, want 10", queued)
	}
	tn.tr[2].Close()
	if st := tn.net.Stats(); st.Unreachable != 10 || tn.recs[2].count() != 0 {
		t.Fatalf("closing with 10 queued: stats %+v, delivered %d", st, tn.recs[2].count())
	}
}

func TestQueueFullAndUnattached(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 7, QueueLimit: 10}, 1, 2)
	if err := tn.net.SetRule(1, 2, Rule{MinDelay: time.Hour, MaxDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	tn.send(1, 2, 15)
	st := tn.net.Stats()
	if st.QueueFull != 5 || len(tn.recs[1].unreachable) != 5 {
		t.Fatalf("15 sent to a queue of 10: stats %+v, unreachable reports %v", st, tn.recs[1].unreachable)
	}
	// A node that is not attached refuses the connection; a MsgSnap
	// also fails as a snapshot.
	snap := msg(1, 9, 1)
	snap.Type = raftpb.MsgSnap.Enum()
	tn.tr[1].Send([]*raftpb.Message{msg(1, 9, 1), snap})
	if got := tn.recs[1].unreachable[5:]; !slices.Equal(got, []uint64{9, 9}) {
		t.Fatalf("unreachable reports %v, want [9 9]", got)
	}
	if !slices.Equal(tn.recs[1].snapshots, []raft.SnapshotStatus{raft.SnapshotFailure}) {
		t.Fatalf("snapshot reports %v", tn.recs[1].snapshots)
	}
}

func TestSnapshotReports(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 8}, 1, 2)
	snap := msg(1, 2, 1)
	snap.Type = raftpb.MsgSnap.Enum()
	tn.tr[1].Send([]*raftpb.Message{snap})
	testwait.For(t, 5*time.Second, "snapshot delivered and reported", func() bool {
		tn.recs[1].mu.Lock()
		defer tn.recs[1].mu.Unlock()
		return slices.Equal(tn.recs[1].snapshots, []raft.SnapshotStatus{raft.SnapshotFinish})
	})
	tn.net.Isolate(2)
	tn.tr[1].Send([]*raftpb.Message{snap})
	tn.recs[1].mu.Lock()
	defer tn.recs[1].mu.Unlock()
	if !slices.Equal(tn.recs[1].snapshots, []raft.SnapshotStatus{raft.SnapshotFinish, raft.SnapshotFailure}) {
		t.Fatalf("snapshot reports %v", tn.recs[1].snapshots)
	}
}

func TestCloseAndReattach(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 9}, 1, 2)
	if _, err := tn.net.Attach(2, &recorder{}); err == nil {
		t.Fatal("attached node 2 twice")
	}
	if err := tn.tr[2].Close(); err != nil {
		t.Fatal(err)
	}
	if err := tn.tr[2].Close(); err != nil {
		t.Fatal(err)
	}
	tn.send(1, 2, 3)
	if got := len(tn.recs[1].unreachable); got != 3 {
		t.Fatalf("%d unreachable reports for a closed node, want 3", got)
	}
	tn.tr[2].Send([]*raftpb.Message{msg(2, 1, 1)}) // a closed transport sends nothing
	r := &recorder{}
	tr, err := tn.net.Attach(2, r)
	if err != nil {
		t.Fatal(err)
	}
	tn.tr[2], tn.recs[2] = tr, r
	tn.send(1, 2, 3)
	testwait.For(t, 5*time.Second, "delivery after reattach", func() bool { return r.count() == 3 })
	if tn.recs[1].count() != 0 {
		t.Fatal("a closed transport delivered a message")
	}
	tn.net.Close()
	if _, err := tn.net.Attach(3, &recorder{}); err == nil {
		t.Fatal("attached to a closed network")
	}
}

func TestRuleValidate(t *testing.T) {
	bad := []Rule{{Drop: -0.1}, {Drop: 1.1}, {Duplicate: 2}, {MinDelay: -1}, {MinDelay: 2, MaxDelay: 1}}
	n := New(Config{})
	for _, r := range bad {
		if err := n.SetDefaultRule(r); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
	if err := n.SetRule(1, 2, Rule{Drop: 1, Duplicate: 1, MinDelay: 1, MaxDelay: 1}); err != nil {
		t.Error(err)
	}
}

func TestConcurrentUse(t *testing.T) {
	tn := newTestNet(t, Config{Seed: 10, QueueLimit: 1 << 16}, 1, 2, 3)
	if err := tn.net.SetDefaultRule(Rule{Drop: 0.1, Duplicate: 0.1, MaxDelay: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for from := uint64(1); from <= 3; from++ {
		wg.Go(func() {
			for i := range 300 {
				tn.tr[from].Send([]*raftpb.Message{msg(from, 1+uint64(i)%3, uint64(i))})
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tn.net.Partition([]uint64{1}, []uint64{2, 3})
			tn.net.Heal()
			tn.tr[1].ConnectedPeers()
		}
	})
	wg.Wait()
	st := settle(t, tn.net)
	if st.Sent != 900 || st.Delivered+st.Dropped+st.Cut+st.QueueFull+st.Unreachable != st.Sent+st.Duplicated {
		t.Fatalf("every message and copy must be delivered or counted lost: %+v", st)
	}
}
