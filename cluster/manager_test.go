package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/harness"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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
// crashed member go unhealthy after MaxFailedHealthChecks checks (with
// node_health_changed, node_unhealthy and peer_disconnected), come back
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

	eventually(t, 10*time.Second, "all healthy", func() bool { return len(m.HealthyNodes()) == 3 })
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
	e := waitEvent(t, sub, "node_health_changed n3", func(e cluster.Event) bool {
		return e.Type == cluster.EventHealthChanged && e.NodeID == "n3"
	})
	if e.Previous != cluster.HealthHealthy || e.Current != cluster.HealthUnhealthy {
		t.Fatalf("health change %+v", e)
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
	eventually(t, 10*time.Second, "n4 healthy voter", func() bool {
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
	eventually(t, 10*time.Second, "n1 healthy, well before the second check", func() bool {
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
