package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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

// TestCloseDoesNotWaitForSilentConnections: connections that have sent no
// request (a browser's speculative connection, a TCP health check) do not
// hold Close; net/http alone would wait five seconds for each. A request
// in progress still finishes, and a keep-alive connection between
// requests is closed as idle.
func TestCloseDoesNotWaitForSilentConnections(t *testing.T) {
	s := startOne(t, nil)
	silent, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	kept, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	fmt.Fprintf(kept, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %d", resp.StatusCode)
	}
	// Well under net/http's five seconds for a new connection.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close with a silent connection open: %v", err)
	}
	// The silent connection was closed, not left open.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection after close: %d bytes, %v", n, err)
	}
}
