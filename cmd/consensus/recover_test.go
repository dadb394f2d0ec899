package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
)

// kvCommand encodes a put (value set) or delete of key as the kv state
// machine's log format has it.
func kvCommand(t *testing.T, op uint8, key, value string) []byte {
	t.Helper()
	c := map[string]any{"o": op, "k": key}
	if value != "" {
		c["v"] = []byte(value)
	}
	b, err := msgpack.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logEntry is a normal entry as a node proposes cmd: the format byte,
// the proposer and sequence numbers, then cmd (nil: a leader's empty
// entry).
func logEntry(index, term uint64, cmd []byte) *raftpb.Entry {
	e := &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum()}
	if cmd != nil {
		data := make([]byte, 17, 17+len(cmd))
		data[0] = 1
		binary.BigEndian.PutUint64(data[1:9], 7)
		binary.BigEndian.PutUint64(data[9:17], index)
		e.Data = append(data, cmd...)
	}
	return e
}

// oldClusterID is the cluster id of survivorDir's directory.
const oldClusterID = 0xc0ffee

// survivorDir writes, in dir, the data directory of n1 of a 3-node
// cluster (n1, n2, n3): a snapshot at index 10 (term 1) holding k/a and
// k/b, entries 11-12 committed (put k/c, delete k/a), and 13-15 appended
// but not known committed (put k/d, delete k/b, a new leader's empty
// entry), term 2; its hard state is at term 3 (an election it lost).
func survivorDir(t *testing.T, dir string) {
	t.Helper()
	sm := kv.NewMachine()
	sm.Apply(1, kvCommand(t, 1, "k/a", `"a"`))
	sm.Apply(2, kvCommand(t, 1, "k/b", `"b"`))
	peers := map[string]string{"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003"}
	err := storage.WriteSeed(dir, storage.Seed{Index: 10, Term: 1, ConfState: consensus.SeedConfState(peers), ClusterID: oldClusterID,
		WriteData: func(w io.Writer) error {
			view, err := sm.Snapshot(consensus.Position{Index: 10, Term: 1})
			if err != nil {
				return err
			}
			defer view.Release()
			var state bytes.Buffer
			if _, err := view.WriteTo(&state); err != nil {
				return err
			}
			_, err = consensus.WriteSeedSnapshot(w, peers, &state)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ents := []*raftpb.Entry{
		logEntry(11, 2, kvCommand(t, 1, "k/c", `"c"`)),
		logEntry(12, 2, kvCommand(t, 2, "k/a", "")),
		logEntry(13, 2, kvCommand(t, 1, "k/d", `"d"`)),
		logEntry(14, 2, kvCommand(t, 2, "k/b", "")),
		logEntry(15, 2, nil),
	}
	hs := &raftpb.HardState{Term: proto.Uint64(3), Vote: proto.Uint64(consensus.RaftID("n2")), Commit: proto.Uint64(12)}
	if err := st.Save(hs, ents, nil); err != nil {
		t.Fatal(err)
	}
}

// dirChecksum hashes the names, modes and contents of every file under
// dir.
func dirChecksum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		io.WriteString(h, rel+"\x00"+info.Mode().String()+"\x00")
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var (
	beforeRecover = regexp.MustCompile(`\.before-recover-[0-9TZ]+`)
	newCluster    = regexp.MustCompile(`new cluster [0-9a-f]+`)
)

// TestRecoverCommand: recover's plan, refusals and rewrite of a
// survivor's data directory, as a transcript (testdata/recover.golden).
// Without --yes, with bad flags and on a directory a running node holds
// it changes nothing (the directory's checksum); with --yes the directory
// is a one-member cluster with a new id at the commit index and the term
// it had reached, holding the
// committed state only, and the old one is kept beside it, unchanged.
func TestRecoverCommand(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "n1")
	survivorDir(t, dir)
	before := dirChecksum(t, dir)
	tr := &transcript{t: t, repl: strings.NewReplacer(root, "<root>")}
	unchanged := func(what string) {
		t.Helper()
		if got := dirChecksum(t, dir); got != before {
			t.Fatalf("%s changed the data directory", what)
		}
	}

	tr.step(exitUsage, "", "recover", "--id", "n1")
	tr.step(exitUsage, "", "recover", "--data", dir)
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "--members", "n1=127.0.0.1:7001,n2=127.0.0.1:7002")
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "--members", "n1=nowhere")
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "--max-keys", "0")
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "--endpoints", "127.0.0.1:1")
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "extra")
	tr.step(exitFailure, "", "recover", "--data", filepath.Join(root, "missing"), "--id", "n1")
	tr.step(exitFailure, "", "recover", "--data", dir, "--id", "n9", "--yes")
	unchanged("bad flags")

	lock, err := storage.Lock(dir) // what a running node holds
	if err != nil {
		t.Fatal(err)
	}
	tr.step(exitFailure, "", "recover", "--data", dir, "--id", "n1", "--yes")
	lock.Close()
	unchanged("recover of a locked directory")

	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1")
	tr.step(exitUsage, "", "recover", "--data", dir, "--id", "n1", "--keep-tail")
	unchanged("recover without --yes")

	tr.norm = func(s string) string {
		return newCluster.ReplaceAllString(beforeRecover.ReplaceAllString(s, ".before-recover-<time>"), "new cluster <id>")
	}
	r := tr.step(exitOK, "", "recover", "--data", dir, "--id", "n1", "--members", "n1=127.0.0.1:7101", "--yes")
	tr.check("recover")

	old := beforeRecover.FindString(r.stdout)
	if old == "" {
		t.Fatalf("no kept directory named in %q", r.stdout)
	}
	if got := dirChecksum(t, dir+old); got != before {
		t.Fatal("the kept old directory differs from the directory before recover")
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 {
		t.Fatalf("%s holds %d entries, want the new and the kept directory (no scratch left behind)", root, len(entries))
	}

	// The new directory: a snapshot at the commit index with n1 alone,
	// a new cluster id, no log after it; the state is the committed one.
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hs, cs, _ := st.InitialState()
	last, _ := st.LastIndex()
	id, _ := st.ClusterID()
	// The term does not go back: 3, the hard state's, not 2, the entry's.
	if hs.GetCommit() != 12 || hs.GetTerm() != 3 || hs.GetVote() != 0 || last != 12 || id == oldClusterID || id == 0 {
		t.Fatalf("hard state %v, last index %d, cluster %x", hs, last, id)
	}
	if len(cs.GetVoters()) != 1 || cs.GetVoters()[0] != consensus.RaftID("n1") || len(cs.GetLearners()) != 0 {
		t.Fatalf("configuration %v, want n1 alone", cs)
	}
	cfg := consensus.DefaultConfig("n1")
	cfg.Snapshots, err = storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	if err != nil {
		t.Fatal(err)
	}
	sm := kv.NewMachine()
	rec, err := consensus.ReadRecovery(cfg, st, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if len(rec.Members) != 1 || rec.Members[0].PeerAddr != "127.0.0.1:7101" || !rec.Members[0].Voter || len(rec.Tail) != 0 {
		t.Fatalf("members %+v, tail %+v", rec.Members, rec.Tail)
	}
	items, _ := sm.List("k/")
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key+"="+string(it.Value))
	}
	if got := strings.Join(keys, " "); got != `k/b="b" k/c="c"` {
		t.Fatalf("state %s, want k/b and k/c (k/a deleted at 12; 13-14 dropped)", got)
	}
}

// TestRecoverKeepTail: with --keep-tail the recovered directory starts at
// the last index, with the entries past the commit index applied.
func TestRecoverKeepTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	survivorDir(t, dir)
	r := runCLI(context.Background(), "", "recover", "--data", dir, "--id", "n1", "--keep-tail", "--yes")
	if r.code != exitOK || !strings.Contains(r.stdout, "at index 15 (term 2)") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hs, _, _ := st.InitialState()
	if hs.GetCommit() != 15 || hs.GetTerm() != 3 {
		t.Fatalf("hard state %v, want commit 15 at term 3", hs)
	}
	cfg := consensus.DefaultConfig("n1")
	cfg.Snapshots, err = storage.OpenSnapshotDir(filepath.Join(dir, storage.SnapshotSubdir), nil)
	if err != nil {
		t.Fatal(err)
	}
	sm := kv.NewMachine()
	rec, err := consensus.ReadRecovery(cfg, st, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	items, _ := sm.List("k/")
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key+"="+string(it.Value))
	}
	if got := strings.Join(keys, " "); got != `k/c="c" k/d="d"` {
		t.Fatalf("state %s, want k/c and k/d (k/a deleted at 12, k/d put at 13, k/b deleted at 14)", got)
	}
}
