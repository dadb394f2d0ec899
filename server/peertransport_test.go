package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/memnet"
)

// A server over a transport of its own (Config.PeerTransport, memnet
// here) opens no peer listener, gets the node's cluster id and the node
// as handler, serves reads, writes and /metrics (without the WebSocket's
// peer counters), and closes the transport when it closes: the same id
// can then attach to the network again.
func TestPeerTransportReplacesWebSocket(t *testing.T) {
	network := memnet.New(memnet.Config{Seed: 1})
	defer network.Close()
	var clusterID uint64
	var handler consensus.MessageHandler
	s := startOne(t, func(cfg *Config) {
		cfg.PeerListener.Close()
		cfg.PeerListener = nil
		cfg.PeerTransport = func(cid uint64, h consensus.MessageHandler) (consensus.Transport, error) {
			clusterID, handler = cid, h
			return network.Attach(consensus.RaftID(cfg.Node.ID), h)
		}
	})
	if clusterID == 0 || clusterID != s.Node().ClusterID() {
		t.Errorf("PeerTransport got cluster id %x, the node has %x", clusterID, s.Node().ClusterID())
	}
	if handler != consensus.MessageHandler(s.Node()) {
		t.Errorf("PeerTransport got handler %T, not the node", handler)
	}
	if addr := s.PeerAddr(); addr != "" {
		t.Errorf("PeerAddr = %q over memnet, want empty", addr)
	}
	base := "http://" + s.HTTPAddr()
	if r := call(t, http.MethodPut, base+"/v1/kv/k", []byte(`1`)); r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, base+"/v1/kv/k", nil); r.status != http.StatusOK {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	r := call(t, http.MethodGet, base+"/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "consensus_transport_bad_frames") {
		t.Errorf("/metrics has the WebSocket's counters over memnet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := network.Attach(consensus.RaftID("n1"), handler)
	if err != nil {
		t.Fatalf("attach n1 after Close: %v (the server did not close its transport)", err)
	}
	again.Close()
}

// Start refuses a PeerTransport it cannot use with an error, closing the
// listeners it was given.
func TestPeerTransportErrors(t *testing.T) {
	refused := errors.New("no network today")
	for _, tc := range []struct {
		name     string
		listener bool
		build    func(uint64, consensus.MessageHandler) (consensus.Transport, error)
		want     error
	}{
		{"with a peer listener", true, func(uint64, consensus.MessageHandler) (consensus.Transport, error) {
			t.Error("PeerTransport called although PeerListener is set")
			return nil, nil
		}, ErrInvalidConfig},
		{"failing", false, func(uint64, consensus.MessageHandler) (consensus.Transport, error) {
			return nil, refused
		}, refused},
		{"returning nil", false, func(uint64, consensus.MessageHandler) (consensus.Transport, error) {
			return nil, nil
		}, ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpLn := listenAgain(t, "127.0.0.1:0")
			cfg := Config{
				Node:          consensus.DefaultConfig("n1"),
				HTTPListener:  httpLn,
				DataDir:       filepath.Join(t.TempDir(), "n1"),
				PeerTransport: tc.build,
			}
			var peerLn net.Listener
			if tc.listener {
				peerLn = listenAgain(t, "127.0.0.1:0")
				cfg.PeerListener = peerLn
			}
			s, err := Start(cfg)
			if !errors.Is(err, tc.want) {
				if s != nil {
					s.Close(context.Background())
				}
				t.Fatalf("Start: %v, want %v", err, tc.want)
			}
			for _, ln := range []net.Listener{httpLn, peerLn} {
				if ln == nil {
					continue
				}
				if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("listener %s: Accept = %v, want it closed", ln.Addr(), err)
				}
			}
		})
	}
}
