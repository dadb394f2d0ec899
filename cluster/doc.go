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
// does not answer. A member is
//
//   - healthy when its last check passed and it keeps up;
//   - degraded when it answers but is far behind (its applied index trails
//     this node's commit index by more than MaxLagEntries), knows no
//     leader, or has been removed;
//   - unhealthy after MaxFailedHealthChecks failed checks in a row;
//   - unknown before its first check.
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
