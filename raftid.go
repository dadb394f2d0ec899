package consensus

import (
	"fmt"
	"hash/fnv"
	"sort"
)

// RaftID maps a node name to the uint64 id raft uses. The mapping is a
// pure function of the name (FNV-1a 64), so every node derives the same id
// for a name without coordination, and a name always maps to the same id.
// It is never zero, which raft reserves for "none".
func RaftID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// ClusterID derives the id of a cluster bootstrapped from peers (name to
// peer address): a hash of the sorted name=address pairs. Every founding
// node computes the same id without talking to the others, and clusters
// founded from different peer lists get different ids. It is never zero.
func ClusterID(peers map[string]string) uint64 {
	names := make([]string, 0, len(peers))
	for name := range peers {
		names = append(names, name)
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, name := range names {
		fmt.Fprintf(h, "%s=%s\n", name, peers[name])
	}
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}
