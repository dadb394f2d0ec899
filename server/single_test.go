package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
)

// startOne starts a one-node cluster, n1, on loopback listeners it holds
// from the start, lets configure adjust its Config, closes it when the
// test ends, and waits until it leads.
func startOne(t *testing.T, configure func(*Config)) *Server {
	t.Helper()
	peerLn, httpLn := listenAgain(t, "127.0.0.1:0"), listenAgain(t, "127.0.0.1:0")
	node := consensus.DefaultConfig("n1")
	node.Peers = map[string]string{"n1": peerLn.Addr().String()}
	cfg := Config{
		Node:         node,
		PeerListener: peerLn,
		HTTPListener: httpLn,
		DataDir:      filepath.Join(t.TempDir(), "n1"),
		Logger:       debugLogger(),
	}
	if configure != nil {
		configure(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil { // a second Close is a no-op
			t.Errorf("close: %v", err)
		}
	})
	testwait.For(t, 10*time.Second, "the one node leads", func() bool { return s.Node().IsLeader() })
	return s
}
