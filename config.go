package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Config configures a Node. Build it from DefaultConfig and check it with
// Validate; NewNode validates it again.
type Config struct {
	// ID is this node's name, unique in the cluster for all time (a name is
	// mapped to a stable raft id; never give a removed node's name to a new
	// node).
	ID string

	// Peers is the initial cluster: node name to peer transport address,
	// this node included. It is used only when the node starts with empty
	// storage; a restarted node recovers membership from its log.
	Peers map[string]string

	// Join makes a node with empty storage join a running cluster instead
	// of bootstrapping one: it starts with no log and the leader, which
	// has added it as a learner, replicates the log to it. Peers then
	// lists the cluster's current members (to reach them), this node
	// included. Ignored when storage is not empty.
	Join bool
	// ClusterID is the id of the cluster a joining node joins (the
	// transport handshake checks it). Used only with Join.
	ClusterID uint64
	// HTTPAddr is this node's HTTP API address, advertised in the
	// replicated member metadata so clients and joining nodes find it.
	// Optional.
	HTTPAddr string
	// PromoteLag is how far (in log entries) a learner's log may trail the
	// leader's for the leader to promote it to voter. Default 64.
	PromoteLag uint64
	// AutoPromote makes the leader promote learners to voters by itself
	// once they are within PromoteLag. Default true; without it learners
	// stay learners until PromoteMember.
	AutoPromote bool

	// TickInterval is the length of one raft tick. Default 10ms.
	TickInterval time.Duration

	// ElectionTimeoutMin is the minimum election timeout; raft picks a
	// random timeout in [min, 2*min). Default 150ms. ElectionTimeoutMax
	// must be 2*ElectionTimeoutMin, because etcd raft randomises over
	// exactly that range.
	ElectionTimeoutMin time.Duration
	// ElectionTimeoutMax is the maximum election timeout. Default 300ms.
	ElectionTimeoutMax time.Duration

	// HeartbeatInterval is how often a leader sends heartbeats. Default
	// 50ms. Must be well below ElectionTimeoutMin.
	HeartbeatInterval time.Duration

	// StallBound is how long a storage write may run before the node
	// counts its disk stalled: it then serves nothing (ErrStorageStalled,
	// so clients go to another member at once instead of waiting out
	// their deadlines), reports not ready, and no longer claims to lead,
	// until the write completes. A stalled leader also stops
	// heartbeating (its Ready loop waits on the write), so the others
	// elect a new one. Zero means five maximum election timeouts (1.5 s
	// by default); negative turns the rule off.
	StallBound time.Duration

	// MaxCommandBytes caps the size of one proposed command. Default 1.5 MiB
	// (a 1 MiB value plus its key and framing).
	MaxCommandBytes int

	// MaxSizePerMsg caps the bytes of entries in one append message.
	// Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs bounds append messages in flight per follower.
	// While that many are unacknowledged the leader holds new entries
	// back and sends them together in the next message (up to
	// MaxSizePerMsg), so under load a follower gets fewer, larger appends
	// and syncs its log fewer times per entry: at 256 every proposal went
	// out as its own message, and each follower Ready (one fsync) covered
	// few entries. Default 16 (BENCHMARKS.md: 256 -> 16 cut CPU per write
	// by about a fifth at 256 concurrent writers).
	MaxInflightMsgs int
	// MaxInflightBytes bounds the bytes of entries in flight per follower,
	// so a slow follower cannot hold the leader's memory. Default 32 MiB.
	MaxInflightBytes uint64
	// MaxUncommittedEntriesSize bounds the leader's uncommitted log tail;
	// proposals beyond it are refused with ErrNoLeader-like back-pressure.
	// Default 64 MiB.
	MaxUncommittedEntriesSize uint64
	// MaxCommittedSizePerReady bounds the committed entries handed to the
	// state machine per Ready. Default 8 MiB.
	MaxCommittedSizePerReady uint64

	// ReadIndexTimeout bounds one ReadIndex round before it is retried
	// with a fresh request context. Default 1s.
	ReadIndexTimeout time.Duration

	// FastFailover makes a follower that learns the leader's process is
	// gone (its transport found nothing listening at the leader's address)
	// forget the leader and campaign at once, instead of waiting out the
	// election timeout. Survivors take turns FailoverJitter apart (by raft
	// id) so they do not split the vote. PreVote
	// and CheckQuorum keep this from disturbing a leader that still
	// reaches a quorum. Default true.
	FastFailover bool
	// FailoverJitter is the gap between survivors' fast-failover
	// campaigns. Default 10ms.
	FailoverJitter time.Duration

	// SnapshotThreshold is the least number of entries applied between two
	// snapshots of the state machine (if it implements Snapshotter); after
	// each snapshot the log is compacted. 0 turns snapshots off. Default
	// 1000 (the seed's snapshotInterval, counted in entries). Under load
	// SnapshotSpacing may space snapshots further apart.
	SnapshotThreshold uint64
	// SnapshotSpacing bounds the share of time spent writing snapshots:
	// after a snapshot that took d to write, the next starts no sooner than
	// SnapshotSpacing*d after it ended, however many entries were applied
	// meanwhile (SnapshotThresholdBytes still forces one). A snapshot's
	// fsyncs compete with the log's on the same disk, and one every
	// SnapshotThreshold entries at thousands of writes per second halved
	// write throughput (BENCHMARKS.md). 0 spaces by entries alone.
	// Default 50 (at most ~2% of the time).
	SnapshotSpacing int
	// SnapshotThresholdBytes also triggers a snapshot once this many bytes
	// of entries were applied since the last, so a few huge commands
	// cannot grow the log without bound (etcd-io/etcd#12548). Default
	// 64 MiB.
	SnapshotThresholdBytes uint64
	// SnapshotCatchUpEntries is how many entries below a snapshot stay in
	// the log, so a follower only slightly behind is sent entries rather
	// than the whole state. Default 5000.
	SnapshotCatchUpEntries uint64
	// SnapshotRetain is how many snapshots are kept, the newest included.
	// Default 3.
	SnapshotRetain int
	// Snapshots keeps snapshot data (storage.SnapshotDir on disk). Nil
	// keeps it in memory, which only suits a node whose LogStorage is not
	// durable either.
	Snapshots SnapshotStore

	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
	// Observer, if set, is told of storage saves, applied commands and
	// snapshots as they happen (latency histograms; see Observer). Nil
	// costs a nil check.
	Observer Observer
	// Tracer, if set, traces each Propose as a span (a child of the
	// caller's context's span) that ends when the entry is applied, with
	// "committed" and "applied" events. Nil turns tracing off at the cost
	// of a nil check.
	Tracer trace.Tracer
}

// DefaultConfig returns a Config with the seed's timing defaults (150-300 ms
// election timeout, 50 ms heartbeat, 10 ms tick) for the node named id.
func DefaultConfig(id string) Config {
	return Config{
		ID:                        id,
		PromoteLag:                64,
		AutoPromote:               true,
		TickInterval:              10 * time.Millisecond,
		ElectionTimeoutMin:        150 * time.Millisecond,
		ElectionTimeoutMax:        300 * time.Millisecond,
		HeartbeatInterval:         50 * time.Millisecond,
		MaxCommandBytes:           3 << 19,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           16,
		MaxInflightBytes:          32 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		ReadIndexTimeout:          time.Second,
		FastFailover:              true,
		FailoverJitter:            10 * time.Millisecond,
		SnapshotThreshold:         1000,
		SnapshotSpacing:           50,
		SnapshotThresholdBytes:    64 << 20,
		SnapshotCatchUpEntries:    5000,
		SnapshotRetain:            3,
	}
}

// Validate reports the first problem with c, or nil.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("config: node id is required")
	case c.TickInterval <= 0:
		return errors.New("config: tick interval must be positive")
	case c.HeartbeatInterval < c.TickInterval:
		return fmt.Errorf("config: heartbeat interval %v is shorter than one tick (%v)", c.HeartbeatInterval, c.TickInterval)
	case c.ElectionTimeoutMin < 3*c.HeartbeatInterval:
		return fmt.Errorf("config: election timeout %v must be at least 3 heartbeat intervals (%v)", c.ElectionTimeoutMin, 3*c.HeartbeatInterval)
	case c.ElectionTimeoutMax != 2*c.ElectionTimeoutMin:
		return fmt.Errorf("config: election timeout max %v must be twice the min %v (raft randomises in [min, 2*min))", c.ElectionTimeoutMax, c.ElectionTimeoutMin)
	case c.MaxCommandBytes <= 0 || c.MaxSizePerMsg == 0 || c.MaxInflightMsgs <= 0:
		return errors.New("config: size and inflight limits must be positive")
	case c.ReadIndexTimeout <= 0:
		return errors.New("config: read index timeout must be positive")
	case c.Join && len(c.Peers) < 2:
		return errors.New("config: joining needs the cluster's members in peers")
	case c.FailoverJitter < 0 || c.FailoverJitter >= c.ElectionTimeoutMin:
		return fmt.Errorf("config: failover jitter %v must be in [0, election timeout %v)", c.FailoverJitter, c.ElectionTimeoutMin)
	case c.SnapshotRetain < 1:
		return errors.New("config: snapshot retain must be at least 1 (the newest snapshot)")
	case c.SnapshotSpacing < 0:
		return errors.New("config: snapshot spacing must not be negative")
	}
	if _, ok := c.Peers[c.ID]; len(c.Peers) > 0 && !ok {
		return fmt.Errorf("config: peers do not include this node %q", c.ID)
	}
	ids := make(map[uint64]string, len(c.Peers))
	for name := range c.Peers {
		if name == "" {
			return errors.New("config: empty peer name")
		}
		id := RaftID(name)
		if other, dup := ids[id]; dup {
			return fmt.Errorf("config: peer names %q and %q map to the same raft id", name, other)
		}
		ids[id] = name
	}
	return nil
}

func (c *Config) electionTicks() int  { return int(c.ElectionTimeoutMin / c.TickInterval) }
func (c *Config) heartbeatTicks() int { return int(c.HeartbeatInterval / c.TickInterval) }
