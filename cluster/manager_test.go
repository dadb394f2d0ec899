package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/harness"
	"github.com/unrdf/consensus/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitEvent waits for an event matching match on sub.
func waitEvent(t *testing.T, sub *consensus.Subscription[cluster.Event], what string, match func(cluster.Event) bool) cluster.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub.C():
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", what)
		}
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	d := cluster.DefaultConfig()
	if d.HealthCheckInterval != 5*time.Second || d.HealthCheckTimeout != 2*time.Second || d.MaxFailedHealthChecks != 3 {
		t.Fatalf("defaults %+v", d)
	}
	for _, bad := range []cluster.Config{
		{HealthCheckInterval: -1},
		{MaxFailedHealthChecks: -1},
		{HealthCheckInterval: time.Second, HealthCheckTimeout: 2 * time.Second},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// TestHealthAndEvents: a manager on n1 sees every member healthy, a
// crashed member go suspect at once and unhealthy after
// MaxFailedHealthChecks checks (with node_health_changed, node_unhealthy
// and peer_disconnected), come back
// healthy on restart, and a joining member as node_joined.
func TestHealthAndEvents(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 7})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := cluster.New(c.Node("n1"), cluster.Config{
		HealthCheckInterval:   20 * time.Millisecond,
		HealthCheckTimeout:    10 * time.Millisecond,
		MaxFailedHealthChecks: 3,
		PeerPollInterval:      5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := m.Events().Subscribe(1024)
	defer sub.Close()
	m.Start()
	defer m.Close()

	testwait.For(t, 10*time.Second, "all healthy", func() bool { return len(m.HealthyNodes()) == 3 })
	if st := m.Stats(); st.Nodes != 3 || st.Voters != 3 || st.Healthy != 3 || st.LeaderID == "" {
		t.Fatalf("stats %+v", st)
	}

	// The manager must have seen n3 connected before its loss can show.
	waitEvent(t, sub, "peer_connected n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventPeerConnected && e.NodeID == "n3"
	})
	if err := c.Crash("n3"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, "peer_disconnected n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventPeerDisconnected && e.NodeID == "n3"
	})
	// Suspect at once (the stream is down), unhealthy after the checks.
	e := waitEvent(t, sub, "node_health_changed n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventHealthChanged && e.NodeID == "n3"
	})
	if e.Previous != cluster.HealthHealthy || e.Current != cluster.HealthSuspect {
		t.Fatalf("first health change %+v, want healthy -> suspect", e)
	}
	e = waitEvent(t, sub, "node_health_changed n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventHealthChanged && e.NodeID == "n3"
	})
	if e.Previous != cluster.HealthSuspect || e.Current != cluster.HealthUnhealthy {
		t.Fatalf("second health change %+v, want suspect -> unhealthy", e)
	}
	waitEvent(t, sub, "node_unhealthy n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventNodeUnhealthy && e.NodeID == "n3"
	})
	info, err := m.NodeHealth("n3")
	if err != nil || info.Health != cluster.HealthUnhealthy || info.FailedChecks < 3 {
		t.Fatalf("n3 %+v %v", info, err)
	}
	if _, err := m.NodeHealth("nope"); err == nil {
		t.Fatal("health of a non-member")
	}

	if err := c.Restart("n3"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, "n3 healthy again", func(e cluster.Event) bool {
		return e.Type == cluster.EventHealthChanged && e.NodeID == "n3" && e.Current == cluster.HealthHealthy
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Join(ctx, "n1", "n4"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, "node_joined n4", func(e cluster.Event) bool {
		return e.Type == consensus.EventNodeJoined && e.NodeID == "n4"
	})
	testwait.For(t, 10*time.Second, "n4 healthy voter", func() bool {
		info, err := m.NodeHealth("n4")
		return err == nil && info.Voter && info.Health == cluster.HealthHealthy
	})
	// Leader events are forwarded: a transfer elects someone else.
	leader, _ := c.WaitLeader(10 * time.Second)
	if _, err := c.Node(leader).TransferLeadershipTo(ctx, otherThan(leader)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, "leader_elected", func(e cluster.Event) bool {
		return e.Type == consensus.EventLeaderElected && e.LeaderID == otherThan(leader) && e.Term > 0
	})
}

func otherThan(name string) string {
	if name == "n2" {
		return "n1"
	}
	return "n2"
}

// TestFirstCheckWaitsForALeader starts a manager before its node has
// heard of any leader: the first check waits for one, so the node is
// healthy at once rather than "degraded, knows no leader" for a whole
// interval.
func TestFirstCheckWaitsForALeader(t *testing.T) {
	var (
		m   *cluster.Manager
		sub *consensus.Subscription[cluster.Event]
	)
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 11, OnStart: func(name string, n *consensus.Node) {
		if name != "n1" || m != nil {
			return
		}
		var err error
		if m, err = cluster.New(n, cluster.Config{HealthCheckInterval: 30 * time.Second, HealthCheckTimeout: time.Second}); err != nil {
			t.Error(err)
			return
		}
		sub = m.Events().Subscribe(1024)
		m.Start() // before the node starts: it knows no leader yet
	}})
	if m == nil {
		t.Fatal("no manager")
	}
	defer m.Close()
	defer sub.Close()
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "n1 healthy, well before the second check", func() bool {
		h, err := m.NodeHealth("n1")
		return err == nil && h.Health == cluster.HealthHealthy
	})
	for {
		select {
		case e := <-sub.C():
			if e.Type == cluster.EventHealthChanged && e.NodeID == "n1" && e.Current != cluster.HealthHealthy {
				t.Fatalf("n1 went %s first", e.Current)
			}
		default:
			return
		}
	}
}

// TestSuspectAtOnceWhenStreamGoesDown: with checks an hour apart, a
// member whose peer stream goes down is suspect within a few peer polls,
// says since when, and has no lag; when the stream comes back a check
// runs at once and it is healthy again.
func TestSuspectAtOnceWhenStreamGoesDown(t *testing.T) {
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 13})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := cluster.New(c.Node("n1"), cluster.Config{
		HealthCheckInterval: time.Hour,
		HealthCheckTimeout:  time.Second,
		PeerPollInterval:    5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	defer m.Close()
	testwait.For(t, 10*time.Second, "all healthy after the first check", func() bool { return len(m.HealthyNodes()) == 3 })
	if self, _ := m.NodeHealth("n1"); self.Lag == nil || self.LastCheckAgeMs == nil {
		t.Fatalf("self %+v: lag and check age unknown", self)
	}

	c.Isolate("n3")
	var n3 cluster.NodeInfo
	testwait.For(t, 10*time.Second, "n3 suspect", func() bool {
		n3, _ = m.NodeHealth("n3")
		return n3.Health == cluster.HealthSuspect
	})
	if n3.FailedChecks != 0 || n3.Lag != nil || n3.StreamDownSince == nil || n3.StreamDownMs == nil ||
		n3.Connected || n3.Reason != "peer stream down" || n3.LastCheckAgeMs == nil {
		t.Fatalf("n3 suspect without a check: %+v", n3)
	}
	if st := m.Stats(); st.Suspect != 1 || st.Healthy != 2 {
		t.Fatalf("stats %+v", st)
	}

	c.Heal()
	testwait.For(t, 10*time.Second, "n3 healthy again, well before the next periodic check", func() bool {
		n3, _ = m.NodeHealth("n3")
		return n3.Health == cluster.HealthHealthy
	})
	if n3.StreamDownSince != nil || !n3.Connected {
		t.Fatalf("n3 back: %+v", n3)
	}
}

// fakeStatus is a member's /v1/status that answers a fixed applied index
// or, when failing, 503.
type fakeStatus struct {
	srv     *httptest.Server
	applied uint64
	failing atomic.Bool
}

func newFakeStatus(t *testing.T, applied uint64) *fakeStatus {
	f := &fakeStatus{applied: applied}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"leaderId":"n1","appliedIndex":%d}`, f.applied)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestStaleLagIsNull: a member whose last check failed keeps its last
// known applied index, but its lag is unknown (JSON null), never 0, and it
// is suspect until MaxFailedHealthChecks failures make it unhealthy.
func TestStaleLagIsNull(t *testing.T) {
	// An applied index past any commit index here: the lag read is 0.
	fakes := map[string]*fakeStatus{"n2": newFakeStatus(t, 1<<40), "n3": newFakeStatus(t, 1<<40)}
	c := harness.New(t, harness.Options{Nodes: 3, Seed: 17, Configure: func(cfg *consensus.Config) {
		if f := fakes[cfg.ID]; f != nil {
			cfg.HTTPAddr = strings.TrimPrefix(f.srv.URL, "http://")
		}
	}})
	if _, err := c.WaitLeader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "HTTP addresses advertised", func() bool {
		n := 0
		for _, mem := range c.Node("n1").Members() {
			if mem.HTTPAddr != "" {
				n++
			}
		}
		return n == 2
	})
	m, err := cluster.New(c.Node("n1"), cluster.Config{HealthCheckTimeout: time.Second, MaxFailedHealthChecks: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	m.CheckNow() // not started: the test runs every check
	n2, _ := m.NodeHealth("n2")
	if n2.Health != cluster.HealthHealthy || n2.Lag == nil || *n2.Lag != 0 || n2.AppliedIndex != 1<<40 || n2.LastPassedCheck == nil {
		t.Fatalf("n2 after a passing check: %+v", n2)
	}
	passed := *n2.LastPassedCheck

	fakes["n2"].failing.Store(true)
	for i := 1; i <= 3; i++ {
		m.CheckNow()
		n2, _ = m.NodeHealth("n2")
		want := cluster.HealthSuspect
		if i == 3 {
			want = cluster.HealthUnhealthy
		}
		if n2.Health != want || n2.FailedChecks != i || n2.Lag != nil || n2.AppliedIndex != 1<<40 ||
			n2.LastPassedCheck == nil || !n2.LastPassedCheck.Equal(passed) || !n2.LastCheck.After(passed) {
			t.Fatalf("n2 after %d failed checks: %+v, want %s, no lag, applied index and pass time kept", i, n2, want)
		}
		body, err := json.Marshal(n2)
		if err != nil || !strings.Contains(string(body), `"lag":null`) {
			t.Fatalf("n2 as JSON: %s %v", body, err)
		}
	}
	if n3, _ := m.NodeHealth("n3"); n3.Health != cluster.HealthHealthy || n3.Lag == nil {
		t.Fatalf("n3, still answering: %+v", n3)
	}

	fakes["n2"].failing.Store(false)
	m.CheckNow()
	if n2, _ = m.NodeHealth("n2"); n2.Health != cluster.HealthHealthy || n2.Lag == nil || *n2.Lag != 0 || n2.FailedChecks != 0 {
		t.Fatalf("n2 answering again: %+v", n2)
	}
}
