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
)

// Health is a member's health as one node sees it.
type Health string

// Health values.
const (
	HealthUnknown   Health = "unknown"
	HealthHealthy   Health = "healthy"
	HealthDegraded  Health = "degraded"
	HealthUnhealthy Health = "unhealthy"
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

// NodeInfo is one member with its health as this node sees it.
type NodeInfo struct {
	consensus.Member
	Health Health `json:"health"`
	// FailedChecks counts the checks in a row that failed.
	FailedChecks int `json:"failedChecks"`
	// LastCheck is when the member was last checked (zero: never).
	LastCheck time.Time `json:"lastCheck"`
	// AppliedIndex is the member's applied index at the last check that
	// passed (0 if unknown).
	AppliedIndex uint64 `json:"appliedIndex"`
	// Lag is how far AppliedIndex trailed this node's commit index then.
	Lag uint64 `json:"lag"`
	// Connected reports a live peer stream to the member (always true for
	// this node itself).
	Connected bool `json:"connected"`
	// Reason says why the member is not healthy, if it is not.
	Reason string `json:"reason,omitempty"`
}

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

	mu     sync.Mutex
	health map[string]*NodeInfo

	events Feed
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// Feed is the manager's event feed.
type Feed = consensus.Feed[Event]

// New returns a manager for node; Start runs it.
func New(node *consensus.Node, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Manager{node: node, cfg: cfg, log: cfg.Logger, health: map[string]*NodeInfo{}, stop: make(chan struct{})}, nil
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

func (m *Manager) peerLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.PeerPollInterval)
	defer t.Stop()
	var prev []string
	for {
		cur := m.node.Status().ConnectedPeers
		for _, id := range cur {
			if !slices.Contains(prev, id) {
				m.events.Publish(Event{Event: consensus.Event{Type: EventPeerConnected, NodeID: id}})
			}
		}
		for _, id := range prev {
			if !slices.Contains(cur, id) {
				m.events.Publish(Event{Event: consensus.Event{Type: EventPeerDisconnected, NodeID: id}})
			}
		}
		prev = cur
		select {
		case <-t.C:
		case <-m.stop:
			return
		}
	}
}

// memberStatus is the part of GET /v1/status a check reads.
type memberStatus struct {
	LeaderID     string `json:"leaderId"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Removed      bool   `json:"removed"`
}

// CheckNow checks every member once, concurrently, and updates their
// health (publishing events for changes). The checker loop calls it every
// HealthCheckInterval.
func (m *Manager) CheckNow() {
	st := m.node.Status()
	connected := map[string]bool{}
	for _, id := range st.ConnectedPeers {
		connected[id] = true
	}
	type result struct {
		member  consensus.Member
		ok      bool
		status  *memberStatus // nil when judged by connectivity alone
		reason  string
		connect bool
	}
	results := make([]result, len(st.Members))
	var wg sync.WaitGroup
	for i, mem := range st.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{member: mem, connect: connected[mem.ID] || mem.ID == st.NodeID}
			switch {
			case mem.ID == st.NodeID:
				r.ok = true
				r.status = &memberStatus{LeaderID: st.LeaderID, AppliedIndex: st.AppliedIndex, Removed: st.Removed}
			case m.cfg.NoHTTPProbe || mem.HTTPAddr == "":
				r.ok = r.connect
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

	now := time.Now()
	var events []Event
	m.mu.Lock()
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.member.ID] = true
		info := m.health[r.member.ID]
		if info == nil {
			info = &NodeInfo{Health: HealthUnknown}
			m.health[r.member.ID] = info
		}
		prev := info.Health
		info.Member, info.LastCheck, info.Connected = r.member, now, r.connect
		next := prev
		if r.ok {
			info.FailedChecks, info.Reason = 0, ""
			next = HealthHealthy
			if r.status != nil {
				info.AppliedIndex = r.status.AppliedIndex
				info.Lag = 0
				if st.CommitIndex > info.AppliedIndex {
					info.Lag = st.CommitIndex - info.AppliedIndex
				}
				switch {
				case r.status.Removed:
					next, info.Reason = HealthDegraded, "removed from the cluster"
				case r.status.LeaderID == "":
					next, info.Reason = HealthDegraded, "knows no leader"
				case info.Lag > m.cfg.MaxLagEntries:
					next, info.Reason = HealthDegraded, fmt.Sprintf("%d entries behind", info.Lag)
				}
			}
		} else {
			info.FailedChecks++
			info.Reason = r.reason
			if info.FailedChecks >= m.cfg.MaxFailedHealthChecks {
				next = HealthUnhealthy
			}
		}
		if next != prev {
			info.Health = next
			m.log.Info("node health changed", "member", r.member.ID, "previous", string(prev), "current", string(next), "reason", info.Reason)
			events = append(events, Event{Event: consensus.Event{Type: EventHealthChanged, NodeID: r.member.ID}, Previous: prev, Current: next})
			if next == HealthUnhealthy {
				events = append(events, Event{Event: consensus.Event{Type: EventNodeUnhealthy, NodeID: r.member.ID}, Previous: prev, Current: next})
			}
		}
	}
	for id := range m.health {
		if !seen[id] {
			delete(m.health, id) // no longer a member
		}
	}
	m.mu.Unlock()
	for _, e := range events {
		m.events.Publish(e)
	}
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
	out := make([]NodeInfo, 0, len(members))
	for _, mem := range members {
		info := NodeInfo{Member: mem, Health: HealthUnknown}
		if h := m.health[mem.ID]; h != nil {
			info = *h
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
		default:
			s.Unknown++
		}
	}
	return s
}
