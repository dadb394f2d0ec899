package consensus

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Observer is told of what happens on the node's hot paths, for metrics
// that need each occurrence (latency histograms) rather than a counter the
// node keeps (Metrics). Set it in Config.Observer; nil costs one nil
// check per use.
//
// Methods are called from the raft loop (StorageSaved, CommandApplied) and
// from the snapshot writer (SnapshotDone), possibly concurrently with each
// other. They must return quickly, never block, and never call back into
// the node: the raft loop waits for them.
type Observer interface {
	// StorageSaved reports that one LogStorage.Save (the hard state,
	// entries and snapshot of one Ready, synced when raft requires it)
	// took d.
	StorageSaved(d time.Duration)
	// CommandApplied reports that applying one committed command to the
	// state machine took d.
	CommandApplied(d time.Duration)
	// SnapshotDone reports a snapshot taken or installed; the same event
	// SubscribeSnapshots delivers, never dropped.
	SnapshotDone(ev SnapshotEvent)
}

// SyncObserver is an Observer that also hears how long each Save took
// that raft required to be durable (Ready.MustSync): the writes a
// proposal's acknowledgement waits on, fsync included, which etcd reports
// as its WAL fsync duration. Its method is called from the raft loop,
// after StorageSaved, under the same rules.
type SyncObserver interface {
	StorageSynced(d time.Duration)
}

// Metrics are a node's cumulative counters and current raft position,
// read atomically one by one (not one consistent snapshot). They are what
// a metrics exporter polls; none of them costs a lock to keep.
type Metrics struct {
	// Proposals counts Propose calls; ProposalsFailed those that returned
	// an error (not proposed, timed out with the outcome unknown, or
	// stopped).
	Proposals, ProposalsFailed uint64
	// EntriesCommitted counts log entries this node learnt were committed
	// (and then applied, in order): commands, conf changes and leaders'
	// empty entries. EntriesApplied counts the commands among them that
	// reached the state machine (duplicates of one proposal are skipped).
	EntriesCommitted, EntriesApplied uint64
	// LeaderChanges counts the times this node learnt of a new leader
	// (itself included).
	LeaderChanges uint64
	// Term, CommitIndex, AppliedIndex and SnapshotIndex are as in Status.
	Term, CommitIndex, AppliedIndex, SnapshotIndex uint64
	// IsLeader reports whether this node leads.
	IsLeader bool
	// StorageStalled reports that the storage write under way has run
	// longer than Config.StallBound (the node serves nothing meanwhile).
	StorageStalled bool
}

// nodeCounters are the live form of Metrics' counters.
type nodeCounters struct {
	proposals, proposalsFailed       atomic.Uint64
	entriesCommitted, entriesApplied atomic.Uint64
	leaderChanges                    atomic.Uint64
	// tracedInFlight counts traced proposals waiting for their result;
	// while it is 0 the raft loop reads no clock for them.
	tracedInFlight atomic.Int64
	// readyAt (raft loop only) is when the Ready being handled arrived,
	// set only while a traced proposal waits.
	readyAt time.Time
}

// Metrics returns the node's counters and raft position.
func (n *Node) Metrics() Metrics {
	c := &n.counters
	return Metrics{
		Proposals:        c.proposals.Load(),
		ProposalsFailed:  c.proposalsFailed.Load(),
		EntriesCommitted: c.entriesCommitted.Load(),
		EntriesApplied:   c.entriesApplied.Load(),
		LeaderChanges:    c.leaderChanges.Load(),
		Term:             n.pos.term.Load(),
		CommitIndex:      n.pos.commit.Load(),
		AppliedIndex:     n.AppliedIndex(),
		SnapshotIndex:    n.snaps.index.Load(),
		IsLeader:         n.IsLeader(),
		StorageStalled:   n.storageStalled(),
	}
}

// publishSnapshot delivers a snapshot event to subscribers and the
// observer.
func (n *Node) publishSnapshot(ev SnapshotEvent) {
	n.snaps.events.Publish(ev)
	if n.cfg.Observer != nil {
		n.cfg.Observer.SnapshotDone(ev)
	}
}

// proposalTrace is written by the raft loop before it sends the result on
// the proposal's channel, and read by the proposer only after receiving
// it (the channel orders the two).
type proposalTrace struct {
	index                  uint64
	committedAt, appliedAt time.Time
}

// markTraceClock, at the start of a Ready, notes the time if a traced
// proposal is waiting: its entry, if in this Ready's committed entries,
// was known committed then. One atomic load when tracing is off.
func (n *Node) markTraceClock() {
	if n.counters.tracedInFlight.Load() > 0 {
		n.counters.readyAt = time.Now()
	}
}

// proposeTraced is Propose under a span that starts as the proposal is
// made and ends when its result is back (applied here) or the wait fails,
// with the events "committed" and "applied" at the times the raft loop
// saw them.
func (n *Node) proposeTraced(ctx context.Context, cmd []byte) (any, error) {
	ctx, span := n.cfg.Tracer.Start(ctx, "consensus.propose",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.Int("consensus.command.bytes", len(cmd))))
	defer span.End()
	tr := &proposalTrace{}
	n.counters.tracedInFlight.Add(1)
	result, err := n.propose(ctx, cmd, tr)
	n.counters.tracedInFlight.Add(-1)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return result, err
	}
	if tr.committedAt.IsZero() || tr.committedAt.After(tr.appliedAt) {
		tr.committedAt = tr.appliedAt // applied in the Ready that carried it
	}
	idx := attribute.Int64("consensus.index", int64(tr.index))
	span.SetAttributes(idx)
	span.AddEvent("committed", trace.WithTimestamp(tr.committedAt), trace.WithAttributes(idx))
	span.AddEvent("applied", trace.WithTimestamp(tr.appliedAt), trace.WithAttributes(idx))
	return result, nil
}
