package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
)

// Health is a member's health as one node sees it.
type Health = api.Health

// Health values.
const (
	HealthUnknown   = api.HealthUnknown
	HealthHealthy   = api.HealthHealthy
	HealthDegraded  = api.HealthDegraded
	HealthUnhealthy = api.HealthUnhealthy
	// HealthSuspect is a member in doubt but not yet unhealthy: its peer
	// stream is down (set the moment the transport reports it, without
	// waiting for a check), or its last checks failed but fewer than
	// MaxFailedHealthChecks of them.
	HealthSuspect = api.HealthSuspect
)

// Event types published by a Manager, beside the node's own
// (consensus.EventLeaderElected, EventBecameFollower, EventNodeJoined,
// EventNodeLeft, EventNodePromoted, EventRemoved), which it forwards.
const (
	EventHealthChanged    consensus.EventType = "node_health_changed"
	EventNodeUnhealthy    consensus.EventType = "node_unhealthy"
	EventPeerConnected    consensus.EventType = "peer_connected"
	EventPeerDisconnected consensus.EventType = "peer_disconnected"
)

// Event is one cluster event. Previous and Current are set for
// node_health_changed; the node's events carry their own fields.
type Event struct {
	consensus.Event
	Previous Health `json:"previous,omitempty"`
	Current  Health `json:"current,omitempty"`
}

// Config configures a Manager; zero fields take the seed's defaults.
type Config struct {
	// HealthCheckInterval is the time between two checks of every member.
	// Default 5s.
	HealthCheckInterval time.Duration
	// HealthCheckTimeout bounds one check. Default 2s.
	HealthCheckTimeout time.Duration
	// MaxFailedHealthChecks is how many checks in a row must fail for a
	// member to be unhealthy. Default 3.
	MaxFailedHealthChecks int
	// MaxLagEntries is how far a member's applied index may trail this
	// node's commit index before it is degraded. Default 1000.
	MaxLagEntries uint64
	// PeerPollInterval is how often the transport's live streams are
	// compared for peer_connected / peer_disconnected. Default 100ms.
	PeerPollInterval time.Duration
	// HTTPClient probes members' HTTP APIs. Nil: a plain-HTTP client.
	HTTPClient *http.Client
	// HTTPScheme is the scheme of members' HTTP addresses: "http" (the
	// default) or "https".
	HTTPScheme string
	// NoHTTPProbe judges liveness by the peer transport alone (for
	// example when the HTTP API needs TLS client material this node
	// does not have).
	NoHTTPProbe bool
	// Logger receives health changes. Nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the seed's defaults: checks every 5 s, 2 s each,
// unhealthy after 3 failures.
func DefaultConfig() Config {
	return Config{
		HealthCheckInterval:   5 * time.Second,
		HealthCheckTimeout:    2 * time.Second,
		MaxFailedHealthChecks: 3,
		MaxLagEntries:         1000,
		PeerPollInterval:      100 * time.Millisecond,
	}
}

// Validate reports the first problem with c (after defaults), or nil.
func (c *Config) Validate() error {
	switch {
	case c.HealthCheckInterval < 0 || c.HealthCheckTimeout < 0 || c.PeerPollInterval < 0:
		return errors.New("cluster: intervals and timeouts must not be negative")
	case c.MaxFailedHealthChecks < 0:
		return errors.New("cluster: max failed health checks must not be negative")
	case c.HTTPScheme != "" && c.HTTPScheme != "http" && c.HTTPScheme != "https":
		return fmt.Errorf("cluster: HTTP scheme %q, want http or https", c.HTTPScheme)
	case c.HealthCheckTimeout > 0 && c.HealthCheckInterval > 0 && c.HealthCheckTimeout > c.HealthCheckInterval:
		return fmt.Errorf("cluster: health check timeout %v is longer than the interval %v", c.HealthCheckTimeout, c.HealthCheckInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HealthCheckInterval == 0 {
		c.HealthCheckInterval = d.HealthCheckInterval
	}
	if c.HealthCheckTimeout == 0 {
		c.HealthCheckTimeout = min(d.HealthCheckTimeout, c.HealthCheckInterval)
	}
	if c.MaxFailedHealthChecks == 0 {
		c.MaxFailedHealthChecks = d.MaxFailedHealthChecks
	}
	if c.MaxLagEntries == 0 {
		c.MaxLagEntries = d.MaxLagEntries
	}
	if c.PeerPollInterval == 0 {
		c.PeerPollInterval = d.PeerPollInterval
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.HTTPScheme == "" {
		c.HTTPScheme = "http"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// NodeInfo is one member with its health as this node sees it (defined
// in api, the client-facing contract).
type NodeInfo = api.NodeInfo

// Stats summarises the cluster as this node sees it.
type Stats struct {
	NodeID    string `json:"nodeId"`
	LeaderID  string `json:"leaderId"`
	Term      uint64 `json:"term"`
	Nodes     int    `json:"nodes"`
	Voters    int    `json:"voters"`
	Learners  int    `json:"learners"`
	Healthy   int    `json:"healthy"`
	Degraded  int    `json:"degraded"`
	Unhealthy int    `json:"unhealthy"`
	Unknown   int    `json:"unknown"`
	Suspect   int    `json:"suspect"`
	// ConnectedPeers counts peers with a live stream.
	ConnectedPeers int `json:"connectedPeers"`
	// EventsDropped counts events some subscriber missed (full buffer).
	EventsDropped uint64 `json:"eventsDropped"`
}

// ErrUnknownNode means no member has the given id.
var ErrUnknownNode = consensus.ErrUnknownMember

// Manager watches a node's cluster. Its methods are safe for concurrent
// use.
type Manager struct {
	node *consensus.Node
	cfg  Config
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	health map[string]*memberHealth
	// streamsUp is the transport's live streams as last observed, sorted;
	// peer_connected and peer_disconnected are changes to it.
	streamsUp []string

	// recheck asks the check loop for a check now (a stream to a member
	// in doubt came back); it holds at most one request.
	recheck chan struct{}
	events  Feed
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// memberHealth is what the manager knows of one member; NodeInfo is its
// view at one moment.
type memberHealth struct {
	member       consensus.Member
	health       Health
	reason       string
	failedChecks int
	lastCheck    time.Time
	// lastPassed is when a check last passed and read appliedIndex.
	lastPassed   time.Time
	appliedIndex uint64
	// lag is valid only while lagKnown: cleared by a failed check and by
	// the stream going down, so that a frozen index never reads as
	// current.
	lag      uint64
	lagKnown bool
	// connected: a live peer stream (always true for this node, once
	// checked); downSince is when it was seen to go down (zero while up
	// or never seen up).
	connected bool
	downSince time.Time
}

// view returns the member's NodeInfo as of now.
func (h *memberHealth) view(now time.Time) NodeInfo {
	info := NodeInfo{Member: h.member, Health: h.health, FailedChecks: h.failedChecks, LastCheck: h.lastCheck,
		AppliedIndex: h.appliedIndex, Connected: h.connected, Reason: h.reason}
	if !h.lastCheck.IsZero() {
		info.LastCheckAgeMs = ageMs(now, h.lastCheck)
	}
	if !h.lastPassed.IsZero() {
		t := h.lastPassed
		info.LastPassedCheck = &t
	}
	if h.lagKnown {
		lag := h.lag
		info.Lag = &lag
	}
	if !h.downSince.IsZero() {
		t := h.downSince
		info.StreamDownSince = &t
		info.StreamDownMs = ageMs(now, t)
	}
	return info
}

// ageMs is how many milliseconds before now t was (never negative).
func ageMs(now, t time.Time) *int64 {
	ms := max(now.Sub(t).Milliseconds(), 0)
	return &ms
}

// Feed is the manager's event feed.
type Feed = consensus.Feed[Event]

// New returns a manager for node; Start runs it.
func New(node *consensus.Node, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Manager{node: node, cfg: cfg, log: cfg.Logger, now: time.Now, health: map[string]*memberHealth{},
		recheck: make(chan struct{}, 1), stop: make(chan struct{})}, nil
}

// Start runs the health checks and event forwarding until Close.
func (m *Manager) Start() {
	sub := m.node.Events().Subscribe(0)
	m.wg.Add(3)
	go m.forwardLoop(sub)
	go m.checkLoop()
	go m.peerLoop()
}

// Close stops the manager and waits for its goroutines. Safe to call more
// than once.
func (m *Manager) Close() {
	m.once.Do(func() { close(m.stop) })
	m.wg.Wait()
}

// Events returns the event feed.
func (m *Manager) Events() *Feed { return &m.events }

func (m *Manager) forwardLoop(sub *consensus.Subscription[consensus.Event]) {
	defer m.wg.Done()
	defer sub.Close()
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			m.events.Publish(Event{Event: e})
		case <-m.stop:
			return
		}
	}
}

func (m *Manager) checkLoop() {
	defer m.wg.Done()
	// The first check waits for a leader (up to one interval): checked
	// before the first election, every member would look degraded ("knows
	// no leader") until the next check, HealthCheckInterval later.
	if !m.awaitLeader() {
		return
	}
	m.CheckNow()
	t := time.NewTicker(m.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.CheckNow()
		case <-m.recheck:
			m.CheckNow()
		case <-m.stop:
			return
		}
	}
}

// awaitLeader waits until the node knows a leader or HealthCheckInterval
// passes; it reports false if the manager was closed meanwhile.
func (m *Manager) awaitLeader() bool {
	deadline := time.NewTimer(m.cfg.HealthCheckInterval)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for m.node.Leader() == "" {
		select {
		case <-m.stop:
			return false
		case <-deadline.C:
			return true
		case <-poll.C:
		}
	}
	return true
}

// peerLoop watches the transport's live streams every PeerPollInterval:
// a member whose stream goes down is suspect at once, without waiting for
// the next check.
func (m *Manager) peerLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.PeerPollInterval)
	defer t.Stop()
	for {
		m.mu.Lock()
		events := m.observeStreamsLocked()
		m.mu.Unlock()
		m.publish(events)
		select {
		case <-t.C:
		case <-m.stop:
			return
		}
	}
}

func (m *Manager) publish(events []Event) {
	for _, e := range events {
		m.events.Publish(e)
	}
}

// stateLocked returns the record of member id, creating it (unknown).
func (m *Manager) stateLocked(id string) *memberHealth {
	h := m.health[id]
	if h == nil {
		h = &memberHealth{health: HealthUnknown}
		m.health[id] = h
	}
	return h
}

// observeStreamsLocked reads the transport's live streams and applies
// what changed since the last reading: peer_connected and
// peer_disconnected events, a member whose stream went down turned
// suspect (its lag unknown), and a check requested when the stream of a
// suspect or unhealthy member comes back. The reading is taken under
// m.mu, so readings are applied in the order they were taken.
func (m *Manager) observeStreamsLocked() []Event {
	st := m.node.Status()
	cur, now := st.ConnectedPeers, m.now()
	var events []Event
	for _, id := range cur {
		if !slices.Contains(m.streamsUp, id) {
			events = append(events, Event{Event: consensus.Event{Type: EventPeerConnected, NodeID: id}})
		}
	}
	for _, id := range m.streamsUp {
		if !slices.Contains(cur, id) {
			events = append(events, Event{Event: consensus.Event{Type: EventPeerDisconnected, NodeID: id}})
		}
	}
	m.streamsUp = cur
	recheck := false
	for _, mem := range st.Members {
		if mem.ID == st.NodeID {
			continue
		}
		h := m.stateLocked(mem.ID)
		h.member = mem
		up := slices.Contains(cur, mem.ID)
		switch {
		case up && !h.connected:
			h.connected, h.downSince = true, time.Time{}
			recheck = recheck || h.health == HealthSuspect || h.health == HealthUnhealthy
		case !up && h.connected:
			h.connected, h.downSince, h.lagKnown = false, now, false
			if h.health != HealthUnhealthy {
				events = append(events, m.setHealthLocked(h, HealthSuspect, "peer stream down")...)
			}
		}
	}
	if recheck {
		select {
		case m.recheck <- struct{}{}:
		default: // one is pending already
		}
	}
	return events
}

// setHealthLocked sets h's health and reason and returns the events of a
// change.
func (m *Manager) setHealthLocked(h *memberHealth, next Health, reason string) []Event {
	prev := h.health
	h.health, h.reason = next, reason
	if next == prev {
		return nil
	}
	m.log.Info("node health changed", "member", h.member.ID, "previous", string(prev), "current", string(next), "reason", reason)
	events := []Event{{Event: consensus.Event{Type: EventHealthChanged, NodeID: h.member.ID}, Previous: prev, Current: next}}
	if next == HealthUnhealthy {
		events = append(events, Event{Event: consensus.Event{Type: EventNodeUnhealthy, NodeID: h.member.ID}, Previous: prev, Current: next})
	}
	return events
}

// memberStatus is the part of GET /v1/status a check reads.
type memberStatus struct {
	LeaderID     string `json:"leaderId"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Removed      bool   `json:"removed"`
}

// CheckNow checks every member once, concurrently, and updates their
// health (publishing events for changes). The checker loop calls it every
// HealthCheckInterval, and at once when the stream of a member in doubt
// comes back.
func (m *Manager) CheckNow() {
	st := m.node.Status()
	connected := map[string]bool{}
	for _, id := range st.ConnectedPeers {
		connected[id] = true
	}
	type result struct {
		member consensus.Member
		ok     bool
		status *memberStatus // nil when judged by connectivity alone
		reason string
	}
	results := make([]result, len(st.Members))
	var wg sync.WaitGroup
	for i, mem := range st.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{member: mem}
			switch {
			case mem.ID == st.NodeID:
				r.ok = true
				r.status = &memberStatus{LeaderID: st.LeaderID, AppliedIndex: st.AppliedIndex, Removed: st.Removed}
			case m.cfg.NoHTTPProbe || mem.HTTPAddr == "":
				r.ok = connected[mem.ID]
				if !r.ok {
					r.reason = "no live peer stream"
				}
			default:
				status, reason := m.probe(mem.HTTPAddr)
				r.ok, r.reason = reason == "", reason
				if r.ok {
					r.status = &status
				}
			}
			results[i] = r
		}()
	}
	wg.Wait()

	m.mu.Lock()
	events := m.observeStreamsLocked()
	now := m.now()
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.member.ID] = true
		h := m.stateLocked(r.member.ID)
		h.member, h.lastCheck = r.member, now
		self := r.member.ID == st.NodeID
		if self {
			h.connected = true
		}
		var next Health
		var reason string
		switch {
		case !r.ok:
			h.failedChecks++
			h.lagKnown = false
			next, reason = HealthSuspect, r.reason
			if h.failedChecks >= m.cfg.MaxFailedHealthChecks {
				next = HealthUnhealthy
			}
		case !h.connected:
			// It answers, but raft cannot reach it: in doubt, and its
			// applied index is no measure of what it has received.
			h.failedChecks = 0
			h.lagKnown = false
			next, reason = HealthSuspect, "answers its HTTP API, but the peer stream is down"
		default:
			h.failedChecks = 0
			next = HealthHealthy
			h.lagKnown = false
			if r.status != nil {
				h.appliedIndex, h.lastPassed = r.status.AppliedIndex, now
				h.lag, h.lagKnown = 0, true
				if st.CommitIndex > h.appliedIndex {
					h.lag = st.CommitIndex - h.appliedIndex
				}
				switch {
				case r.status.Removed:
					next, reason = HealthDegraded, "removed from the cluster"
				case r.status.LeaderID == "":
					next, reason = HealthDegraded, "knows no leader"
				case h.lag > m.cfg.MaxLagEntries:
					next, reason = HealthDegraded, fmt.Sprintf("%d entries behind", h.lag)
				}
			}
		}
		events = append(events, m.setHealthLocked(h, next, reason)...)
	}
	for id := range m.health {
		if !seen[id] {
			delete(m.health, id) // no longer a member
		}
	}
	m.mu.Unlock()
	m.publish(events)
}

// probe asks the member's HTTP API for its status; it returns a reason
// when the check fails.
func (m *Manager) probe(httpAddr string) (memberStatus, string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.HealthCheckTimeout)
	defer cancel()
	base := httpAddr
	if !strings.Contains(base, "://") {
		base = m.cfg.HTTPScheme + "://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
	if err != nil {
		return memberStatus{}, err.Error()
	}
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		return memberStatus{}, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return memberStatus{}, "status answered " + resp.Status
	}
	var st memberStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return memberStatus{}, "status undecodable: " + err.Error()
	}
	return st, ""
}

// Nodes returns every member with its health, sorted by id. Members not
// checked yet are unknown.
func (m *Manager) Nodes() []NodeInfo {
	members := m.node.Members()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]NodeInfo, 0, len(members))
	for _, mem := range members {
		info := NodeInfo{Member: mem, Health: HealthUnknown}
		if h := m.health[mem.ID]; h != nil {
			info = h.view(now)
			info.Member = mem
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// HealthyNodes returns the healthy members, sorted by id.
func (m *Manager) HealthyNodes() []NodeInfo {
	return slices.DeleteFunc(m.Nodes(), func(n NodeInfo) bool { return n.Health != HealthHealthy })
}

// NodeHealth returns the member id with its health, or an error matching
// consensus.ErrUnknownMember.
func (m *Manager) NodeHealth(id string) (NodeInfo, error) {
	for _, n := range m.Nodes() {
		if n.ID == id {
			return n, nil
		}
	}
	return NodeInfo{}, fmt.Errorf("node %q: %w", id, consensus.ErrUnknownMember)
}

// Stats summarises the cluster.
func (m *Manager) Stats() Stats {
	st := m.node.Status()
	s := Stats{NodeID: st.NodeID, LeaderID: st.LeaderID, Term: st.Term, ConnectedPeers: len(st.ConnectedPeers), EventsDropped: m.events.Dropped()}
	for _, n := range m.Nodes() {
		s.Nodes++
		if n.Voter {
			s.Voters++
		} else {
			s.Learners++
		}
		switch n.Health {
		case HealthHealthy:
			s.Healthy++
		case HealthDegraded:
			s.Degraded++
		case HealthUnhealthy:
			s.Unhealthy++
		case HealthSuspect:
			s.Suspect++
		default:
			s.Unknown++
		}
	}
	return s
}
