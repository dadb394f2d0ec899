package consensus

// Status is a point-in-time view of a node, as served by GET /v1/status.
type Status struct {
	// NodeID is this node's name.
	NodeID string `json:"nodeId"`
	// IsLeader reports whether this node is the raft leader.
	IsLeader bool `json:"isLeader"`
	// LeaderID is the leader's name, or "" when no leader is known.
	LeaderID string `json:"leaderId"`
	// Term is the current raft term.
	Term uint64 `json:"term"`
	// CommitIndex is the highest log index known to be committed.
	CommitIndex uint64 `json:"commitIndex"`
	// AppliedIndex is the highest log index applied to the state machine.
	AppliedIndex uint64 `json:"appliedIndex"`
	// SnapshotIndex is the log index of the newest snapshot this node
	// holds (0 if none).
	SnapshotIndex uint64 `json:"snapshotIndex"`
	// Members lists the cluster's members, sorted by name.
	Members []Member `json:"members"`
	// ConnectedPeers lists the names of peers with a live transport
	// stream, sorted.
	ConnectedPeers []string `json:"connectedPeers"`
	// Removed reports that this node was removed from the cluster: it
	// takes no further part and serves nothing.
	Removed bool `json:"removed"`
}

// Member is one node of the cluster as recorded in the replicated
// membership.
type Member struct {
	// ID is the member's name.
	ID string `json:"id"`
	// PeerAddr is the host:port of its peer transport.
	PeerAddr string `json:"peerAddr"`
	// HTTPAddr is the host:port of its HTTP API, "" until the member has
	// advertised it.
	HTTPAddr string `json:"httpAddr"`
	// Voter reports whether the member votes (false for learners).
	Voter bool `json:"voter"`
}
