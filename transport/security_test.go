package transport

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/internal/testwait"
)

// tlsPair returns server and client TLS configs for node name from the
// development CA in dir.
func tlsPair(t *testing.T, dir, name string) (*tls.Config, *tls.Config) {
	t.Helper()
	cert, key, ca := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), filepath.Join(dir, "ca.pem")
	srv, err := certs.ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := certs.ClientConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

func devCerts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.WriteDev(dir, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pairWith starts transports 1 and 2 with the given configs, each knowing
// the other, and sends a heartbeat from 1 to 2.
func pairWith(t *testing.T, c1, c2 Config) (*WebSocket, *WebSocket, *recorder) {
	t.Helper()
	c1.Listener, c2.Listener = listen(t), listen(t)
	r1, r2 := newRecorder(), newRecorder()
	t1, err := New(c1, r1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { t1.Close() })
	t2, err := New(c2, r2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { t2.Close() })
	t1.AddPeer(2, "n2", t2.Addr())
	t2.AddPeer(1, "n1", t1.Addr())
	t1.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
	return t1, t2, r2
}

func TestMutualTLSDelivers(t *testing.T) {
	dir := devCerts(t)
	c1, c2 := testConfig(1), testConfig(2)
	c1.ServerTLS, c1.ClientTLS = tlsPair(t, dir, "n1")
	c2.ServerTLS, c2.ClientTLS = tlsPair(t, dir, "n2")
	t1, _, r2 := pairWith(t, c1, c2)
	testwait.For(t, waitTimeout, "delivery over mutual TLS", func() bool { return r2.count() > 0 })
	testwait.For(t, waitTimeout, "connected peer", func() bool { return len(t1.ConnectedPeers()) == 1 })
}

func TestPlainTextPeerRefusedWhenTLSOn(t *testing.T) {
	dir := devCerts(t)
	c1, c2 := testConfig(1), testConfig(2)
	c2.ServerTLS, c2.ClientTLS = tlsPair(t, dir, "n2")
	// n1 dials in plain text.
	t1, _, r2 := pairWith(t, c1, c2)
	assertNeverConnects(t, t1, r2)
}

func TestWrongCAPeerRefused(t *testing.T) {
	good, other := devCerts(t), devCerts(t) // two unrelated CAs
	c1, c2 := testConfig(1), testConfig(2)
	c1.ServerTLS, c1.ClientTLS = tlsPair(t, other, "n1")
	c2.ServerTLS, c2.ClientTLS = tlsPair(t, good, "n2")
	t1, _, r2 := pairWith(t, c1, c2)
	assertNeverConnects(t, t1, r2)
}

func TestNodeOfAnotherClusterRefused(t *testing.T) {
	c1, c2 := testConfig(1), testConfig(2)
	c1.ClusterID, c2.ClusterID = 0xaaaa, 0xbbbb
	t1, t2, r2 := pairWith(t, c1, c2)
	t2.Send([]*raftpb.Message{heartbeat(2, 1, 1)})
	testwait.For(t, waitTimeout, "refusals counted on both ends", func() bool {
		return t1.Stats().WrongCluster > 0 && t2.Stats().WrongCluster > 0
	})
	assertNeverConnects(t, t1, r2)
	if len(t2.ConnectedPeers()) != 0 {
		t.Fatal("node of another cluster connected")
	}
}

// assertNeverConnects waits long enough for several redials (backoff is
// milliseconds in tests) and checks that nothing got through.
func assertNeverConnects(t *testing.T, t1 *WebSocket, r2 *recorder) {
	t.Helper()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		t1.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
		if r2.count() > 0 || len(t1.ConnectedPeers()) > 0 {
			t.Fatal("refused peer got a stream through")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOversizedPeerFrameRefused sends a frame over the peer frame limit on
// a raw stream: the receiver closes that stream (1009, message too big)
// and keeps serving its other peers.
func TestOversizedPeerFrameRefused(t *testing.T) {
	ha, hb := newRecorder(), newRecorder()
	cfgB := testConfig(2)
	cfgB.MaxFrameBytes = minFrameBytes
	a := start(t, testConfig(1), ha)
	b := start(t, cfgB, hb)
	a.AddPeer(2, "n2", b.Addr())
	b.AddPeer(1, "n1", a.Addr())
	b.AddPeer(3, "n3", deadAddr(t))
	conn, _, err := rawStream(t, b, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageBinary, make([]byte, 2*minFrameBytes)); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame: read returned %v, want close 1009", err)
	}
	a.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
	testwait.For(t, waitTimeout, "delivery from a well-behaved peer", func() bool { return hb.count() > 0 })
}
