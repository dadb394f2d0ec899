package consensus

import "go.etcd.io/raft/v3"

// EventType names an event published on Node.Events.
type EventType string

// Events of the node (the seed's RaftCoordinator and ClusterManager
// membership events).
const (
	// EventLeaderElected: a leader is known (LeaderID, Term).
	EventLeaderElected EventType = "leader_elected"
	// EventBecameFollower: this node was leader and no longer is.
	EventBecameFollower EventType = "became_follower"
	// EventNodeJoined: a member was added (NodeID, Member).
	EventNodeJoined EventType = "node_joined"
	// EventNodePromoted: a learner became a voter (NodeID, Member).
	EventNodePromoted EventType = "node_promoted"
	// EventNodeLeft: a member was removed (NodeID).
	EventNodeLeft EventType = "node_left"
	// EventRemoved: this node learnt it was removed from the cluster.
	EventRemoved EventType = "removed"
)

// Event is one node event. Fields that do not apply to its Type are zero.
type Event struct {
	Type     EventType `json:"type"`
	NodeID   string    `json:"nodeId,omitempty"`
	LeaderID string    `json:"leaderId,omitempty"`
	Term     uint64    `json:"term,omitempty"`
	Member   *Member   `json:"member,omitempty"`
}

// Events returns the feed of node events (leader changes and membership
// changes). Subscribers never block the raft loop; see Feed.
func (n *Node) Events() *Feed[Event] { return &n.events }

// publishLeader publishes the events for a leader change from prev to
// lead; called from the raft loop.
func (n *Node) publishLeader(prev, lead uint64) {
	if prev == n.id && lead != n.id {
		n.events.Publish(Event{Type: EventBecameFollower, NodeID: n.cfg.ID, LeaderID: n.nameOf(lead), Term: n.pos.term.Load()})
	}
	if lead != raft.None {
		n.events.Publish(Event{Type: EventLeaderElected, LeaderID: n.nameOf(lead), Term: n.pos.term.Load()})
	}
}
