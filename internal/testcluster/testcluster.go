// Package testcluster runs clusters of server.Servers inside a test's
// process, with HTTP on loopback and durable storage in temporary
// directories: the cluster the tests of the client, the command and the
// examples start, stop, crash, restart and partition nodes of.
//
// Peer traffic goes over real WebSockets on loopback by default. With
// the Memnet option it goes over one in-memory fault network
// (internal/memnet, through server.Config.PeerTransport) instead, and the
// cluster can Partition, Isolate and Heal its nodes, and Net takes link
// rules (loss, delay, duplication). Over memnet a dead peer is noticed by
// the election timeout only: memnet reports no PeerDown, so fast failover
// is the WebSocket mode's.
//
// The server package's own tests cannot use it (they are internal tests
// of package server, which this package imports) and keep their copy in
// server/cluster_test.go. Node-level clusters over memnet (no HTTP,
// crash-atomic storage, linearizability checks) are internal/harness.
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
	"github.com/unrdf/consensus/internal/memnet"
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
	// keeps its addresses. Over memnet a peer address is a placeholder,
	// "memnet:<id>", that nothing listens on.
	PeerAddrs, HTTPAddrs []string
	Peers, HTTP          map[string]string
	// Dirs maps each id to its data directory; a restarted node keeps it.
	Dirs map[string]string
	// Servers maps the id of each running node to its server. Stop and
	// Crash remove the node's entry; Restart puts a new server there.
	Servers map[string]*server.Server
	// Net is the network the nodes' peer traffic goes over with the
	// Memnet option, nil over WebSockets. Partition, Isolate and Heal
	// act on it; set link rules on it directly.
	Net *memnet.Network

	configure []func(*server.Config)
}

// settings are what the options set.
type settings struct {
	ids          []string
	dir          string
	configure    []func(*server.Config)
	beforeStart  func(peers map[string]string)
	leaderWithin time.Duration
	memnet       bool
	seed         uint64
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

// Memnet runs the nodes' peer traffic over one in-memory network
// (Cluster.Net, internal/memnet) whose fault draws are seeded with seed,
// instead of WebSockets; HTTP stays on loopback sockets, so clients work
// as in the default mode. Partition, Isolate and Heal need it. Start logs
// the seed.
func Memnet(seed uint64) Option {
	return func(s *settings) { s.memnet, s.seed = true, seed }
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
	if st.memnet {
		t.Logf("testcluster: memnet seed %d", st.seed)
		c.Net = memnet.New(memnet.Config{Seed: st.seed})
	}
	t.Cleanup(func() {
		c.stopAll(t)
		if c.Net != nil {
			c.Net.Close()
		}
	})
	// Every address is bound at once and held until its server takes it,
	// so no other socket can take it in between.
	peerLns, httpLns := map[string]net.Listener{}, map[string]net.Listener{}
	for _, id := range c.IDs {
		httpLns[id] = listenFree(t)
		c.HTTP[id] = httpLns[id].Addr().String()
		if c.Net != nil {
			c.Peers[id] = "memnet:" + id
		} else {
			peerLns[id] = listenFree(t)
			c.Peers[id] = peerLns[id].Addr().String()
		}
		c.PeerAddrs = append(c.PeerAddrs, c.Peers[id])
		c.HTTPAddrs = append(c.HTTPAddrs, c.HTTP[id])
		c.Dirs[id] = filepath.Join(st.dir, id)
	}
	// A server owns its listeners once started; those of nodes not
	// started when a failure stops the test are closed here.
	defer func() {
		for _, ln := range peerLns {
			ln.Close()
		}
		for _, ln := range httpLns {
			ln.Close()
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

// start starts node id on the given listeners; peerLn is nil over
// memnet, where the node attaches to c.Net instead.
func (c *Cluster) start(t testing.TB, id string, peerLn, httpLn net.Listener) {
	t.Helper()
	node := consensus.DefaultConfig(id)
	node.Peers = maps.Clone(c.Peers)
	cfg := server.Config{
		Node:         node,
		HTTPListener: httpLn,
		DataDir:      c.Dirs[id],
		Logger:       debugLogger(),
	}
	if c.Net != nil {
		cfg.PeerTransport = func(_ uint64, h consensus.MessageHandler) (consensus.Transport, error) {
			return c.Net.Attach(consensus.RaftID(id), h)
		}
	} else {
		cfg.PeerListener = peerLn
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
// of its own.) Over memnet it detaches from Net: messages to it are
// reported unreachable. Its data directory keeps everything it synced.
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
// ports are still being released (over memnet it attaches to Net again
// under the same id; partitions and isolation set before stay). It does
// not wait for a leader.
func (c *Cluster) Restart(t testing.TB, id string) {
	t.Helper()
	if c.Servers[id] != nil {
		t.Fatalf("testcluster: restart %s: still running", id)
	}
	if _, ok := c.Dirs[id]; !ok {
		t.Fatalf("testcluster: restart %s: no such node", id)
	}
	var peerLn net.Listener
	if c.Net == nil {
		var err error
		if peerLn, err = loopback.Listen(c.Peers[id], rebindTimeout); err != nil {
			t.Fatalf("testcluster: restart %s: %v", id, err)
		}
	}
	httpLn, err := loopback.Listen(c.HTTP[id], rebindTimeout)
	if err != nil {
		if peerLn != nil {
			peerLn.Close()
		}
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

// Leader returns the leader every running node of ids (default: of the
// cluster) knows, if it is one of ids and running; "" if one of them
// knows none, they disagree, or the leader they name is down or outside
// ids.
func (c *Cluster) Leader(ids ...string) string {
	if len(ids) == 0 {
		ids = c.IDs
	}
	leader := ""
	for _, id := range ids {
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
	// A leader that is not running, or outside the group, is one the
	// others have not yet noticed is gone (a crash) or cut off (a
	// partition): not an agreed leader.
	if leader == "" || c.Servers[leader] == nil || !slices.Contains(ids, leader) {
		return ""
	}
	return leader
}

// WaitLeader waits until every running node of ids (default: of the
// cluster; a partitioned cluster's majority, say) knows the same leader
// and returns its id, failing the test after timeout.
func (c *Cluster) WaitLeader(t testing.TB, timeout time.Duration, ids ...string) string {
	t.Helper()
	what := "every running node knows the same leader"
	if len(ids) > 0 {
		what = fmt.Sprintf("every running node of %v knows the same leader", ids)
	}
	var leader string
	testwait.For(t, timeout, what, func() bool {
		leader = c.Leader(ids...)
		return leader != ""
	})
	return leader
}

// Partition splits the nodes into groups whose peer traffic cannot reach
// each other's; nodes within a group still talk. Nodes named in no group
// form one more group. It replaces an earlier partition; an isolated
// node stays isolated. HTTP is untouched: every node's API still
// answers, and a client can still reach every endpoint. It needs Memnet
// and fails the test otherwise, or for an unknown id.
func (c *Cluster) Partition(t testing.TB, groups ...[]string) {
	t.Helper()
	c.needMemnet(t, "Partition")
	raftGroups := make([][]uint64, len(groups))
	for i, g := range groups {
		for _, id := range g {
			raftGroups[i] = append(raftGroups[i], c.raftID(t, id))
		}
	}
	c.Net.Partition(raftGroups...)
}

// Isolate cuts node id's peer traffic to and from every other node (its
// HTTP API still answers). It needs Memnet and fails the test otherwise,
// or for an unknown id.
func (c *Cluster) Isolate(t testing.TB, id string) {
	t.Helper()
	c.needMemnet(t, "Isolate")
	c.Net.Isolate(c.raftID(t, id))
}

// Heal ends every partition and isolation (and any cut made on Net);
// link rules set on Net stay. It needs Memnet and fails the test
// otherwise.
func (c *Cluster) Heal(t testing.TB) {
	t.Helper()
	c.needMemnet(t, "Heal")
	c.Net.Heal()
}

// needMemnet fails the test if the cluster runs over WebSockets.
func (c *Cluster) needMemnet(t testing.TB, what string) {
	t.Helper()
	if c.Net == nil {
		t.Fatalf("testcluster: %s needs the Memnet option: over WebSockets the cluster cannot cut peer traffic", what)
	}
}

// raftID returns the raft id of node id, failing the test if the
// cluster has no such node.
func (c *Cluster) raftID(t testing.TB, id string) uint64 {
	t.Helper()
	if _, ok := c.Dirs[id]; !ok {
		t.Fatalf("testcluster: no node %q (nodes %v)", id, c.IDs)
	}
	return consensus.RaftID(id)
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
