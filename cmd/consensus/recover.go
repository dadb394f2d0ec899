package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
)

// recoverFlags are the flags of `consensus recover`.
type recoverFlags struct {
	dataDir, id, members string
	yes, keepTail        bool
	maxKeys, maxValue    int
}

// maxListedTail bounds how many dropped entries recover lists one by one.
const maxListedTail = 20

func recoverCmd(stdout io.Writer) *cobra.Command {
	var f recoverFlags
	cmd := &cobra.Command{
		Use:   "recover --data DIR --id ID [--members ID=HOST:PORT] [--keep-tail] [--yes]",
		Short: "rewrite a stopped survivor's data directory into a one-member cluster (after a lost quorum)",
		Long: `When a majority of the members is gone for good, the survivors cannot elect a
leader. recover rewrites ONE stopped survivor's data directory into a new
cluster whose only member is that node: its committed state is kept, the log
entries past its commit index are dropped, the other members are forgotten and
the cluster gets a new id (the old members' data can never rejoin it). Start
the node with consensus serve, then grow the cluster back with --join.

Pick the survivor with the highest commit index (then the highest last
term, then last index): run recover without --yes on each to see them. Without --yes recover prints what it would
keep and drop and changes nothing (exit 2); with --yes it does it, keeping
the old directory beside the new one as DIR.before-recover-TIME. It refuses
a directory a running node holds. --max-keys and --max-value-bytes must be
what the node ran with (the committed log is replayed with them).

The entries past the commit index are dropped by default: this node never
learnt that they were committed. The leader may still have committed (and
acknowledged) some of them, above all if this node crashed rather than
stopped, since the commit index is stored without a sync. --keep-tail keeps
them all, as raft would had this node won an election; it may also apply
writes whose clients were never told they succeeded.`,
		Args: exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			return runRecover(f, stdout)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.dataDir, "data", "", "the survivor's data directory (required; its node must be stopped)")
	fl.StringVar(&f.id, "id", "", "the survivor's node id (required)")
	fl.StringVar(&f.members, "members", "", "the new cluster's membership, ID=HOST:PORT: this node alone, at the peer address given (default: its stored one)")
	fl.BoolVar(&f.keepTail, "keep-tail", false, "keep the entries past the commit index too, as committed (see above)")
	fl.BoolVar(&f.yes, "yes", false, "do it: without it recover prints the plan, changes nothing and exits 2")
	fl.IntVar(&f.maxKeys, "max-keys", kv.DefaultMaxKeys, "the --max-keys the node ran with")
	fl.IntVar(&f.maxValue, "max-value-bytes", kv.DefaultMaxValueBytes, "the --max-value-bytes the node ran with")
	return withGlobalFlags(cmd)
}

// recoverUsage is a usage error of recover: one line, exit 2.
func recoverUsage(format string, args ...any) error {
	return usageErrorf("recover: "+format, args...)
}

func runRecover(f recoverFlags, stdout io.Writer) error {
	if f.dataDir == "" || f.id == "" {
		return recoverUsage("--data and --id are required")
	}
	if f.maxKeys <= 0 || f.maxValue <= 0 {
		return recoverUsage("--max-keys and --max-value-bytes must be positive")
	}
	var addr string
	if f.members != "" {
		peers, err := parsePeers(f.members)
		if err != nil {
			return recoverUsage("--members: %v", strings.TrimPrefix(err.Error(), "--peers: "))
		}
		if len(peers) != 1 || peers[f.id] == "" {
			return recoverUsage("--members %s: the recovered cluster starts with %s alone (ID=HOST:PORT); add the others afterwards with consensus serve --join", f.members, f.id)
		}
		addr = peers[f.id]
	}
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return failuref("recover: %v", err)
	}

	// The lock is held to the end: no node may start on the directory
	// while it is read, nor while it is replaced.
	lock, err := storage.Lock(dir)
	switch {
	case errors.Is(err, storage.ErrLocked):
		return failuref("recover: %s is in use by a running node: stop it first (recover works on a stopped node's directory)", f.dataDir)
	case errors.Is(err, fs.ErrNotExist):
		return failuref("recover: %s: no such data directory", f.dataDir)
	case err != nil:
		return failuref("recover: %v", err)
	}
	defer lock.Close()

	// A store may write as it opens, and the node that reads it prunes
	// snapshots: read a scratch copy, so the directory stays as it was
	// until --yes replaces it whole.
	scratch, err := siblingDir(dir, "recover-read")
	if err != nil {
		return failuref("recover: %v", err)
	}
	defer os.RemoveAll(scratch)
	if err := copyDataDir(dir, scratch); err != nil {
		return failuref("recover: copy %s: %v", f.dataDir, err)
	}
	st, err := storage.Open(scratch, storage.Options{})
	if err != nil {
		return failuref("recover: %s: %v", f.dataDir, err)
	}
	defer st.Close()
	snaps, err := storage.OpenSnapshotDir(filepath.Join(scratch, storage.SnapshotSubdir), nil)
	if err != nil {
		return failuref("recover: %s: %v", f.dataDir, err)
	}
	cfg := consensus.DefaultConfig(f.id)
	cfg.Snapshots = snaps
	rec, err := consensus.ReadRecovery(cfg, st, kv.NewMachine(kv.WithMaxKeys(f.maxKeys), kv.WithMaxValueBytes(f.maxValue)))
	switch {
	case errors.Is(err, consensus.ErrNothingToRecover):
		return failuref("recover: %s holds no committed state: nothing to recover", f.dataDir)
	case errors.Is(err, consensus.ErrNotAMember):
		return failuref("recover: %s is not a member of the cluster %s holds (wrong --id?)", f.id, f.dataDir)
	case err != nil:
		return failuref("recover: %s: %v", f.dataDir, err)
	}
	defer rec.Close()
	if f.keepTail {
		if err := rec.KeepTail(); err != nil {
			return failuref("recover: %s: --keep-tail: %v", f.dataDir, err)
		}
	}
	self, err := memberNamed(rec.Members, f.id)
	if err != nil {
		return failuref("recover: %v", err)
	}
	if addr != "" {
		self.PeerAddr = addr
	}
	if self.PeerAddr == "" {
		return recoverUsage("%s has no stored peer address: give one with --members %s=HOST:PORT", f.id, f.id)
	}
	if _, err := io.WriteString(stdout, recoveryPlan(f.dataDir, f.id, self, rec)); err != nil {
		return err
	}
	if !f.yes {
		return recoverUsage("nothing changed: run again with --yes to rewrite %s", f.dataDir)
	}

	clusterID := newClusterID(self, rec.ClusterID)
	fresh, err := siblingDir(dir, "recover-write")
	if err != nil {
		return failuref("recover: %v", err)
	}
	defer os.RemoveAll(fresh) // gone by then once renamed into place
	err = storage.WriteSeed(fresh, storage.Seed{
		Index: rec.Start.Index, Term: rec.Start.Term,
		ConfState: consensus.RecoveryConfState(f.id),
		ClusterID: clusterID,
		MinTerm:   rec.Term,
		WriteData: func(w io.Writer) error {
			_, err := rec.WriteSnapshot(w, self)
			return err
		},
	})
	if err != nil {
		return failuref("recover: write the new directory: %v", err)
	}
	old := dir + ".before-recover-" + time.Now().UTC().Format("20060102T150405Z")
	if _, err := os.Lstat(old); err == nil {
		return failuref("recover: %s exists already: try again in a second", old)
	}
	if err := os.Rename(dir, old); err != nil {
		return failuref("recover: keep the old directory: %v", err)
	}
	if err := os.Rename(fresh, dir); err != nil {
		// Put the old one back: the node must find a whole directory.
		if back := os.Rename(old, dir); back != nil {
			return failuref("recover: %v; and moving %s back to %s failed: %v", err, old, dir, back)
		}
		return failuref("recover: %v (the directory is unchanged)", err)
	}
	if err := syncParent(dir); err != nil {
		return failuref("recover: %v", err)
	}
	_, err = fmt.Fprintf(stdout, "recovered: %s is %s, the only member of new cluster %x, at index %d (term %d)\n"+
		"the old directory is kept as %s: remove it once the cluster is whole again\n"+
		"start it with: consensus serve --id %s --data %s --listen %s --http HOST:PORT\n"+
		"then add members, each with an empty data directory: consensus serve --id NEW --join HOST:PORT (its --http) --data NEWDIR --listen ... --http ...\n",
		f.dataDir, f.id, clusterID, rec.Start.Index, rec.Start.Term, old, f.id, f.dataDir, self.PeerAddr)
	return err
}

// recoveryPlan says what recover keeps and drops.
func recoveryPlan(dataDir, id string, self consensus.Member, rec *consensus.Recovery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data directory: %s (node %s of cluster %x)\n", dataDir, id, rec.ClusterID)
	fmt.Fprintf(&b, "last index:     %d (term %d)\n", rec.Last.Index, rec.Last.Term)
	fmt.Fprintf(&b, "commit index:   %d (term %d)\n", rec.Commit.Index, rec.Commit.Term)
	names := make([]string, 0, len(rec.Members))
	var others []string
	for _, m := range rec.Members {
		name := m.ID
		if !m.Voter {
			name += " (learner)"
		}
		names = append(names, name)
		if m.ID != id {
			others = append(others, m.ID)
		}
	}
	fmt.Fprintf(&b, "members:        %s\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "keep:           the state as of index %d, with %s at %s the only member of a new cluster\n", rec.Start.Index, id, self.PeerAddr)
	switch n := len(rec.Tail); {
	case n == 0:
		b.WriteString("drop entries:   none (the log ends at the commit index)\n")
	case rec.TailKept:
		fmt.Fprintf(&b, "keep entries:   %d past the commit index, %d-%d (--keep-tail), as committed:\n", n, rec.Tail[0].Index, rec.Tail[n-1].Index)
	default:
		fmt.Fprintf(&b, "drop entries:   %d past the commit index, %d-%d; not known to be committed here, though the leader may have acknowledged some of them (--keep-tail keeps them):\n",
			n, rec.Tail[0].Index, rec.Tail[n-1].Index)
	}
	for i, e := range rec.Tail {
		if i == maxListedTail {
			fmt.Fprintf(&b, "  ... and %d more\n", len(rec.Tail)-maxListedTail)
			break
		}
		fmt.Fprintf(&b, "  %d (term %d): %s\n", e.Index, e.Term, describeTail(e))
	}
	if len(others) == 0 {
		b.WriteString("drop members:   none\n")
	} else {
		fmt.Fprintf(&b, "drop members:   %s (their data directories cannot rejoin: the new cluster has another id)\n", strings.Join(others, ", "))
	}
	return b.String()
}

// describeTail describes a dropped entry.
func describeTail(e consensus.TailEntry) string {
	switch {
	case e.Change != "":
		return e.Change
	case e.Unknown:
		return "entry in an unknown format"
	case e.Command == nil:
		return "empty entry (a new leader's)"
	}
	return kv.DescribeCommand(e.Command)
}

// memberNamed returns the member called id.
func memberNamed(members []consensus.Member, id string) (consensus.Member, error) {
	for _, m := range members {
		if m.ID == id {
			return m, nil
		}
	}
	return consensus.Member{}, fmt.Errorf("%s is not among the members", id)
}

// newClusterID returns a cluster id for a recovered cluster: random, so
// that two survivors recovered apart (a mistake) never take each other
// for members of one cluster, and never the old id.
func newClusterID(self consensus.Member, old uint64) uint64 {
	for {
		var salt [8]byte
		_, _ = rand.Read(salt[:])
		id := consensus.RestoredClusterID(map[string]string{self.ID: self.PeerAddr}, binary.BigEndian.Uint64(salt[:]))
		if id != old {
			return id
		}
	}
}

// siblingDir creates an empty directory beside dir, named after it and
// what, and returns its path.
func siblingDir(dir, what string) (string, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	path := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+"."+what+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(path, 0o700); err != nil {
		return "", err
	}
	return path, nil
}

// copyDataDir copies the files of the data directory src into the empty
// directory dst, all but its lock file.
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o700)
		case rel == storage.LockFileName:
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", path)
		}
		return copyFile(path, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
