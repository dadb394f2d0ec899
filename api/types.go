package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Item is one key and its value with the revisions that describe it.
type Item struct {
	// Key is the item's key.
	Key string `json:"key"`
	// Value is the stored JSON value, compacted.
	Value json.RawMessage `json:"value"`
	// Revision is the cluster-wide revision of the write that last changed
	// the key.
	Revision int64 `json:"revision"`
	// CreateRevision is the revision at which the key was created.
	CreateRevision int64 `json:"createRevision"`
	// Version is 1 at creation and grows by one with every change; a
	// delete resets it.
	Version int64 `json:"version"`
	// Lease is the lease the key is attached to (deleted with it), if
	// any.
	Lease LeaseID `json:"lease,omitempty"`
}

// ListPage is one page of a paged list: the items under a prefix from a
// start key, in key order, all read at Revision.
type ListPage struct {
	// Items are the page's items; their values are nil in a keys-only
	// list, and there are none in a count-only one.
	Items []Item
	// Revision is the revision the list is read at: the first page's
	// revision, which every later page of the same list repeats.
	Revision int64
	// More reports that items follow; Next is then the key of the first
	// of them, the start of the next page.
	More bool
	Next string
	// Count is the number of items under the prefix from the start key,
	// in a count-only list.
	Count int64
}

// ListMode selects what a list returns.
type ListMode uint8

// List modes. Their values are part of the wire format.
const (
	// ListItems returns keys with their values (the default).
	ListItems ListMode = 0
	// ListKeysOnly returns items without values.
	ListKeysOnly ListMode = 1
	// ListCountOnly returns only how many items there are.
	ListCountOnly ListMode = 2
)

// Paged list bounds, shared by server and clients.
const (
	// DefaultListLimit is the page size of a paged list that names none:
	// the Go client's, the CLI's, and a /v1/ws list page's.
	DefaultListLimit = 1000
	// MaxListLimit bounds a page's items: a larger limit is lowered to it.
	MaxListLimit = 10_000
	// DefaultListPageBytes bounds the keys and values of a page (plus a
	// small overhead per item): a page ends early, with More set, before
	// an item that would take it past this. A page holds at least one
	// item, so one value larger than the bound still makes a page.
	DefaultListPageBytes = 4 << 20
)

// Consistency selects how a read is served.
type Consistency int

const (
	// Linearizable reads reflect every write acknowledged before the read
	// began (raft ReadIndex). The default.
	Linearizable Consistency = iota
	// Local reads serve this node's applied state: fast, possibly stale.
	Local
)

// String returns "linearizable" or "local".
func (c Consistency) String() string {
	if c == Local {
		return "local"
	}
	return "linearizable"
}

// Cond is a precondition on a key's revision, checked when the write is
// applied. The zero Cond is no precondition.
type Cond struct {
	set    bool
	rev    int64
	exists bool // IfExists: any revision will do
}

// IfRevision requires the key to be at revision rev (the revision of the
// write that last changed it); rev 0 requires it not to exist. A negative
// rev is refused with ErrInvalidRevision.
func IfRevision(rev int64) Cond { return Cond{set: true, rev: rev} }

// IfAbsent requires the key not to exist (create only).
func IfAbsent() Cond { return IfRevision(0) }

// IfExists requires the key to exist, at any revision (update only; HTTP's
// If-Match: *).
func IfExists() Cond { return Cond{set: true, exists: true} }

// Revision returns the revision the Cond requires and whether it requires
// one; for IfExists it returns (0, true) and Exists reports true.
func (c Cond) Revision() (int64, bool) { return c.rev, c.set }

// Exists reports whether the Cond is IfExists.
func (c Cond) Exists() bool { return c.exists }

// Check returns an error wrapping ErrInvalidRevision for a Cond no write
// can carry (a negative revision), nil otherwise.
func (c Cond) Check() error {
	if c.set && !c.exists && c.rev < 0 {
		return fmt.Errorf("kv: precondition on revision %d: %w", c.rev, ErrInvalidRevision)
	}
	return nil
}

// TxnOpType says what an operation of a transaction (a batch) does. Its
// values are part of the wire and command formats.
type TxnOpType uint8

// Transaction operation types.
const (
	// TxnPut stores Value under Key.
	TxnPut TxnOpType = 1
	// TxnDelete deletes Key, which must exist.
	TxnDelete TxnOpType = 2
)

// TxnOp is one operation of a transaction (kv.Store.Batch, Client.Batch).
type TxnOp struct {
	Type  TxnOpType
	Key   string
	Value []byte
	// Cond, if set, must hold for the batch to apply.
	Cond Cond
}

// DefaultMaxBatchOps bounds the operations of one transaction.
const DefaultMaxBatchOps = 1024

// UpdateFunc computes a key's new value from its current item (exists is
// false when the key is absent). Returning an error aborts the update.
type UpdateFunc func(cur Item, exists bool) (value []byte, err error)

// RequestID identifies one request of one client for exactly-once
// application.
type RequestID struct {
	// Client names the client: non-empty UTF-8, at most MaxClientIDBytes.
	Client string
	// Seq numbers the client's requests from 1; a retry reuses it.
	Seq uint64
}

// MaxClientIDBytes bounds a client id.
const MaxClientIDBytes = 128

// DefaultSessionWindow is how many of a client's most recent sequence
// numbers (by value) a server remembers the results of, at least: a
// client keeps its writes in flight within it.
const DefaultSessionWindow = 256

// Validate returns an error wrapping ErrInvalidRequestID unless the
// client is 1 to MaxClientIDBytes bytes of UTF-8 and the sequence at
// least 1.
func (id RequestID) Validate() error {
	if id.Client == "" || len(id.Client) > MaxClientIDBytes || !utf8.ValidString(id.Client) || id.Seq == 0 {
		return fmt.Errorf("kv: client id must be 1 to %d bytes of UTF-8 and sequence at least 1: %w", MaxClientIDBytes, ErrInvalidRequestID)
	}
	return nil
}

// Key prefixes of the workflow and node views. A workflow is the JSON
// object stored under "workflow:<id>", a registered application node the
// one under "node:<id>", so the key-value view and these views always
// agree (the seed's examples set workflow:<id> keys directly).
const (
	WorkflowPrefix = "workflow:"
	NodePrefix     = "node:"
)

// Workflow statuses set by the workflow commands. A workflow written
// through the key-value API may carry any status; only "running" ones can
// be updated or stopped.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Workflow is the state of one workflow: the JSON object stored under
// workflow:<id>, with the fields the commands maintain pulled out.
type Workflow struct {
	// ID is the workflow's id (the key without "workflow:").
	ID string `json:"id"`
	// Status is the object's "status" field: "running", "stopped", or
	// whatever a key-value write put there.
	Status string `json:"status"`
	// Value is the whole stored object.
	Value json.RawMessage `json:"value"`
	// Revision, CreateRevision and Version are those of the key.
	Revision       int64 `json:"revision"`
	CreateRevision int64 `json:"createRevision"`
	Version        int64 `json:"version"`
}

// Node is an application node registered in the state (REGISTER_NODE):
// the JSON object stored under node:<id>. It is not a raft member.
type Node struct {
	// ID is the node's id (the key without "node:").
	ID string `json:"id"`
	// Value is the stored object: the metadata given at registration with
	// "id" and "registeredAt" (the proposer's clock, Unix milliseconds).
	Value json.RawMessage `json:"value"`
	// Revision, CreateRevision and Version are those of the key.
	Revision       int64 `json:"revision"`
	CreateRevision int64 `json:"createRevision"`
	Version        int64 `json:"version"`
}

// WorkflowFromItem interprets an item under workflow:<id> as a workflow.
func WorkflowFromItem(it Item) Workflow {
	return Workflow{ID: strings.TrimPrefix(it.Key, WorkflowPrefix), Status: StatusOf(it.Value),
		Value: it.Value, Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version}
}

// NodeFromItem interprets an item under node:<id> as a registered node.
func NodeFromItem(it Item) Node {
	return Node{ID: strings.TrimPrefix(it.Key, NodePrefix), Value: it.Value, Revision: it.Revision,
		CreateRevision: it.CreateRevision, Version: it.Version}
}

// StatusOf returns the "status" string of a JSON object, or "".
func StatusOf(v []byte) string {
	var o struct {
		Status any `json:"status"`
	}
	if json.Unmarshal(v, &o) != nil {
		return ""
	}
	s, _ := o.Status.(string)
	return s
}

// EventType says what a change did to a key.
type EventType uint8

// Event types. Their values are part of the snapshot and wire formats.
const (
	// EventPut means the key was created or changed.
	EventPut EventType = 1
	// EventDelete means the key was deleted.
	EventDelete EventType = 2
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change to one key, as watchers and state_changed
// subscribers see it. Events are produced in revision order, identically
// on every node, because they come from applying the log.
type Event struct {
	// Type is put or delete.
	Type EventType
	// Item is the key after a put. After a delete it holds the key and
	// the delete's revision, with no value.
	Item Item
}

// WatchResponse is what a watch delivers: the events of one or more
// applied commands, and how far the watch has got.
type WatchResponse struct {
	// Events are the matching events in revision order. Events that share
	// a revision (one command) are never split across responses. Empty in
	// a progress report (see Watcher.RequestProgress). The slice and the
	// values it refers to are shared: do not modify them.
	Events []Event
	// Revision is the watch's progress: every matching event at or below
	// it has been delivered, in this response or an earlier one. A watch
	// resumed from Revision+1 misses nothing and repeats nothing.
	Revision int64
}

// WatchEventData is the JSON data of one change event of GET /v1/watch
// (Server-Sent Events, docs/API.md): the server encodes it from an Event,
// the client decodes it back into one.
type WatchEventData struct {
	// Type is "put" or "delete" (EventType.String).
	Type string `json:"type"`
	// Key is the key the event changed.
	Key string `json:"key"`
	// Value is the key's value after a put; null after a delete.
	Value json.RawMessage `json:"value"`
	// Revision, CreateRevision and Version are the Item's.
	Revision       int64 `json:"revision"`
	CreateRevision int64 `json:"createRevision"`
	Version        int64 `json:"version"`
}

// CompactedError is the ErrCompacted of a watch: the revision it needed
// and the oldest one that can still be watched from.
type CompactedError struct {
	// Requested is the first revision the watch needed, or the revision
	// a page of a list was asked at.
	Requested int64
	// Oldest is the oldest revision a watch can start from now; for a
	// list, the node's current revision, at which the list can start over.
	Oldest int64
	// List marks the error of a list page rather than a watch.
	List bool
}

func (e *CompactedError) Error() string {
	if e.List {
		return fmt.Sprintf("kv: list at revision %d: %v (no view of it is kept and the range changed since); start over at revision %d",
			e.Requested, ErrCompacted, e.Oldest)
	}
	return fmt.Sprintf("kv: watch from revision %d: %v; the oldest available is %d", e.Requested, ErrCompacted, e.Oldest)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

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
	// StorageStalled reports that a write to this node's disk has run
	// longer than its stall bound: it serves nothing until the write
	// completes (absent when false).
	StorageStalled bool `json:"storageStalled,omitempty"`
	// StateHashes are this node's most recent hashes of its state (the
	// divergence check), oldest first; absent before the first.
	StateHashes []StateHash `json:"stateHashes,omitempty"`
	// Alarms are the problems this node has found with members, itself
	// included (absent when none).
	Alarms []Alarm `json:"alarms,omitempty"`
}

// StateHash is a member's hash of its state as it stood after applying
// the log entry at Index: equal on every member whose state is the same.
type StateHash struct {
	Index uint64 `json:"index"`
	Hash  string `json:"hash"`
}

// AlarmDiverged is the alarm of a member whose state hash differs from
// the majority's at the same index.
const AlarmDiverged = "diverged"

// Alarm is a problem found with a member.
type Alarm struct {
	// Member is the member it concerns.
	Member string `json:"member"`
	// Alarm says what it is (AlarmDiverged).
	Alarm string `json:"alarm"`
	// Index is the log index it was found at, if any.
	Index uint64 `json:"index,omitempty"`
	// Message explains it and what to do.
	Message string `json:"message"`
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

// Health is a member's health as a node's health checks see it.
type Health string

// Health values.
const (
	HealthUnknown   Health = "unknown"
	HealthHealthy   Health = "healthy"
	HealthDegraded  Health = "degraded"
	HealthUnhealthy Health = "unhealthy"
	// HealthSuspect is a member in doubt but not yet unhealthy: its peer
	// stream is down (set the moment the transport reports it, without
	// waiting for a check), or its last checks failed but fewer than
	// MaxFailedHealthChecks of them.
	HealthSuspect Health = "suspect"
)

// NodeInfo is one member with its health as this node sees it.
type NodeInfo struct {
	Member
	Health Health `json:"health"`
	// FailedChecks counts the checks in a row that failed.
	FailedChecks int `json:"failedChecks"`
	// LastCheck is when the member was last checked (zero: never).
	LastCheck time.Time `json:"lastCheck"`
	// LastCheckAgeMs is how many milliseconds before this answer the
	// member was last checked; nil before its first check. It lets a
	// reader whose clock differs from this node's say "checked N s ago".
	LastCheckAgeMs *int64 `json:"lastCheckAgeMs"`
	// LastPassedCheck is when a check of the member last passed, which is
	// when AppliedIndex was read; nil if none has.
	LastPassedCheck *time.Time `json:"lastPassedCheck"`
	// AppliedIndex is the member's applied index at the last check that
	// passed (0 if unknown). It is not current when the member's last
	// check failed or its stream is down: see Lag.
	AppliedIndex uint64 `json:"appliedIndex"`
	// Lag is how far AppliedIndex trailed this node's commit index at the
	// last check. It is nil (JSON null) when unknown: before a check has
	// read the member's applied index, when its last check failed, and
	// while its peer stream is down. A stale lag is never reported, and
	// never as 0.
	Lag *uint64 `json:"lag"`
	// Connected reports a live peer stream to the member (always true for
	// this node itself).
	Connected bool `json:"connected"`
	// StreamDownSince is when this node saw its peer stream to the member
	// go down; nil while it is up, and for a member whose stream this
	// node has never seen up.
	StreamDownSince *time.Time `json:"streamDownSince,omitempty"`
	// StreamDownMs is how many milliseconds before this answer the stream
	// went down; set with StreamDownSince.
	StreamDownMs *int64 `json:"streamDownMs,omitempty"`
	// Reason says why the member is not healthy, if it is not.
	Reason string `json:"reason,omitempty"`
}
