package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/server"
)

// testCluster is a cluster of server.Servers in this process, over real
// sockets on loopback.
type testCluster struct {
	// ids, httpAddrs and peerAddrs are in node order: n1, n2, n3.
	ids, httpAddrs, peerAddrs []string
}

// startTestCluster starts a 3-node cluster in this process, stopped when
// the test ends. Members check each other's health every 100ms, so a
// status shows health soon after the start.
func startTestCluster(t *testing.T, opts ...func(*server.Config)) *testCluster {
	t.Helper()
	root := t.TempDir()
	tc := &testCluster{}
	peers := map[string]string{}
	var peerLns, httpLns []net.Listener
	for i := 1; i <= 3; i++ {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i)
		peers[id] = pl.Addr().String()
		peerLns, httpLns = append(peerLns, pl), append(httpLns, hl)
		tc.ids = append(tc.ids, id)
		tc.peerAddrs = append(tc.peerAddrs, pl.Addr().String())
		tc.httpAddrs = append(tc.httpAddrs, hl.Addr().String())
	}
	for i, id := range tc.ids {
		cfg := consensus.DefaultConfig(id)
		cfg.Peers = peers
		scfg := server.Config{Node: cfg, PeerListener: peerLns[i], HTTPListener: httpLns[i],
			DataDir: filepath.Join(root, id), Cluster: cluster.Config{HealthCheckInterval: 100 * time.Millisecond}}
		for _, o := range opts {
			o(&scfg)
		}
		srv, err := server.Start(scfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Close(ctx)
		})
	}
	return tc
}

// inProcessCluster starts a 3-node cluster in this process and returns
// its HTTP addresses.
func inProcessCluster(t *testing.T) []string {
	return startTestCluster(t).httpAddrs
}
