package storage

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Seed is the starting point of a node whose cluster begins from saved
// state instead of an empty log (see Seed and package backup).
type Seed struct {
	// Index and Term are the raft index and term of the snapshot the node
	// starts from; Index must be positive. Every member of the new cluster
	// must be given the same.
	Index, Term uint64
	// ConfState is the new cluster's configuration.
	ConfState *raftpb.ConfState
	// ClusterID is the id of the new cluster (never 0).
	ClusterID uint64
	// MinTerm, if above Term, is the term of the hard state written: a
	// node recovered from its own log (consensus recover) keeps the term
	// it had reached, so the terms it reports never go back.
	MinTerm uint64
	// WriteData writes the snapshot's data, in the format the node
	// restores from (consensus.WriteSeedSnapshot).
	WriteData func(w io.Writer) error
}

// SnapshotSubdir is the directory, inside a node's data directory, that
// holds its snapshot files (a SnapshotDir); the raft log storage is the
// data directory itself.
const SnapshotSubdir = "snap"

// WriteSeed writes a node's data directory dir, which must not hold a
// store yet, so that a node opened on it (Open, and OpenSnapshotDir on
// dir/snap) restarts from s: the snapshot's data in dir/snap, its
// metadata as the stored snapshot with an empty log after it, a hard
// state at s.Term (or s.MinTerm if higher) committing s.Index, and the
// cluster id. Everything is
// synced before it returns. On an error dir may hold part of this; the
// caller removes it.
func WriteSeed(dir string, s Seed) error {
	if s.Index == 0 || s.ClusterID == 0 || s.ConfState == nil || s.WriteData == nil {
		return errors.New("storage: seed needs an index, a cluster id, a configuration and data")
	}
	snaps, err := OpenSnapshotDir(filepath.Join(dir, SnapshotSubdir), nil)
	if err != nil {
		return err
	}
	sink, err := snaps.Create(s.Index, s.Term)
	if err != nil {
		return err
	}
	if err := s.WriteData(sink); err != nil {
		sink.Abort()
		return fmt.Errorf("storage: seed snapshot data: %w", err)
	}
	if err := sink.Commit(); err != nil {
		return err
	}
	p, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	hs, _, err := p.InitialState()
	if err == nil {
		var last uint64
		if last, err = p.LastIndex(); err == nil && (last != 0 || hs.GetTerm() != 0 || p.snapMeta != nil) {
			err = fmt.Errorf("storage: seed %s: the directory already holds a store", dir)
		}
	}
	if err != nil {
		_ = p.Close()
		return err
	}
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(s.Index), Term: proto.Uint64(s.Term),
		ConfState: proto.Clone(s.ConfState).(*raftpb.ConfState),
	}}
	hs = &raftpb.HardState{Term: proto.Uint64(max(s.Term, s.MinTerm)), Vote: proto.Uint64(0), Commit: proto.Uint64(s.Index)}
	if err := p.Save(hs, nil, snap); err != nil {
		_ = p.Close()
		return fmt.Errorf("storage: seed %s: %w", dir, err)
	}
	if err := p.SetClusterID(s.ClusterID); err != nil {
		_ = p.Close()
		return fmt.Errorf("storage: seed %s: %w", dir, err)
	}
	return p.Close()
}
