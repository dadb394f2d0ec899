package server

// GET /v1/overview: what a person watching the cluster wants at a glance,
// in one answer the dashboard polls once a second.

import (
	"context"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

const overviewPath = "/v1/overview"

// requestWindowSlots is how many one-second slots requestStats keeps: the
// rates and latencies of /v1/overview cover the last 10 s.
const requestWindowSlots = 10

// Latency buckets: bucket i holds latencies up to latencyBase *
// 2^(i/4), a quarter octave (19 %) apart, from 10 us to about 80 s; the
// last bucket holds everything slower.
const (
	latencyBuckets = 96
	latencyBase    = 10 * time.Microsecond
)

// requestKind is what a request did, as /v1/overview counts it.
type requestKind int

const (
	kindRead requestKind = iota
	kindWrite
	kindClientError // answered 4xx
	kindServerError // answered 5xx
	requestKinds
)

// requestSlot counts one second of requests.
type requestSlot struct {
	second  int64 // Unix second the slot holds; another means empty
	count   [requestKinds]uint64
	latency [2][latencyBuckets]uint32 // reads, writes
}

// requestStats counts the data requests this node answers (HTTP and
// /v1/ws; not the dashboard's own polls of status, health and events) in
// a ring of one-second slots, so that /v1/overview can give rates and
// latency quantiles over the last few seconds. Bounded: a fixed ring, no
// per-request allocation. Safe for concurrent use.
type requestStats struct {
	mu     sync.Mutex
	now    func() time.Time
	start  time.Time
	slots  [requestWindowSlots]requestSlot
	totals [requestKinds]uint64
}

func newRequestStats(now func() time.Time) *requestStats {
	return &requestStats{now: now, start: now()}
}

// latencyBucket returns the bucket of d.
func latencyBucket(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(4 * math.Log2(float64(d)/float64(latencyBase))))
	return min(i, latencyBuckets-1)
}

// bucketBound is the upper bound of bucket i.
func bucketBound(i int) time.Duration {
	return time.Duration(float64(latencyBase) * math.Exp2(float64(i)/4))
}

// record counts one request of kind read or write that took d and was
// answered with status (0 or 2xx/3xx: success).
func (s *requestStats) record(write bool, status int, d time.Duration) {
	kind := kindRead
	if write {
		kind = kindWrite
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.now().Unix()
	slot := &s.slots[sec%requestWindowSlots]
	if slot.second != sec {
		*slot = requestSlot{second: sec}
	}
	slot.count[kind]++
	s.totals[kind]++
	slot.latency[kind][latencyBucket(d)]++
	switch {
	case status >= 500:
		slot.count[kindServerError]++
		s.totals[kindServerError]++
	case status >= 400:
		slot.count[kindClientError]++
		s.totals[kindClientError]++
	}
}

// RequestRate is one kind of request over the window of an overview.
type RequestRate struct {
	// Count is how many there were in the window, PerSecond that over the
	// window's length.
	Count     uint64  `json:"count"`
	PerSecond float64 `json:"perSecond"`
	// P50Ms and P99Ms are latency quantiles in milliseconds (the upper
	// bound of a bucket a quarter octave wide), null without requests.
	P50Ms *float64 `json:"p50Ms,omitempty"`
	P99Ms *float64 `json:"p99Ms,omitempty"`
	// Total counts them since the node started.
	Total uint64 `json:"total"`
}

// RequestsOverview is the request rates of an overview.
type RequestsOverview struct {
	// WindowMs is the window's length: the last 10 s, or since the node
	// started if that is shorter.
	WindowMs     int64       `json:"windowMs"`
	Reads        RequestRate `json:"reads"`
	Writes       RequestRate `json:"writes"`
	ClientErrors RequestRate `json:"clientErrors"`
	ServerErrors RequestRate `json:"serverErrors"`
}

// window sums the slots of the last requestWindowSlots seconds.
func (s *requestStats) window() RequestsOverview {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	sec := now.Unix()
	var count [requestKinds]uint64
	var lat [2][latencyBuckets]uint64
	for i := range s.slots {
		slot := &s.slots[i]
		if slot.second <= sec-requestWindowSlots || slot.second > sec {
			continue
		}
		for k := range count {
			count[k] += slot.count[k]
		}
		for k := range lat {
			for b, n := range slot.latency[k] {
				lat[k][b] += uint64(n)
			}
		}
	}
	// The window ends now and begins at the start of the oldest second
	// it may hold, or when counting began.
	begin := time.Unix(sec-requestWindowSlots+1, 0)
	if s.start.After(begin) {
		begin = s.start
	}
	span := max(now.Sub(begin), time.Millisecond)
	rate := func(k requestKind) RequestRate {
		r := RequestRate{Count: count[k], PerSecond: float64(count[k]) / span.Seconds(), Total: s.totals[k]}
		if k == kindRead || k == kindWrite {
			r.P50Ms, r.P99Ms = quantileMs(lat[k][:], 0.50), quantileMs(lat[k][:], 0.99)
		}
		return r
	}
	return RequestsOverview{WindowMs: span.Milliseconds(), Reads: rate(kindRead), Writes: rate(kindWrite),
		ClientErrors: rate(kindClientError), ServerErrors: rate(kindServerError)}
}

// quantileMs returns the q quantile of the histogram in milliseconds, or
// nil when it is empty.
func quantileMs(hist []uint64, q float64) *float64 {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return nil
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range hist {
		seen += n
		if seen >= rank {
			ms := float64(bucketBound(i)) / float64(time.Millisecond)
			return &ms
		}
	}
	return nil // not reached
}

// httpRequestKind classifies an HTTP request on route (routeOf) for
// requestStats: reads and writes of data; ok false for everything else
// (status, health, events, metrics, the dashboard: the page's own polls
// would otherwise be most of the reads).
func httpRequestKind(method, route string) (write, ok bool) {
	switch {
	case route == "/v1/kv", route == "/v1/kv/{key}", route == workflowsPath, strings.HasPrefix(route, workflowsPath+"/"),
		route == nodesPath, route == "/v1/nodes/{id}":
	case route == txnPath:
		return true, true
	default:
		return false, false
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return false, true
	case http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
		return true, true
	}
	return false, false
}

// wsOpIsWrite classifies a /v1/ws operation for requestStats; ok false
// for status.
func wsOpIsWrite(op api.Op) (write, ok bool) {
	return op.IsWrite(), op.Known() && op != api.OpStatus
}

// wsErrorStatus is the HTTP status an error code of /v1/ws stands for,
// so that /v1/ws errors count as client or server errors as HTTP ones do.
func wsErrorStatus(e *apiError) int {
	if e == nil {
		return 0
	}
	return e.status
}

// Overview is the body of GET /v1/overview: this node's view, read
// locally (it answers without a leader).
type Overview struct {
	NodeID string `json:"nodeId"`
	// Time is this node's clock when it answered.
	Time time.Time `json:"time"`
	// Keys of MaxKeys are used; Revision is the last applied write's.
	Keys     int   `json:"keys"`
	MaxKeys  int   `json:"maxKeys"`
	Bytes    int64 `json:"bytes"`
	Revision int64 `json:"revision"`
	// Workflows counts the workflows by status ("running", "stopped", or
	// what an update set); WorkflowsTotal is their number.
	Workflows      map[string]int `json:"workflows"`
	WorkflowsTotal int            `json:"workflowsTotal"`
	// RegisteredNodes counts the application nodes registered in the
	// state (POST /v1/nodes), not raft members.
	RegisteredNodes int `json:"registeredNodes"`
	// Requests are the data requests this node answered (HTTP and /v1/ws).
	Requests RequestsOverview `json:"requests"`
	// LeaderChanges counts the leader_elected events this node has seen
	// since it started; null when events are not recorded here.
	LeaderChanges *uint64 `json:"leaderChanges"`
	// Term is the current raft term.
	Term uint64 `json:"term"`
	// Leases and Locks describe the coordination state; absent when the
	// backend serves no locks (OverviewLockBackend).
	Leases *LeasesOverview `json:"leases,omitempty"`
	Locks  *LocksOverview  `json:"locks,omitempty"`
	// Queues are the task queues holding tasks (overview_queues.go);
	// absent when the backend serves no queues.
	Queues *QueuesOverview `json:"queues,omitempty"`
	// Schedules are the schedules with their next tick; absent when the
	// backend serves no schedules.
	Schedules *SchedulesOverview `json:"schedules,omitempty"`
}

// overviewLocks is how many locks an overview lists, the first by name.
const overviewLocks = 100

// OverviewLockBackend is implemented by a Backend that can list its locks
// and count its leases (kv.Store); /v1/overview leaves leases and locks out
// without it.
type OverviewLockBackend interface {
	// Locks returns the first limit locks by name and how many there are.
	Locks(ctx context.Context, c kv.Consistency, limit int) ([]kv.LockInfo, int, error)
	// LeaseCount returns how many leases the state holds.
	LeaseCount(ctx context.Context, c kv.Consistency) (int, error)
}

// OverviewCountdownBackend is implemented by a Backend whose leader
// counts its leases down (kv.Store): on the leader, /v1/overview then
// shows the time left of the locks' holders and the leases that expire
// soonest.
type OverviewCountdownBackend interface {
	// LeaseCountdowns is kv.Lessor.Countdowns.
	LeaseCountdowns(ids []kv.LeaseID, n int) (map[kv.LeaseID]int64, []kv.Lease, bool)
}

// overviewSoonest is how many of the leases expiring soonest an overview
// lists.
const overviewSoonest = 10

// LeasesOverview is the leases of an overview.
type LeasesOverview struct {
	// Count is how many leases the state holds.
	Count int `json:"count"`
	// Counted is true on the leader, whose clock counts the leases down:
	// only then are Soonest and the locks' RemainingMs given.
	Counted bool `json:"counted"`
	// Soonest are the leases that expire first (up to 10), with their
	// time left by the leader's clock.
	Soonest []api.Lease `json:"soonest,omitempty"`
}

// LocksOverview is the locks of an overview: the first 100 by name, of
// Total.
type LocksOverview struct {
	Total int            `json:"total"`
	Items []OverviewLock `json:"items"`
}

// OverviewLock is one lock of an overview: its name, holder's lease and
// fencing token, how many wait, and, for the lock behind an election
// ("election/<name>"), the election's name and its leader's value.
type OverviewLock struct {
	api.Lock
	Election string `json:"election,omitempty"`
	// RemainingMs is the time its holder's lease has left by the
	// leader's clock; on the leader only.
	RemainingMs *int64 `json:"remainingMs,omitempty"`
}

// serveOverview answers GET /v1/overview from this node's state alone:
// local reads, never waiting for a leader, so that a node cut off from the
// cluster still shows what it knows. Counting workflows walks them in a
// frozen view, one at a time (O(workflows) time, constant memory); locks
// are bounded to the first 100 by name.
func (h *apiHandler) serveOverview(w http.ResponseWriter, r *http.Request) {
	if _, ok := parseQuery(w, r); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	st := h.backend.Status()
	stats, err := h.backend.Stats(ctx, kv.Local)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	o := Overview{NodeID: st.NodeID, Time: time.Now(), Keys: stats.Keys, MaxKeys: stats.MaxKeys, Bytes: stats.Bytes,
		Revision: stats.Revision, Workflows: map[string]int{}, Requests: h.requests.window(), Term: st.Term}
	if err := h.countWorkflowsAndNodes(ctx, &o); err != nil {
		h.fail(w, r, err)
		return
	}
	if h.opts.Events != nil {
		n := h.opts.Events.Elections()
		o.LeaderChanges = &n
	}
	if lb, ok := h.backend.(OverviewLockBackend); ok {
		leases, err := lb.LeaseCount(ctx, kv.Local)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		locks, total, err := lb.Locks(ctx, kv.Local, overviewLocks)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		o.Leases = &LeasesOverview{Count: leases}
		o.Locks = &LocksOverview{Total: total, Items: make([]OverviewLock, len(locks))}
		for i, l := range locks {
			o.Locks.Items[i].Lock = l
			o.Locks.Items[i].Election, _ = kv.ElectionOf(l.Name)
		}
		if cb, ok := h.backend.(OverviewCountdownBackend); ok {
			holders := make([]kv.LeaseID, len(locks))
			for i, l := range locks {
				holders[i] = l.Lease
			}
			if left, soonest, ok := cb.LeaseCountdowns(holders, overviewSoonest); ok {
				o.Leases.Counted, o.Leases.Soonest = true, soonest
				for i := range o.Locks.Items {
					if ms, ok := left[o.Locks.Items[i].Lease]; ok {
						o.Locks.Items[i].RemainingMs = &ms
					}
				}
			}
		}
	}
	h.overviewQueuesOf(&o)
	h.writeJSON(w, http.StatusOK, o)
}

// countWorkflowsAndNodes counts the workflows by status and the
// registered nodes into o: from a frozen view, item by item, when the
// backend is a ListBackend, so that the dashboard never holds a whole
// prefix; else from the whole lists.
func (h *apiHandler) countWorkflowsAndNodes(ctx context.Context, o *Overview) error {
	if lb, ok := h.backend.(ListBackend); ok {
		view, err := lb.ReadView(ctx, kv.Local)
		if err != nil {
			return err
		}
		view.Range(kv.WorkflowPrefix, "", func(it kv.Item) bool {
			o.Workflows[api.StatusOf(it.Value)]++
			o.WorkflowsTotal++
			return true
		})
		view.Range(kv.NodePrefix, "", func(kv.Item) bool {
			o.RegisteredNodes++
			return true
		})
		return nil
	}
	workflows, _, err := h.backend.Workflows(ctx, kv.Local)
	if err != nil {
		return err
	}
	nodes, _, err := h.backend.Nodes(ctx, kv.Local)
	if err != nil {
		return err
	}
	o.WorkflowsTotal, o.RegisteredNodes = len(workflows), len(nodes)
	for _, wf := range workflows {
		o.Workflows[wf.Status]++
	}
	return nil
}
