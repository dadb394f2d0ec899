package consensus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/storage"
)

// The embedder's seams (issue 19, section 4), through the public API only.

func (c *snapCluster) follower(leader string) string {
	for _, name := range slices.Sorted(maps.Keys(c.nodes)) {
		if name != leader {
			return name
		}
	}
	return ""
}

// cmdAt returns the command name's state machine applied at index.
func (c *snapCluster) cmdAt(name string, index uint64) (string, bool) {
	sm := c.nodes[name].sm
	sm.mu.Lock()
	defer sm.mu.Unlock()
	cmd, ok := sm.cmds[index]
	return cmd, ok
}

// Submit's handle tells where the entry was appended, on the leader and on
// a follower, and Wait gives the position it was applied at with Apply's
// result; every node applied that command at that index.
func TestSubmitReportsWhereItsEntryIs(t *testing.T) {
	c := newMemnetSnapCluster(t)
	leader := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, name := range []string{leader, c.follower(leader)} {
		cmd := fmt.Sprintf("submit%d=%s", i, name)
		p, err := c.nodes[name].node.Submit(ctx, []byte(cmd))
		if err != nil {
			t.Fatalf("%s: Submit: %v", name, err)
		}
		select {
		case <-p.Appended():
		case <-ctx.Done():
			t.Fatalf("%s: never appended", name)
		}
		appended := p.Position()
		a, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("%s: Wait: %v", name, err)
		}
		select {
		case <-p.Done():
		default:
			t.Fatalf("%s: Done not closed after Wait returned", name)
		}
		term, _ := c.nodes[leader].node.Leading()
		if a.Position != appended || a.Index == 0 || a.Term != term {
			t.Fatalf("%s: applied at %+v, appended at %+v, leader's term %d", name, a.Position, appended, term)
		}
		if _, ok := a.Result.(uint64); !ok {
			t.Fatalf("%s: result %v (%T), want the tally's count", name, a.Result, a.Result)
		}
		for other := range c.nodes {
			testwait.For(t, 10*time.Second, other+" to apply index "+fmt.Sprint(a.Index), func() bool {
				_, ok := c.cmdAt(other, a.Index)
				return ok
			})
			if got, _ := c.cmdAt(other, a.Index); got != cmd {
				t.Fatalf("%s applied %q at index %d, want %q", other, got, a.Index, cmd)
			}
		}
	}
}

// A proposal bound to a term (InTerm) is refused unless its node leads in
// that term, is applied when it does, and, proposed by a leader that was
// cut off and replaced before its entry committed, fails with
// ErrLeadershipLost and is applied nowhere, not even after the old leader
// rejoins (where a plain proposal would be proposed to the new leader).
func TestInTermProposalIsFenced(t *testing.T) {
	c := newMemnetSnapCluster(t)
	leader := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	term, ok := c.nodes[leader].node.Leading()
	if !ok {
		t.Fatalf("%s: Leading() = %d, false right after leading", leader, term)
	}
	follower := c.follower(leader)
	if _, ok := c.nodes[follower].node.Leading(); ok {
		t.Fatalf("follower %s says it leads", follower)
	}
	if _, err := c.nodes[follower].node.Submit(ctx, []byte("x=1"), consensus.InTerm(term)); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("follower's InTerm submit: %v, want ErrNotLeader", err)
	}
	if _, err := c.nodes[leader].node.Submit(ctx, []byte("x=1"), consensus.InTerm(term+1)); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("leader's submit for a term it does not lead: %v, want ErrNotLeader", err)
	}
	p, err := c.nodes[leader].node.Submit(ctx, []byte("fenced=1"), consensus.InTerm(term))
	if err != nil {
		t.Fatal(err)
	}
	if a, err := p.Wait(ctx); err != nil || a.Term != term {
		t.Fatalf("InTerm proposal while leading: %+v, %v; want applied in term %d", a, err, term)
	}

	// Cut the leader off and propose in its term: the entry is appended
	// there and nowhere else. A loaded machine may let it step down first
	// (check quorum); then try again with the next leader.
	var lost *consensus.Proposal
	old := leader
	for attempt := 0; lost == nil; attempt++ {
		if attempt == 5 {
			t.Fatal("the isolated leader stepped down before every proposal")
		}
		c.isolate(old)
		p, err := c.nodes[old].node.Submit(ctx, []byte("fenced=2"), consensus.InTerm(term))
		switch {
		case err == nil:
			lost = p
		case errors.Is(err, consensus.ErrNotLeader):
			c.heal()
			old = c.leader()
			if term, _ = c.nodes[old].node.Leading(); term == 0 {
				t.Fatal("no term")
			}
		default:
			t.Fatal(err)
		}
	}
	select {
	case <-lost.Appended():
	case <-ctx.Done():
		t.Fatal("the isolated leader never appended its proposal")
	}
	if pos := lost.Position(); pos.Term != term {
		t.Fatalf("appended at %+v, want term %d", pos, term)
	}
	// The others elect a new leader and write past the lost entry.
	var newLeader string
	testwait.For(t, 10*time.Second, "a new leader among the others", func() bool {
		for name, n := range c.nodes {
			if name != old && n.node.IsLeader() {
				newLeader = name
				return true
			}
		}
		return false
	})
	if _, err := c.nodes[newLeader].node.Propose(ctx, []byte("after=1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost.Done():
		t.Fatal("outcome decided while the old leader was still cut off")
	default:
	}
	c.heal()
	if _, err := lost.Wait(ctx); !errors.Is(err, consensus.ErrLeadershipLost) {
		t.Fatalf("the deposed leader's InTerm proposal: %v, want ErrLeadershipLost", err)
	}
	// Everyone converges without it.
	if _, err := c.nodes[newLeader].node.Propose(ctx, []byte("last=1")); err != nil {
		t.Fatal(err)
	}
	for name := range c.nodes {
		testwait.For(t, 10*time.Second, name+" to apply the last write", func() bool {
			vals, _ := c.nodes[name].sm.state()
			return vals["last"] == "1"
		})
		if vals, _ := c.nodes[name].sm.state(); vals["fenced"] != "1" {
			t.Fatalf("%s: fenced=%q, want the first InTerm write only", name, vals["fenced"])
		}
	}
}

// Snapshot(ctx) takes a snapshot whatever the thresholds, tells the state
// machine and the caller its position, compacts the log, and the state
// machine's part of it can be read apart from the node's: it is exactly
// what the state machine wrote.
func TestSnapshotOnDemand(t *testing.T) {
	cfg := snapConfig("solo", map[string]string{"solo": "solo"})
	cfg.SnapshotThreshold = 0 // no snapshot but on demand
	cfg.SnapshotCatchUpEntries = 2
	st := storage.NewMemory()
	sm := newTally()
	node, err := consensus.NewNode(cfg, st, sm)
	if err != nil {
		t.Fatal(err)
	}
	node.Start(alone{})
	defer node.Stop()
	testwait.For(t, 5*time.Second, "leadership", node.IsLeader)
	sub := node.SubscribeSnapshots(4)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := node.Propose(ctx, fmt.Appendf(nil, "k%d=v%d", i%3, i)); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := node.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	term, _ := node.Leading()
	if pos.Index != node.AppliedIndex() || pos.Term != term {
		t.Fatalf("snapshot at %+v, applied index %d, term %d", pos, node.AppliedIndex(), term)
	}
	sm.mu.Lock()
	snapAt := sm.snapAt
	sm.mu.Unlock()
	if snapAt != pos {
		t.Fatalf("the state machine was told %+v, the snapshot is at %+v", snapAt, pos)
	}
	if first, _ := st.FirstIndex(); first != pos.Index-cfg.SnapshotCatchUpEntries+1 {
		t.Fatalf("log starts at %d after a snapshot at %d keeping %d entries", first, pos.Index, cfg.SnapshotCatchUpEntries)
	}
	var ev consensus.SnapshotEvent
	select {
	case ev = <-sub.C():
	case <-ctx.Done():
		t.Fatal("no snapshot event")
	}
	// The state machine's part, read two ways, is what it wrote.
	view, err := sm.Snapshot(pos)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := view.WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	r, size, err := node.OpenStateSnapshot(pos)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(got, want.Bytes()) || size != int64(len(got)) {
		t.Fatalf("OpenStateSnapshot: %d bytes (size %d, err %v), want %d: %q", len(got), size, err, want.Len(), got)
	}
	if ev.Type != consensus.SnapshotCreated || ev.Index != pos.Index || ev.StateBytes != size || ev.Bytes <= size {
		t.Fatalf("event %+v; state machine's part is %d bytes", ev, size)
	}
	whole, wholeSize, err := node.OpenSnapshot(pos.Index, pos.Term)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	part, err := consensus.StateMachineData(whole)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(part); err != nil || !bytes.Equal(b, want.Bytes()) || wholeSize != ev.Bytes {
		t.Fatalf("StateMachineData: %q, %v (whole %d bytes, event says %d)", b, err, wholeSize, ev.Bytes)
	}
	// Nothing applied since: the same snapshot again.
	if again, err := node.Snapshot(ctx); err != nil || again != pos {
		t.Fatalf("second Snapshot = %+v, %v; want %+v", again, err, pos)
	}
	if _, err := consensus.StateMachineData(strings.NewReader("not a snapshot at all")); !errors.Is(err, consensus.ErrBadSnapshot) {
		t.Fatalf("StateMachineData of garbage: %v, want ErrBadSnapshot", err)
	}
}

// A node whose state machine cannot snapshot says so.
func TestSnapshotOnDemandNeedsSnapshotter(t *testing.T) {
	cfg := consensus.DefaultConfig("solo")
	cfg.Peers = map[string]string{"solo": "solo"}
	node, err := consensus.NewNode(cfg, storage.NewMemory(), &counter{})
	if err != nil {
		t.Fatal(err)
	}
	node.Start(alone{})
	defer node.Stop()
	if _, err := node.Snapshot(context.Background()); !errors.Is(err, consensus.ErrCannotSnapshot) {
		t.Fatalf("Snapshot: %v, want ErrCannotSnapshot", err)
	}
}
