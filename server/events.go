package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/cluster"
)

const eventsPath = "/v1/events"

// DefaultEventLogSize is how many events an EventLog keeps when asked for
// zero or fewer: enough for the dashboard to show a few minutes of a busy
// cluster's history, small enough (a few hundred bytes each) to never
// matter for memory.
const DefaultEventLogSize = 512

// RecordedEvent is one cluster event as kept by an EventLog and served by
// GET /v1/events. Fields that do not apply to its Type are zero.
type RecordedEvent struct {
	// Seq numbers the events of one EventLog from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Time is when this node recorded the event.
	Time time.Time `json:"time"`
	// Type is the event's name: a consensus.EventType or a cluster event
	// (leader_elected, became_follower, node_joined, node_promoted,
	// node_left, removed, node_health_changed, node_unhealthy,
	// peer_connected, peer_disconnected), or snapshot_created /
	// snapshot_restored.
	Type string `json:"type"`
	// NodeID is the node the event is about.
	NodeID string `json:"nodeId,omitempty"`
	// LeaderID and Term: the leader known after the event.
	LeaderID string `json:"leaderId,omitempty"`
	Term     uint64 `json:"term,omitempty"`
	// Member is the member a membership event is about.
	Member *consensus.Member `json:"member,omitempty"`
	// Previous and Current are the health before and after a health event.
	Previous cluster.Health `json:"previous,omitempty"`
	Current  cluster.Health `json:"current,omitempty"`
	// Index and Bytes describe a snapshot: the last log index it covers
	// and the size of its data.
	Index uint64 `json:"index,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
}

// EventLog keeps the most recent events one node has seen, in a ring of a
// fixed size: a new event past the size overwrites the oldest. It is the
// memory behind GET /v1/events, which pollers read with ?after=<seq>.
// Its methods are safe for concurrent use.
type EventLog struct {
	mu     sync.Mutex
	ring   []RecordedEvent
	oldest int    // index in ring of the oldest event held
	held   int    // events held, at most len(ring)
	last   uint64 // Seq of the newest event, 0 before the first
	// elections counts leader_elected events ever recorded (the ring
	// forgets them; this count does not).
	elections uint64
	started   time.Time
	now       func() time.Time
}

// NewEventLog returns an empty log that keeps the size most recent events
// (DefaultEventLogSize if size <= 0).
func NewEventLog(size int) *EventLog {
	if size <= 0 {
		size = DefaultEventLogSize
	}
	return &EventLog{ring: make([]RecordedEvent, size), started: time.Now(), now: time.Now}
}

// Record appends e, setting its Seq and, if zero, its Time, and returns the
// Seq given.
func (l *EventLog) Record(e RecordedEvent) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	e.Seq = l.last
	if e.Type == string(consensus.EventLeaderElected) {
		l.elections++
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if l.held < len(l.ring) {
		l.ring[(l.oldest+l.held)%len(l.ring)] = e
		l.held++
	} else {
		l.ring[l.oldest] = e
		l.oldest = (l.oldest + 1) % len(l.ring)
	}
	return e.Seq
}

// Elections returns how many leader_elected events the log has recorded,
// including those its ring has since overwritten.
func (l *EventLog) Elections() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.elections
}

// EventsResponse is the body of GET /v1/events.
type EventsResponse struct {
	// Events are the events held with a Seq above the request's after,
	// oldest first.
	Events []RecordedEvent `json:"events"`
	// LastSeq is the Seq of the newest event recorded (0: none yet); the
	// next poll asks for ?after=LastSeq.
	LastSeq uint64 `json:"lastSeq"`
	// OldestSeq is the Seq of the oldest event still held (0: none).
	OldestSeq uint64 `json:"oldestSeq"`
	// Missed counts the events after the request's after that the ring
	// has already overwritten.
	Missed uint64 `json:"missed"`
	// Since is when this log started. Sequence numbers start again at 1
	// when the node restarts: a poller that sees Since change (or LastSeq
	// fall below its after) starts again from after=0.
	Since time.Time `json:"since"`
}

// After returns the events held with a Seq above after, oldest first.
func (l *EventLog) After(after uint64) EventsResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	resp := EventsResponse{Events: []RecordedEvent{}, LastSeq: l.last, Since: l.started}
	if l.held == 0 {
		return resp
	}
	resp.OldestSeq = l.last - uint64(l.held) + 1
	if after+1 < resp.OldestSeq {
		resp.Missed = resp.OldestSeq - after - 1
	}
	for i := range l.held {
		e := l.ring[(l.oldest+i)%len(l.ring)]
		if e.Seq > after {
			resp.Events = append(resp.Events, e)
		}
	}
	return resp
}

// follow records the manager's events (the node's own, forwarded, and its
// health and peer events) and the node's snapshot events until stop is
// closed. The subscriptions are taken by the caller, before the events of
// interest can happen, and closed here.
func (l *EventLog) follow(self string, events *consensus.Subscription[cluster.Event],
	snaps *consensus.Subscription[consensus.SnapshotEvent], stop <-chan struct{}) {
	defer events.Close()
	defer snaps.Close()
	for {
		select {
		case e, ok := <-events.C():
			if !ok {
				return
			}
			l.Record(RecordedEvent{Type: string(e.Type), NodeID: e.NodeID, LeaderID: e.LeaderID,
				Term: e.Term, Member: e.Member, Previous: e.Previous, Current: e.Current})
		case s, ok := <-snaps.C():
			if !ok {
				return
			}
			l.Record(RecordedEvent{Type: s.Type.String(), NodeID: self, Term: s.Term, Index: s.Index, Bytes: s.Bytes})
		case <-stop:
			return
		}
	}
}

// serveEvents serves GET /v1/events?after=SEQ: the recent events this node
// has seen with a sequence number above SEQ (default 0: all it holds).
func (h *apiHandler) serveEvents(w http.ResponseWriter, r *http.Request) {
	if h.opts.Events == nil {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "events are not served here"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	raw, ok := singleParam(w, query, "after")
	if !ok {
		return
	}
	var after uint64
	if _, given := query["after"]; given {
		var err error
		after, err = strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
				message: "after must be a sequence number (a non-negative integer)"})
			return
		}
	}
	h.writeJSON(w, http.StatusOK, h.opts.Events.After(after))
}
