package consensus

import "hash/fnv"

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
