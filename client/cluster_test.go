package client

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/server"
)

// testCluster is an in-process cluster of servers over real WebSockets on
// loopback, with durable storage in temporary directories (the pattern of
// server/cluster_test.go).
type testCluster struct {
	t       testing.TB
	ids     []string
	peers   map[string]string
	https   map[string]string
	dirs    map[string]string
	servers map[string]*server.Server
}

func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, peers: map[string]string{}, https: map[string]string{}, dirs: map[string]string{}, servers: map[string]*server.Server{}}
	root := t.TempDir()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.ids = append(c.ids, id)
		c.peers[id] = freeAddr(t)
		c.https[id] = freeAddr(t)
		c.dirs[id] = filepath.Join(root, id)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	t.Cleanup(c.stopAll)
	return c
}

// freeAddr reserves a loopback port below the ephemeral range (see
// internal/loopback) and releases it for the caller.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// listenAgain listens on addr, retrying while the port is still being
// released by a previous listener.
func listenAgain(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := loopback.Listen(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return ln
}

func (c *testCluster) start(id string) {
	c.t.Helper()
	cfg := consensus.DefaultConfig(id)
	cfg.Peers = c.peers
	s, err := server.Start(server.Config{
		Node:         cfg,
		PeerListener: listenAgain(c.t, c.peers[id]),
		HTTPListener: listenAgain(c.t, c.https[id]),
		DataDir:      c.dirs[id],
	})
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.servers[id] = s
}

func (c *testCluster) stop(id string) {
	c.t.Helper()
	s := c.servers[id]
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		c.t.Errorf("close %s: %v", id, err)
	}
	delete(c.servers, id)
}

func (c *testCluster) stopAll() {
	for _, id := range c.ids {
		c.stop(id)
	}
}

// waitLeader waits until every running node agrees on one leader and
// returns its id.
func (c *testCluster) waitLeader() string {
	c.t.Helper()
	var leader string
	testwait.For(c.t, 10*time.Second, "every running node agrees on one leader", func() bool {
		leader = ""
		for _, s := range c.servers {
			st := s.Node().Status()
			if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
				return false
			}
			leader = st.LeaderID
		}
		return leader != ""
	})
	return leader
}

// endpoints returns the HTTP addresses of ids, or of every node.
func (c *testCluster) endpoints(ids ...string) []string {
	if len(ids) == 0 {
		ids = c.ids
	}
	var eps []string
	for _, id := range ids {
		eps = append(eps, c.https[id])
	}
	return eps
}

// others returns the node ids other than id.
func (c *testCluster) others(id string) []string {
	var out []string
	for _, o := range c.ids {
		if o != id {
			out = append(out, o)
		}
	}
	return out
}
