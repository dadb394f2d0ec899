package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3/raftpb"
)

// A cluster restored from a backup does not bootstrap from an empty log:
// each member starts from a snapshot that holds the saved state machine
// state and the new membership (package backup writes it, with
// storage.WriteSeed). These helpers produce the parts that must be equal
// on every member.

// SeedConfState returns the raft configuration of a new cluster whose
// members are peers (name to peer address), all voters.
func SeedConfState(peers map[string]string) *raftpb.ConfState {
	voters := make([]uint64, 0, len(peers))
	for name := range peers {
		voters = append(voters, RaftID(name))
	}
	slices.Sort(voters)
	return &raftpb.ConfState{Voters: voters}
}

// RestoredClusterID returns the id of a cluster founded from peers and
// seeded with saved state identified by salt (a backup's checksum). It
// differs from ClusterID(peers), so nodes of a restored cluster and of a
// cluster bootstrapped from the same peer list never take each other for
// members of their own cluster (the peer handshake compares ids), and
// from the id of the cluster the state was saved from. It is never zero.
func RestoredClusterID(peers map[string]string, salt uint64) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ClusterID(peers))
	binary.BigEndian.PutUint64(b[8:], salt)
	h.Write([]byte("restored\n"))
	h.Write(b[:])
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// WriteSeedSnapshot writes to w the data of a snapshot that a Node
// restores from: the node's part (the members, peers, all voters; no
// removed ids; an empty proposal dedup table) followed by the state
// machine's part, copied from state (the bytes a StateSnapshot's WriteTo
// wrote). The encoding is deterministic: the same peers and state give
// the same bytes on every member. It returns the bytes written.
func WriteSeedSnapshot(w io.Writer, peers map[string]string, state io.Reader) (int64, error) {
	if len(peers) == 0 {
		return 0, errors.New("node: seed snapshot: no members")
	}
	st := nodeSnapshotState{Members: make([]Member, 0, len(peers))}
	for name, addr := range peers {
		if name == "" || addr == "" {
			return 0, fmt.Errorf("node: seed snapshot: member %q at %q: %w", name, addr, ErrInvalidMember)
		}
		st.Members = append(st.Members, Member{ID: name, PeerAddr: addr, Voter: true})
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	b, err := msgpack.Marshal(&st)
	if err != nil {
		return 0, fmt.Errorf("node: seed snapshot: %w", err)
	}
	cw := &countingWriter{w: w}
	var hdr [12]byte
	copy(hdr[:8], nodeSnapMagic[:])
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(b)))
	if _, err := cw.Write(hdr[:]); err != nil {
		return cw.n, err
	}
	if _, err := cw.Write(b); err != nil {
		return cw.n, err
	}
	if _, err := io.Copy(cw, state); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}
