package backup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
)

// ErrDataDirNotEmpty means Restore was asked to write into a directory
// that already holds something.
var ErrDataDirNotEmpty = errors.New("backup: data directory is not empty")

// SeedTerm is the raft term of the snapshot every member of a restored
// cluster starts from; the first election makes the term 2.
const SeedTerm = 1

// RestoreOptions says what Restore writes.
type RestoreOptions struct {
	// DataDir is the data directory to write (`consensus serve --data`).
	// It must not exist, or be empty.
	DataDir string
	// ID is the name of the node the directory is for; it must be one of
	// Peers.
	ID string
	// Peers is the membership of the new cluster, name to peer address
	// (`--peers`, the same for every member).
	Peers map[string]string
	// State configures the scratch state machine the backup is checked
	// with; give the limits the nodes will run with (kv.WithSessions...).
	State []kv.Option
}

// RestoreResult describes what Restore wrote.
type RestoreResult struct {
	Metadata Metadata
	Summary  Summary
	// ClusterID is the new cluster's id (consensus.RestoredClusterID).
	ClusterID uint64
	// Index and Term are the raft snapshot the node starts from.
	Index, Term uint64
}

// Restore writes a fresh data directory for member opts.ID of a new
// cluster whose membership is opts.Peers, seeded with the state in the
// backup f holds, so that a node started on it (`consensus serve --id ID
// --data DIR --peers ...`) comes up with that state. Run it once per
// member with the same file and peers: every member derives the same
// snapshot index and term, configuration and cluster id.
//
// The file is verified whole, and its state decoded, before anything is
// written: a damaged file (ErrCorrupt, ErrVersion, ErrNotBackup) leaves no
// directory behind. The directory is built under a temporary name beside
// DataDir and renamed into place once synced, so a crash leaves no
// half-written data directory either.
//
// What is restored is the replicated key-value state (keys, revisions,
// workflow and node records, client sessions). The membership is not: the
// new cluster's is opts.Peers, and its cluster id differs from the
// source's.
func Restore(f io.ReadSeeker, opts RestoreOptions) (RestoreResult, error) {
	if opts.DataDir == "" || opts.ID == "" {
		return RestoreResult{}, errors.New("backup: restore needs a data directory and a node id")
	}
	if _, ok := opts.Peers[opts.ID]; !ok {
		return RestoreResult{}, fmt.Errorf("backup: restore: node %q is not among the peers", opts.ID)
	}
	for name, addr := range opts.Peers {
		if name == "" || addr == "" {
			return RestoreResult{}, fmt.Errorf("backup: restore: peer %q at %q: %w", name, addr, consensus.ErrInvalidMember)
		}
	}
	if err := checkEmptyDir(opts.DataDir); err != nil {
		return RestoreResult{}, err
	}

	// Pass 1: the whole file's checksum. Pass 2: the state decodes (what
	// the node will do when it starts), so a file that would not start
	// is refused now, not on every member at startup.
	meta, sum, err := Verify(f)
	if err != nil {
		return RestoreResult{}, err
	}
	if meta.StateFormat != StateFormat {
		return RestoreResult{}, fmt.Errorf("%w: state format %q, this build reads %q", ErrVersion, meta.StateFormat, StateFormat)
	}
	if err := checkState(f, opts.State); err != nil {
		return RestoreResult{}, err
	}

	res := RestoreResult{
		Metadata: meta, Summary: sum,
		ClusterID: consensus.RestoredClusterID(opts.Peers, uint64(sum.Checksum)),
		// Raft needs a snapshot index above 0; a state that never applied a
		// command (applied 0) starts at 1.
		Index: max(meta.AppliedIndex, 1),
		Term:  SeedTerm,
	}
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	parent := filepath.Dir(abs)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(parent, "."+filepath.Base(abs)+".restoring-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = os.RemoveAll(tmp)
		}
	}()
	// Pass 3: the state, streamed into the snapshot file. The reader
	// verifies the trailer again at its end, so a file changed since pass
	// 1 still fails here.
	err = storage.WriteSeed(tmp, storage.Seed{
		Index: res.Index, Term: res.Term,
		ConfState: consensus.SeedConfState(opts.Peers),
		ClusterID: res.ClusterID,
		WriteData: func(w io.Writer) error {
			br, err := reopen(f)
			if err != nil {
				return err
			}
			_, err = consensus.WriteSeedSnapshot(w, opts.Peers, br)
			return err
		},
	})
	if err != nil {
		return RestoreResult{}, err
	}
	// An empty DataDir (checked above) gives way to the new one.
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	committed = true
	if err := syncDir(parent); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: restore: %w", err)
	}
	return res, nil
}

// reopen rewinds f and opens it as a backup.
func reopen(f io.ReadSeeker) (*Reader, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("backup: rewind: %w", err)
	}
	return Open(f)
}

// checkState decodes the backup's state into a scratch state machine.
func checkState(f io.ReadSeeker, opts []kv.Option) error {
	br, err := reopen(f)
	if err != nil {
		return err
	}
	if err := kv.NewMachine(opts...).Restore(consensus.Position{}, br); err != nil {
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		return fmt.Errorf("%w: state: %w", ErrCorrupt, err)
	}
	return nil
}

// checkEmptyDir returns nil if dir does not exist or is an empty
// directory.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("backup: restore: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("%w: %s", ErrDataDirNotEmpty, dir)
	}
	return nil
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
