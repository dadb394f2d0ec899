// Package testcluster runs clusters of server.Servers inside a test's
// process, over real WebSockets and HTTP on loopback, with durable
// storage in temporary directories: the cluster the tests of the client,
// the command and the examples start, stop, crash and restart nodes of.
//
// The server package's own tests cannot use it (they are internal tests
// of package server, which this package imports) and keep their copy in
// server/cluster_test.go. Node-level clusters over the fault network
// (memnet: partitions, lossy links, crash-atomic storage) are
// internal/harness.
//
// What it cannot do: partition nodes. A server builds its WebSocket
// transport itself and offers no hook to drop or cut its traffic, and it
// cannot run over memnet; a partition needs internal/harness, or a TCP
// proxy in front of a peer address (as server/cluster_test.go's flap test
// does with a transport it reaches from inside the package).
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/server"
)

const (
	// closeTimeout bounds a server's Close: in-flight requests and
	// WebSocket connections get that long to finish.
	closeTimeout = 10 * time.Second
	// rebindTimeout bounds the retries of a restarted node's bind to its
	// old address while the previous listener's port is still released.
	rebindTimeout = 5 * time.Second
	// defaultLeaderWithin is how long Start waits for a common leader
	// unless LeaderWithin says otherwise.
	defaultLeaderWithin = 30 * time.Second
)

// Cluster is a running cluster. It is not safe for concurrent use: call
// its methods from the test's goroutine.
type Cluster struct {
	// IDs are the node ids in start order: n1, n2, ... unless the IDs
	// option named them.
	IDs []string
	// PeerAddrs and HTTPAddrs are the nodes' peer and HTTP addresses in
	// IDs order; Peers and HTTP map each id to them. A restarted node
	// keeps its addresses.
	PeerAddrs, HTTPAddrs []string
	Peers, HTTP          map[string]string
	// Dirs maps each id to its data directory; a restarted node keeps it.
	Dirs map[string]string
	// Servers maps the id of each running node to its server. Stop and
	// Crash remove the node's entry; Restart puts a new server there.
	Servers map[string]*server.Server

	configure []func(*server.Config)
}

// settings are what the options set.
type settings struct {
	ids          []string
	dir          string
	configure    []func(*server.Config)
	beforeStart  func(peers map[string]string)
	leaderWithin time.Duration
}

// Option adjusts how Start builds and starts a cluster.
type Option func(*settings)

// Configure adjusts each server's config before it starts, at Start and
// at every Restart (after Start has filled in the node, listeners, data
// directory and logger; options apply in order).
func Configure(fn func(*server.Config)) Option {
	return func(s *settings) { s.configure = append(s.configure, fn) }
}

// IDs names the nodes (default n1 to nN); Start fails the test unless
// there are exactly n.
func IDs(ids ...string) Option {
	return func(s *settings) { s.ids = slices.Clone(ids) }
}

// Dir puts each node's data directory at dir/<id> (default: under the
// test's temporary directory).
func Dir(dir string) Option {
	return func(s *settings) { s.dir = dir }
}

// BeforeStart calls fn with every node's peer address once they are
// known and before any node starts: to prepare data directories (a
// restore from a backup, say) that need the addresses.
func BeforeStart(fn func(peers map[string]string)) Option {
	return func(s *settings) { s.beforeStart = fn }
}

// LeaderWithin makes Start wait at most d for every node to know the
// same leader (default 30s); 0 returns as soon as every node listens.
func LeaderWithin(d time.Duration) Option {
	return func(s *settings) { s.leaderWithin = d }
}

// Start starts n nodes, each on loopback addresses from below the
// ephemeral range (internal/loopback: a node restarted on its address
// gets it back) and its own data directory, and by default returns once
// every node knows the same leader. Running nodes stop gracefully when
// the test ends; a Close error then fails the test.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	st := settings{leaderWithin: defaultLeaderWithin}
	for _, o := range opts {
		o(&st)
	}
	if st.ids == nil {
		for i := 1; i <= n; i++ {
			st.ids = append(st.ids, fmt.Sprintf("n%d", i))
		}
	}
	if len(st.ids) != n {
		t.Fatalf("testcluster: %d ids %v for %d nodes", len(st.ids), st.ids, n)
	}
	if st.dir == "" {
		st.dir = t.TempDir()
	}
	c := &Cluster{
		IDs:   st.ids,
		Peers: map[string]string{}, HTTP: map[string]string{}, Dirs: map[string]string{},
		Servers:   map[string]*server.Server{},
		configure: st.configure,
	}
	t.Cleanup(func() { c.stopAll(t) })
	// Every address is bound at once and held until its server takes it,
	// so no other socket can take it in between.
	peerLns, httpLns := map[string]net.Listener{}, map[string]net.Listener{}
	for _, id := range c.IDs {
		peerLns[id], httpLns[id] = listenFree(t), listenFree(t)
		c.Peers[id], c.HTTP[id] = peerLns[id].Addr().String(), httpLns[id].Addr().String()
		c.PeerAddrs = append(c.PeerAddrs, c.Peers[id])
		c.HTTPAddrs = append(c.HTTPAddrs, c.HTTP[id])
		c.Dirs[id] = filepath.Join(st.dir, id)
	}
	// A server owns its listeners once started; those of nodes not
	// started when a failure stops the test are closed here.
	defer func() {
		for id := range peerLns {
			peerLns[id].Close()
			httpLns[id].Close()
		}
	}()
	if st.beforeStart != nil {
		st.beforeStart(maps.Clone(c.Peers))
	}
	for _, id := range c.IDs {
		pl, hl := peerLns[id], httpLns[id]
		delete(peerLns, id)
		delete(httpLns, id)
		c.start(t, id, pl, hl)
	}
	if st.leaderWithin > 0 {
		c.WaitLeader(t, st.leaderWithin)
	}
	return c
}

// listenFree listens on a free loopback address below the ephemeral
// range.
func listenFree(t testing.TB) net.Listener {
	t.Helper()
	for range 10 {
		addr, err := loopback.FreeAddr()
		if err != nil {
			t.Fatalf("testcluster: %v", err)
		}
		// Taken since FreeAddr released it: pick another.
		if ln, err := net.Listen("tcp", addr); err == nil {
			return ln
		}
	}
	t.Fatal("testcluster: no free loopback address in 10 tries")
	return nil
}

// start starts node id on the given listeners.
func (c *Cluster) start(t testing.TB, id string, peerLn, httpLn net.Listener) {
	t.Helper()
	node := consensus.DefaultConfig(id)
	node.Peers = maps.Clone(c.Peers)
	cfg := server.Config{
		Node:         node,
		PeerListener: peerLn,
		HTTPListener: httpLn,
		DataDir:      c.Dirs[id],
		Logger:       debugLogger(),
	}
	for _, fn := range c.configure {
		fn(&cfg)
	}
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatalf("testcluster: start %s: %v", id, err)
	}
	c.Servers[id] = srv
}

// debugLogger logs at debug level to stderr when DEBUGLOG is set, and
// is nil (logs discarded) otherwise.
func debugLogger() *slog.Logger {
	if os.Getenv("DEBUGLOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// running returns the server of id, failing the test if id is not
// running.
func (c *Cluster) running(t testing.TB, id string) *server.Server {
	t.Helper()
	srv := c.Servers[id]
	if srv == nil {
		t.Fatalf("testcluster: %s is not running", id)
	}
	return srv
}

// Stop stops node id gracefully (server.Close: a leader first hands
// leadership over). A Close error fails the test.
func (c *Cluster) Stop(t testing.TB, id string) {
	t.Helper()
	srv := c.running(t, id)
	delete(c.Servers, id)
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Errorf("testcluster: close %s: %v", id, err)
	}
}

// Crash stops node id without a leadership transfer: its raft node
// stops first, so nothing more leaves it, then the server closes its
// listeners and connections, which peers see as a dead process. (A
// killed process's sockets close at once; here they close after the
// node has stopped, milliseconds later. The server offers no abrupt stop
// of its own.) Its data directory keeps everything it synced.
func (c *Cluster) Crash(t testing.TB, id string) {
	t.Helper()
	srv := c.running(t, id)
	delete(c.Servers, id)
	srv.Node().Stop()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// Close reports the transfer it could not make and requests cut
	// short; neither is a failure of a crash.
	if err := srv.Close(ctx); err != nil {
		t.Logf("testcluster: crash %s: %v", id, err)
	}
}

// Restart starts a stopped or crashed node id again with its data
// directory and addresses, retrying the binds while the old listeners'
// ports are still being released. It does not wait for a leader.
func (c *Cluster) Restart(t testing.TB, id string) {
	t.Helper()
	if c.Servers[id] != nil {
		t.Fatalf("testcluster: restart %s: still running", id)
	}
	if _, ok := c.Dirs[id]; !ok {
		t.Fatalf("testcluster: restart %s: no such node", id)
	}
	peerLn, err := loopback.Listen(c.Peers[id], rebindTimeout)
	if err != nil {
		t.Fatalf("testcluster: restart %s: %v", id, err)
	}
	httpLn, err := loopback.Listen(c.HTTP[id], rebindTimeout)
	if err != nil {
		peerLn.Close()
		t.Fatalf("testcluster: restart %s: %v", id, err)
	}
	c.start(t, id, peerLn, httpLn)
}

// stopAll stops every running node gracefully, in IDs order.
func (c *Cluster) stopAll(t testing.TB) {
	t.Helper()
	for _, id := range c.IDs {
		if c.Servers[id] != nil {
			c.Stop(t, id)
		}
	}
}

// Leader returns the leader every running node knows, or "" if one of
// them knows none or they disagree.
func (c *Cluster) Leader() string {
	leader := ""
	for _, id := range c.IDs {
		srv := c.Servers[id]
		if srv == nil {
			continue
		}
		l := srv.Node().Leader()
		if l == "" || (leader != "" && l != leader) {
			return ""
		}
		leader = l
	}
	return leader
}

// WaitLeader waits until every running node knows the same leader and
// returns its id, failing the test after timeout.
func (c *Cluster) WaitLeader(t testing.TB, timeout time.Duration) string {
	t.Helper()
	var leader string
	testwait.For(t, timeout, "every running node knows the same leader", func() bool {
		leader = c.Leader()
		return leader != ""
	})
	return leader
}

// Endpoints returns the HTTP addresses of ids, or of every node.
func (c *Cluster) Endpoints(ids ...string) []string {
	if len(ids) == 0 {
		ids = c.IDs
	}
	var eps []string
	for _, id := range ids {
		eps = append(eps, c.HTTP[id])
	}
	return eps
}

// Others returns the node ids other than id, in IDs order.
func (c *Cluster) Others(id string) []string {
	var out []string
	for _, o := range c.IDs {
		if o != id {
			out = append(out, o)
		}
	}
	return out
}
