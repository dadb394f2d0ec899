package consensus_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/storage"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// openDiskNode opens the node name over dir's Pebble store and snapshot
// files, as consensus serve lays them out.
func openDiskNode(t *testing.T, cfg consensus.Config, dir string, sm consensus.StateMachine) (*consensus.Node, *storage.Pebble) {
	t.Helper()
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	cfg.Snapshots = snaps
	n, err := consensus.NewNode(cfg, st, sm)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return n, st
}

// tailEntry is a normal entry as a node proposes it: the format byte,
// the proposer and sequence numbers, the command.
func tailEntry(index, term uint64, cmd string) *raftpb.Entry {
	data := make([]byte, 17, 17+len(cmd))
	data[0] = 1
	binary.BigEndian.PutUint64(data[1:9], 42)
	binary.BigEndian.PutUint64(data[9:17], index)
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum(), Data: append(data, cmd...)}
}

// TestRecovery: a node's storage, read offline, gives the state as of its
// commit index (snapshot plus replayed entries), its members and the
// uncommitted tail described; the snapshot WriteSnapshot writes, seeded
// with storage.WriteSeed, starts a one-member cluster with that state
// which takes writes. Storage with nothing committed, and a node that is
// not a member, are refused with typed errors.
func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	cfg := snapConfig("n1", map[string]string{"n1": "127.0.0.1:1"})
	cfg.SnapshotThreshold, cfg.SnapshotCatchUpEntries = 8, 2
	sm := newTally()
	node, st := openDiskNode(t, cfg, dir, sm)
	node.Start(alone{})
	testwait.For(t, 5*time.Second, "leadership", node.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := node.Propose(ctx, fmt.Appendf(nil, "k%d=v%d", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	// A learner that never answers: the one voter still commits.
	if _, err := node.AddMember(ctx, consensus.Member{ID: "n2", PeerAddr: "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Propose(ctx, []byte("last=1")); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "a snapshot", func() bool { return node.Status().SnapshotIndex > 0 })
	node.Stop()
	commit := node.AppliedIndex()
	clusterID := node.ClusterID()

	// Entries appended but never committed: two commands, an empty entry,
	// a membership change.
	term, err := st.Term(commit)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := proto.Marshal(&raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(consensus.RaftID("n9"))}},
		Context: []byte(`{"members":[{"name":"n9","peerAddr":"127.0.0.1:9"}]}`)})
	tail := []*raftpb.Entry{
		tailEntry(commit+1, term, "lost1=x"),
		tailEntry(commit+2, term, "lost2=y"),
		{Index: proto.Uint64(commit + 3), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum()},
		{Index: proto.Uint64(commit + 4), Term: proto.Uint64(term), Type: raftpb.EntryConfChangeV2.Enum(), Data: cc},
	}
	if err := st.Save(nil, tail, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	cfg = snapConfig("n1", nil)
	st, err = storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Snapshots = snaps
	rsm := newTally()
	rec, err := consensus.ReadRecovery(cfg, st, rsm)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Commit != (consensus.Position{Index: commit, Term: term}) || rec.Last.Index != commit+4 || rec.ClusterID != clusterID {
		t.Fatalf("commit %+v last %+v cluster %x; want commit %d term %d, last %d, cluster %x", rec.Commit, rec.Last, rec.ClusterID, commit, term, commit+4, clusterID)
	}
	if rec.Snapshot == 0 || rec.Snapshot >= commit {
		t.Fatalf("snapshot at %d: want one below the commit index %d, so entries are replayed", rec.Snapshot, commit)
	}
	if len(rec.Members) != 2 || rec.Members[0].ID != "n1" || rec.Members[1].ID != "n2" {
		t.Fatalf("members %+v, want n1 and n2", rec.Members)
	}
	vals, _ := rsm.state()
	if len(vals) != 21 || vals["k19"] != "v19" || vals["last"] != "1" || vals["lost1"] != "" {
		t.Fatalf("replayed state %v: want the 21 committed keys and no tail", vals)
	}
	want := []consensus.TailEntry{
		{Index: commit + 1, Term: term, Command: []byte("lost1=x")},
		{Index: commit + 2, Term: term, Command: []byte("lost2=y")},
		{Index: commit + 3, Term: term},
		{Index: commit + 4, Term: term, Change: "membership: add n9 (learner)"},
	}
	if len(rec.Tail) != len(want) {
		t.Fatalf("tail %+v, want %+v", rec.Tail, want)
	}
	for i, e := range rec.Tail {
		if e.Index != want[i].Index || e.Term != want[i].Term || !bytes.Equal(e.Command, want[i].Command) || e.Change != want[i].Change || e.Unknown {
			t.Errorf("tail[%d] = %+v, want %+v", i, e, want[i])
		}
	}
	if _, err := rec.WriteSnapshot(io.Discard, consensus.Member{ID: "n2", PeerAddr: "x:1"}); !errors.Is(err, consensus.ErrInvalidMember) {
		t.Fatalf("WriteSnapshot for another member: %v, want ErrInvalidMember", err)
	}
	var snap bytes.Buffer
	if _, err := rec.WriteSnapshot(&snap, consensus.Member{ID: "n1", PeerAddr: "127.0.0.1:7"}); err != nil {
		t.Fatal(err)
	}
	rec.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The recovered directory: a one-member cluster with a new id.
	newDir := t.TempDir()
	const newID = 0xfeed
	err = storage.WriteSeed(newDir, storage.Seed{Index: commit, Term: term, ConfState: consensus.RecoveryConfState("n1"), ClusterID: newID,
		WriteData: func(w io.Writer) error { _, err := w.Write(snap.Bytes()); return err }})
	if err != nil {
		t.Fatal(err)
	}
	cfg = snapConfig("n1", nil)
	nsm := newTally()
	node, st = openDiskNode(t, cfg, newDir, nsm)
	defer st.Close()
	node.Start(alone{})
	defer node.Stop()
	testwait.For(t, 5*time.Second, "the recovered node to lead alone", node.IsLeader)
	if node.ClusterID() != newID {
		t.Fatalf("cluster id %x, want %x", node.ClusterID(), newID)
	}
	if m := node.Members(); len(m) != 1 || m[0].ID != "n1" || m[0].PeerAddr != "127.0.0.1:7" || !m[0].Voter {
		t.Fatalf("members %+v, want n1 alone, a voter at 127.0.0.1:7", m)
	}
	if _, err := node.Propose(ctx, []byte("after=1")); err != nil {
		t.Fatal(err)
	}
	vals, _ = nsm.state()
	if len(vals) != 22 || vals["k0"] != "v0" || vals["after"] != "1" {
		t.Fatalf("recovered state %v", vals)
	}

	// KeepTail: the entries past the commit index are applied too.
	cfg = snapConfig("n1", nil)
	st3, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Snapshots, _ = storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	ksm := newTally()
	rec, err = consensus.ReadRecovery(cfg, st3, ksm)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Start != rec.Commit {
		t.Fatalf("start %+v before KeepTail, want the commit %+v", rec.Start, rec.Commit)
	}
	if err := rec.KeepTail(); err != nil {
		t.Fatal(err)
	}
	vals, _ = ksm.state()
	if rec.Start != rec.Last || !rec.TailKept || len(vals) != 23 || vals["lost2"] != "y" || len(rec.Members) != 3 || rec.Members[2].ID != "n9" || rec.Members[2].Voter {
		t.Fatalf("after KeepTail: start %+v (last %+v), state %v, members %+v", rec.Start, rec.Last, vals, rec.Members)
	}
	rec.Close()
	st3.Close()

	// Refusals.
	cfg = snapConfig("n7", nil)
	st2, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	cfg.Snapshots, _ = storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	if _, err := consensus.ReadRecovery(cfg, st2, newTally()); !errors.Is(err, consensus.ErrNotAMember) {
		t.Fatalf("ReadRecovery as n7: %v, want ErrNotAMember", err)
	}
	if _, err := consensus.ReadRecovery(snapConfig("n1", nil), storage.NewMemory(), newTally()); !errors.Is(err, consensus.ErrNothingToRecover) {
		t.Fatalf("ReadRecovery of empty storage: %v, want ErrNothingToRecover", err)
	}
}
