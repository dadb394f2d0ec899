// Package cluster is the seed's ClusterManager: it watches the health of
// every member of the cluster a consensus.Node belongs to and publishes
// membership and health events.
//
// Membership itself (add, promote, remove, join) is replicated through
// raft by consensus.Node (AddMember, PromoteMember, RemoveMember,
// ChangeMembers); a Manager only observes it.
//
// # Health
//
// Every HealthCheckInterval the manager checks each member: this node
// directly, others by asking their HTTP API for /v1/status (at the
// member's replicated HTTP address, bounded by HealthCheckTimeout) or,
// when a member has no HTTP address or probing is off, by whether the
// peer transport has a live stream to it. A check fails when the member
// does not answer. Between checks, the transport's live streams are read
// every PeerPollInterval. A member is
//
//   - healthy when its last check passed, its peer stream is up and it
//     keeps up;
//   - degraded when it answers but is far behind (its applied index trails
//     this node's commit index by more than MaxLagEntries), knows no
//     leader, or has been removed;
//   - suspect the moment its peer stream goes down (no check is awaited:
//     the transport notices a crashed peer's socket closing at once), when
//     it answers its HTTP API but has no peer stream, or when its last
//     checks failed but fewer than MaxFailedHealthChecks of them; when the
//     stream of a suspect or unhealthy member comes back, it is checked at
//     once;
//   - unhealthy after MaxFailedHealthChecks failed checks in a row;
//   - unknown before its first check.
//
// A member's applied index is the one its last passing check read
// (LastPassedCheck says when); its lag is reported only while that is
// current: it is unknown (nil, JSON null) after a failed check and while
// the stream is down, never a frozen number, and never 0 by default.
// LastCheckAgeMs and StreamDownMs give ages on this node's clock, for
// readers whose clock differs.
//
// Health is this node's view; two nodes on either side of a partition see
// different health.
//
// # Events
//
// Events carries, in one feed: node_joined, node_left (from the
// replicated membership), node_health_changed {previous, current},
// node_unhealthy, peer_connected, peer_disconnected (from the transport's
// live streams), and the node's leader_elected {leaderId, term} and
// became_follower. The feed never blocks; see consensus.Feed.
package cluster
