package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/transport"
)

// Histogram bucket bounds, in seconds or bytes.
var (
	applyBuckets    = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1}
	saveBuckets     = []float64{5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5}
	snapDurBuckets  = []float64{1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	snapSizeBuckets = []float64{1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28, 1 << 30}
	httpBuckets     = []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// NodeObserver implements consensus.Observer with histograms.
// StorageSaved and CommandApplied, called on the raft loop, do not
// allocate.
type NodeObserver struct {
	apply, save, fsync    metric.Float64Histogram
	snapDur, snapSize     metric.Float64Histogram
	snapCount             metric.Int64Counter
	createdAttr, restAttr metric.MeasurementOption
}

// NewNodeObserver makes the node's hook-fed instruments on t's meter:
// consensus.apply.duration, consensus.storage.save.duration,
// consensus.storage.fsync.duration,
// consensus.snapshots, consensus.snapshot.duration and
// consensus.snapshot.size.
func (t *Telemetry) NewNodeObserver() (*NodeObserver, error) {
	m := t.meter
	o := &NodeObserver{
		createdAttr: metric.WithAttributeSet(attribute.NewSet(attribute.String("type", "created"))),
		restAttr:    metric.WithAttributeSet(attribute.NewSet(attribute.String("type", "restored"))),
	}
	var errs [6]error
	o.apply, errs[0] = m.Float64Histogram("consensus.apply.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to apply one committed command to the state machine."),
		metric.WithExplicitBucketBoundaries(applyBuckets...))
	o.save, errs[1] = m.Float64Histogram("consensus.storage.save.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to write (and fsync when raft requires it) one Ready's hard state, entries and snapshot."),
		metric.WithExplicitBucketBoundaries(saveBuckets...))
	o.fsync, errs[5] = m.Float64Histogram("consensus.storage.fsync.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to write and fsync one Ready that raft required to be durable (what an acknowledged write waits on; etcd's wal_fsync_duration)."),
		metric.WithExplicitBucketBoundaries(saveBuckets...))
	o.snapDur, errs[2] = m.Float64Histogram("consensus.snapshot.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to write a snapshot taken (type=created) or to restore one (type=restored)."),
		metric.WithExplicitBucketBoundaries(snapDurBuckets...))
	o.snapSize, errs[3] = m.Float64Histogram("consensus.snapshot.size", metric.WithUnit("By"),
		metric.WithDescription("Size of the data of snapshots taken or restored."),
		metric.WithExplicitBucketBoundaries(snapSizeBuckets...))
	o.snapCount, errs[4] = m.Int64Counter("consensus.snapshots",
		metric.WithDescription("Snapshots taken (type=created) or installed (type=restored)."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("telemetry: node instruments: %w", err)
	}
	return o, nil
}

// StorageSaved implements consensus.Observer.
func (o *NodeObserver) StorageSaved(d time.Duration) {
	o.save.Record(context.Background(), d.Seconds())
}

// StorageSynced implements consensus.SyncObserver.
func (o *NodeObserver) StorageSynced(d time.Duration) {
	o.fsync.Record(context.Background(), d.Seconds())
}

// CommandApplied implements consensus.Observer.
func (o *NodeObserver) CommandApplied(d time.Duration) {
	o.apply.Record(context.Background(), d.Seconds())
}

// SnapshotDone implements consensus.Observer.
func (o *NodeObserver) SnapshotDone(ev consensus.SnapshotEvent) {
	attr := o.createdAttr
	if ev.Type == consensus.SnapshotRestored {
		attr = o.restAttr
	}
	ctx := context.Background()
	o.snapCount.Add(ctx, 1, attr)
	o.snapDur.Record(ctx, ev.Duration.Seconds(), attr)
	o.snapSize.Record(ctx, float64(ev.Bytes), attr)
}

// Sources are what RegisterNode's observable instruments read at each
// collection (a scrape of /metrics, an OTLP export).
type Sources struct {
	// Node is required.
	Node interface{ Metrics() consensus.Metrics }
	// Transport, if set, gives the peer counters.
	Transport interface {
		PeerStats() []transport.PeerStats
		Stats() transport.Stats
	}
	// Cluster, if set, gives members by health.
	Cluster interface{ Stats() cluster.Stats }
	// WatchesOpen, if set, counts the open watch streams.
	WatchesOpen func() int
	// WatchesEnded, if set, counts the watch streams the server ended
	// itself: stalled (a write to the client blocked for the write
	// timeout) and behind (the watcher fell out of the history).
	WatchesEnded func() (stalled, behind int64)
	// Diverged, if set, reports whether this member's state diverged from
	// the majority's (the divergence check).
	Diverged func() bool
}

// RegisterNode makes the observable instruments that read the counters
// src keeps; nothing is added to the hot paths. It returns a func that
// unregisters them.
func (t *Telemetry) RegisterNode(src Sources) (func() error, error) {
	m := t.meter
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		opts := []metric.Int64ObservableCounterOption{metric.WithDescription(desc)}
		if unit != "" {
			opts = append(opts, metric.WithUnit(unit))
		}
		c, err := m.Int64ObservableCounter(name, opts...)
		errs = append(errs, err)
		return c
	}
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	proposals := counter("consensus.proposals", "", "Proposals made on this node (Propose calls).")
	proposalsFailed := counter("consensus.proposals.failed", "", "Proposals that returned an error: not proposed (no leader, too large), outcome unknown (timeout) or stopped.")
	committed := counter("consensus.entries.committed", "", "Log entries this node learnt were committed.")
	applied := counter("consensus.entries.applied", "", "Commands applied to the state machine.")
	leaderChanges := counter("consensus.leader.changes", "", "Times this node learnt of a new leader.")
	term := gauge("consensus.term", "Current raft term.")
	isLeader := gauge("consensus.is_leader", "1 if this node is the leader, else 0.")
	stalled := gauge("consensus.storage.stalled", "1 while a write to this node's disk has hung past its stall bound (it serves nothing), else 0.")
	commitIndex := gauge("consensus.commit.index", "Highest log index known committed.")
	appliedIndex := gauge("consensus.applied.index", "Highest log index applied.")
	snapIndex := gauge("consensus.snapshot.index", "Log index of the newest snapshot held.")
	observables := []metric.Observable{proposals, proposalsFailed, committed, applied, leaderChanges, term, isLeader, stalled, commitIndex, appliedIndex, snapIndex}

	var peerSent, peerRecv, peerMsgSent, peerMsgRecv, peerConnects, peerDisconnects, dropped, badFrames metric.Int64ObservableCounter
	var peerConnected metric.Int64ObservableGauge
	if src.Transport != nil {
		peerSent = counter("consensus.peer.sent", "By", "Bytes of frames written on the stream to a peer.")
		peerRecv = counter("consensus.peer.received", "By", "Bytes of frames read from a peer's stream.")
		peerMsgSent = counter("consensus.peer.messages.sent", "", "Raft messages sent to a peer.")
		peerMsgRecv = counter("consensus.peer.messages.received", "", "Raft messages received from a peer.")
		peerConnects = counter("consensus.peer.connects", "", "Times the stream to a peer came up.")
		peerDisconnects = counter("consensus.peer.disconnects", "", "Times the stream to a peer went down.")
		peerConnected = gauge("consensus.peer.connected", "1 while the stream to a peer is up.")
		dropped = counter("consensus.transport.messages.dropped", "", "Outbound raft messages dropped (queue full, peer down, write failed).")
		badFrames = counter("consensus.transport.bad_frames", "", "Inbound frames that did not decode.")
		observables = append(observables, peerSent, peerRecv, peerMsgSent, peerMsgRecv, peerConnects, peerDisconnects, peerConnected, dropped, badFrames)
	}
	var members metric.Int64ObservableGauge
	if src.Cluster != nil {
		members = gauge("consensus.cluster.members", "Members by health as this node sees them (health=healthy|degraded|unhealthy|unknown).")
		observables = append(observables, members)
	}
	var watches metric.Int64ObservableGauge
	if src.WatchesOpen != nil {
		watches = gauge("consensus.watches.open", "Watch streams open on this node.")
		observables = append(observables, watches)
	}
	var watchesEnded metric.Int64ObservableCounter
	if src.WatchesEnded != nil {
		watchesEnded = counter("consensus.watches.ended", "", "Watch streams the server ended itself, by reason: stalled (a write to the client blocked for the write timeout; the client resumes from its last id) or behind (the watcher fell out of the history; compacted).")
		observables = append(observables, watchesEnded)
	}
	var diverged metric.Int64ObservableGauge
	if src.Diverged != nil {
		diverged = gauge("consensus.state.diverged", "1 while this member's state hash differs from the majority's (it answers no reads), else 0.")
		observables = append(observables, diverged)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: node instruments: %w", err)
	}

	health := func(h string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("health", h)))
	}
	healthy, degraded, unhealthy, unknown := health("healthy"), health("degraded"), health("unhealthy"), health("unknown")
	reason := func(r string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	endedStalled, endedBehind := reason("stalled"), reason("behind")
	// peerAttrs caches one attribute set per peer; peers are few.
	var peerMu sync.Mutex
	peerAttrs := map[uint64]metric.ObserveOption{}
	peerAttr := func(ps transport.PeerStats) metric.ObserveOption {
		peerMu.Lock()
		defer peerMu.Unlock()
		a, ok := peerAttrs[ps.ID]
		if !ok {
			a = metric.WithAttributeSet(attribute.NewSet(attribute.String("peer", ps.Name)))
			peerAttrs[ps.ID] = a
		}
		return a
	}
	b2i := func(b bool) int64 {
		if b {
			return 1
		}
		return 0
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		nm := src.Node.Metrics()
		o.ObserveInt64(proposals, int64(nm.Proposals))
		o.ObserveInt64(proposalsFailed, int64(nm.ProposalsFailed))
		o.ObserveInt64(committed, int64(nm.EntriesCommitted))
		o.ObserveInt64(applied, int64(nm.EntriesApplied))
		o.ObserveInt64(leaderChanges, int64(nm.LeaderChanges))
		o.ObserveInt64(term, int64(nm.Term))
		o.ObserveInt64(isLeader, b2i(nm.IsLeader))
		o.ObserveInt64(stalled, b2i(nm.StorageStalled))
		o.ObserveInt64(commitIndex, int64(nm.CommitIndex))
		o.ObserveInt64(appliedIndex, int64(nm.AppliedIndex))
		o.ObserveInt64(snapIndex, int64(nm.SnapshotIndex))
		if src.Transport != nil {
			for _, ps := range src.Transport.PeerStats() {
				a := peerAttr(ps)
				o.ObserveInt64(peerSent, int64(ps.BytesSent), a)
				o.ObserveInt64(peerRecv, int64(ps.BytesReceived), a)
				o.ObserveInt64(peerMsgSent, int64(ps.MessagesSent), a)
				o.ObserveInt64(peerMsgRecv, int64(ps.MessagesReceived), a)
				o.ObserveInt64(peerConnects, int64(ps.Connects), a)
				o.ObserveInt64(peerDisconnects, int64(ps.Disconnects), a)
				// Up while the stream has come up more often than down.
				o.ObserveInt64(peerConnected, b2i(ps.Connects > ps.Disconnects), a)
			}
			st := src.Transport.Stats()
			o.ObserveInt64(dropped, int64(st.MessagesDropped))
			o.ObserveInt64(badFrames, int64(st.BadFrames))
		}
		if src.Cluster != nil {
			cs := src.Cluster.Stats()
			o.ObserveInt64(members, int64(cs.Healthy), healthy)
			o.ObserveInt64(members, int64(cs.Degraded), degraded)
			o.ObserveInt64(members, int64(cs.Unhealthy), unhealthy)
			o.ObserveInt64(members, int64(cs.Unknown), unknown)
		}
		if src.Diverged != nil {
			o.ObserveInt64(diverged, b2i(src.Diverged()))
		}
		if src.WatchesOpen != nil {
			o.ObserveInt64(watches, int64(src.WatchesOpen()))
		}
		if src.WatchesEnded != nil {
			stalled, behind := src.WatchesEnded()
			o.ObserveInt64(watchesEnded, stalled, endedStalled)
			o.ObserveInt64(watchesEnded, behind, endedBehind)
		}
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register node callback: %w", err)
	}
	return reg.Unregister, nil
}

// HTTPMetrics records the API's requests.
type HTTPMetrics struct {
	duration metric.Float64Histogram
	wsOps    metric.Int64Counter
	// attrs caches one attribute set per (method, route, status), and
	// wsAttrs one per (op, code); both are small, bounded by the routes
	// and codes. Plain maps: a lookup with a struct key allocates nothing.
	mu      sync.RWMutex
	attrs   map[httpKey]metric.MeasurementOption
	wsAttrs map[wsKey]metric.MeasurementOption
}

type httpKey struct {
	method, route string
	status        int
}

type wsKey struct{ op, code string }

// cached returns m[k], made by mk and stored on first use.
func cached[K comparable](mu *sync.RWMutex, m map[K]metric.MeasurementOption, k K, mk func() attribute.Set) metric.MeasurementOption {
	mu.RLock()
	a, ok := m[k]
	mu.RUnlock()
	if ok {
		return a
	}
	mu.Lock()
	defer mu.Unlock()
	if a, ok = m[k]; !ok {
		a = metric.WithAttributeSet(mk())
		m[k] = a
	}
	return a
}

// NewHTTPMetrics makes http.server.request.duration and
// consensus.ws.requests.
func (t *Telemetry) NewHTTPMetrics() (*HTTPMetrics, error) {
	h := &HTTPMetrics{attrs: map[httpKey]metric.MeasurementOption{}, wsAttrs: map[wsKey]metric.MeasurementOption{}}
	var err1, err2 error
	h.duration, err1 = t.meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("HTTP API request latency by method, route and status code (streams, /v1/ws and /v1/watch, excluded)."),
		metric.WithExplicitBucketBoundaries(httpBuckets...))
	h.wsOps, err2 = t.meter.Int64Counter("consensus.ws.requests",
		metric.WithDescription("Requests served on /v1/ws connections, by op and result code."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("telemetry: http instruments: %w", err)
	}
	return h, nil
}

// Request records one HTTP request. method must be one of a fixed few
// (the caller maps others to "other"), route a route template, never a
// raw path, so the number of series stays bounded.
func (h *HTTPMetrics) Request(ctx context.Context, method, route string, status int, d time.Duration) {
	a := cached(&h.mu, h.attrs, httpKey{method, route, status}, func() attribute.Set {
		return attribute.NewSet(
			attribute.String("http.request.method", method),
			attribute.String("http.route", route),
			attribute.Int("http.response.status_code", status))
	})
	h.duration.Record(ctx, d.Seconds(), a)
}

// WSRequest counts one /v1/ws request of op (a name from a fixed set)
// answered with code ("ok" or an error code).
func (h *HTTPMetrics) WSRequest(ctx context.Context, op, code string) {
	a := cached(&h.mu, h.wsAttrs, wsKey{op, code}, func() attribute.Set {
		return attribute.NewSet(attribute.String("op", op), attribute.String("code", code))
	})
	h.wsOps.Add(ctx, 1, a)
}
