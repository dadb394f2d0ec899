package backup

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/storage"
)

// Restore writes what a restarting node expects, identically for every
// member but the directory; a damaged file, a non-empty directory or a
// node outside the peers are refused and leave no directory behind.
func TestRestoreWritesSeed(t *testing.T) {
	m := testState(t, 25)
	file, sum := encode(t, m)
	peers := map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"}
	root := t.TempDir()
	var results []RestoreResult
	var snaps [][]byte
	for _, id := range []string{"a", "b", "c"} {
		dir := filepath.Join(root, id)
		res, err := Restore(bytes.NewReader(file), RestoreOptions{DataDir: dir, ID: id, Peers: peers})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		results = append(results, res)
		p, err := storage.Open(dir, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		hs, cs, err := p.InitialState()
		if err != nil {
			t.Fatal(err)
		}
		snap, _ := p.Snapshot()
		cid, _ := p.ClusterID()
		last, _ := p.LastIndex()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wantVoters := []uint64{consensus.RaftID("a"), consensus.RaftID("b"), consensus.RaftID("c")}
		slices.Sort(wantVoters)
		if hs.GetCommit() != res.Index || hs.GetTerm() != SeedTerm || hs.GetVote() != 0 ||
			snap.GetMetadata().GetIndex() != res.Index || snap.GetMetadata().GetTerm() != SeedTerm ||
			last != res.Index || !slices.Equal(cs.GetVoters(), wantVoters) || cid != res.ClusterID {
			t.Fatalf("%s: hard state %v, snapshot %v, last %d, conf %v, cluster %x (want %+v)", id, hs, snap.GetMetadata(), last, cs, cid, res)
		}
		sd, err := storage.OpenSnapshotDir(filepath.Join(dir, "snap"), nil)
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := sd.Open(res.Index, res.Term)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(rc)
		rc.Close()
		snaps = append(snaps, b.Bytes())
	}
	for i := range results {
		if results[i] != results[0] || !bytes.Equal(snaps[i], snaps[0]) {
			t.Fatalf("members differ: %+v vs %+v (snapshot data equal: %v)", results[i], results[0], bytes.Equal(snaps[i], snaps[0]))
		}
	}
	r := results[0]
	if r.Index != 25 || r.Summary != sum || r.ClusterID == consensus.ClusterID(peers) || r.ClusterID == 0xfedcba9876543210 || r.Metadata.Keys != 25 {
		t.Fatalf("result %+v", r)
	}

	// Refusals.
	refuse := func(name string, f []byte, opts RestoreOptions, want error) {
		t.Helper()
		_, err := Restore(bytes.NewReader(f), opts)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if opts.DataDir != filepath.Join(root, "a") {
			if _, err := os.Stat(opts.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: left %s behind: %v", name, opts.DataDir, err)
			}
		}
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.Name() != "a" && e.Name() != "b" && e.Name() != "c" {
				t.Fatalf("%s: left %s behind", name, e.Name())
			}
		}
	}
	fresh := filepath.Join(root, "d")
	flipped := bytes.Clone(file)
	flipped[len(flipped)/2] ^= 0x10
	refuse("flipped", flipped, RestoreOptions{DataDir: fresh, ID: "a", Peers: peers}, ErrCorrupt)
	refuse("truncated", file[:len(file)-3], RestoreOptions{DataDir: fresh, ID: "a", Peers: peers}, ErrCorrupt)
	refuse("not a backup", []byte("hello, world, this is text"), RestoreOptions{DataDir: fresh, ID: "a", Peers: peers}, ErrNotBackup)
	refuse("not empty", file, RestoreOptions{DataDir: filepath.Join(root, "a"), ID: "a", Peers: peers}, ErrDataDirNotEmpty)
	refuse("unknown id", file, RestoreOptions{DataDir: fresh, ID: "z", Peers: peers}, nil)

	// An existing empty directory is fine.
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bytes.NewReader(file), RestoreOptions{DataDir: fresh, ID: "a", Peers: peers}); err != nil {
		t.Fatalf("into an empty directory: %v", err)
	}
}

// A state section that checksums but does not decode (written so on
// purpose) is refused before anything is written.
func TestRestoreRefusesUndecodableState(t *testing.T) {
	var buf bytes.Buffer
	_, err := Write(&buf, Metadata{Revision: 1}, stateFunc(func(w io.Writer) (int64, error) {
		n, err := w.Write([]byte("KVSN\x01 not records"))
		return int64(n), err
	}))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "n1")
	_, err = Restore(bytes.NewReader(buf.Bytes()), RestoreOptions{DataDir: dir, ID: "n1", Peers: map[string]string{"n1": "127.0.0.1:1"}})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("left %s: %v", dir, err)
	}
}
