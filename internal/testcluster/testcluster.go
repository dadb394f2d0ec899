// Package testcluster starts clusters of server.Servers inside a test's
// process, over real sockets on loopback, for the tests of packages that
// use a cluster from outside (the command, the examples).
package testcluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/server"
)

// Cluster is a running cluster. Its slices are in node order: n1, n2, ...
type Cluster struct {
	IDs, HTTPAddrs, PeerAddrs []string
	// Servers maps a node id to its server.
	Servers map[string]*server.Server
}

// Start starts n nodes, n1 to nN, each on loopback listeners held from
// the start and its own data directory under the test's temporary
// directory, with each server's config adjusted by opts in turn. It
// returns once every node knows the same leader; the nodes stop when the
// test ends.
func Start(t testing.TB, n int, opts ...func(*server.Config)) *Cluster {
	t.Helper()
	root := t.TempDir()
	c := &Cluster{Servers: map[string]*server.Server{}}
	peers := map[string]string{}
	var peerLns, httpLns []net.Listener
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		pl, hl := listen(), listen()
		peers[id] = pl.Addr().String()
		peerLns, httpLns = append(peerLns, pl), append(httpLns, hl)
		c.IDs = append(c.IDs, id)
		c.PeerAddrs = append(c.PeerAddrs, pl.Addr().String())
		c.HTTPAddrs = append(c.HTTPAddrs, hl.Addr().String())
	}
	for i, id := range c.IDs {
		node := consensus.DefaultConfig(id)
		node.Peers = peers
		cfg := server.Config{Node: node, PeerListener: peerLns[i], HTTPListener: httpLns[i], DataDir: filepath.Join(root, id)}
		for _, o := range opts {
			o(&cfg)
		}
		srv, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Servers[id] = srv
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Close(ctx); err != nil {
				t.Logf("close %s: %v", id, err)
			}
		})
	}
	c.waitLeader(t, 30*time.Second)
	return c
}

// waitLeader waits until every node knows the same leader.
func (c *Cluster) waitLeader(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lead := c.Servers[c.IDs[0]].Node().Leader()
		same := lead != ""
		for _, id := range c.IDs[1:] {
			same = same && c.Servers[id].Node().Leader() == lead
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testcluster: no common leader within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
