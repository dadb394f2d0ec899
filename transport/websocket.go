package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Handler is what a WebSocket calls with inbound traffic and delivery
// failures. It has the method set of consensus.MessageHandler, so a node's
// handler serves both. Its methods must be safe for concurrent use and
// return quickly: they run on the transport's stream goroutines, and
// ReportUnreachable and ReportSnapshot may also run inside Send.
type Handler interface {
	// Deliver hands received messages to the node, in the order one peer
	// sent them. The transport does not touch msgs afterwards.
	Deliver(msgs []*raftpb.Message)
	// ReportUnreachable tells raft that a message to id could not be sent.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft whether a MsgSnap to id was sent.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// PeerObserver is implemented by a Handler that wants to know at once that
// a peer's process is gone: its stream broke and a redial found nothing
// listening at its address (connection refused). A node uses it to fail
// over without waiting out an election timeout. PeerDown must return
// quickly; it may be called repeatedly while the peer stays down.
type PeerObserver interface {
	PeerDown(id uint64)
}

// Stats are a WebSocket's cumulative counters since New.
type Stats struct {
	// FramesSent counts frames written to peers.
	FramesSent uint64
	// FramesReceived counts inbound frames that decoded.
	FramesReceived uint64
	// MessagesSent counts messages in the frames written.
	MessagesSent uint64
	// MessagesReceived counts messages handed to Handler.Deliver.
	MessagesReceived uint64
	// MessagesDropped counts outbound messages given up on: queue full,
	// unknown peer, peer down, write failed, frame too large, or still
	// queued when the peer was removed or the transport closed.
	MessagesDropped uint64
	// BadFrames counts inbound frames that did not decode (or were not
	// binary); each is dropped and the stream kept.
	BadFrames uint64
	// UnknownSender counts refused handshakes (a From that is not a known
	// peer, or a To that is not this node), frames whose envelope "from"
	// differs from the stream's peer, and messages whose From does.
	UnknownSender uint64
	// Misaddressed counts inbound messages whose To is not this node.
	Misaddressed uint64
	// WrongCluster counts handshakes refused, either way, because the two
	// nodes belong to different clusters.
	WrongCluster uint64
}

// PeerStats are the cumulative counters of the streams to and from one
// peer since it was first added (they survive an address change, and a
// removed peer keeps its last values). Snapshot connections are not
// included.
type PeerStats struct {
	// ID and Name identify the peer.
	ID   uint64
	Name string
	// BytesSent and MessagesSent count frames written on the outbound
	// stream; BytesReceived and MessagesReceived the frames (that decoded)
	// and messages (delivered) read from the peer's inbound stream.
	BytesSent, MessagesSent         uint64
	BytesReceived, MessagesReceived uint64
	// Connects and Disconnects count the outbound stream coming up and
	// going down.
	Connects, Disconnects uint64
}

// peerCounters are the live form of PeerStats.
type peerCounters struct {
	id                              uint64
	name                            atomic.Pointer[string]
	bytesSent, messagesSent         atomic.Uint64
	bytesReceived, messagesReceived atomic.Uint64
	connects, disconnects           atomic.Uint64
}

// counters are the live form of Stats; each is updated atomically so that
// hot paths need no lock.
type counters struct {
	framesSent, framesReceived     atomic.Uint64
	messagesSent, messagesReceived atomic.Uint64
	messagesDropped                atomic.Uint64
	badFrames, unknownSender       atomic.Uint64
	misaddressed, wrongCluster     atomic.Uint64
}

// WebSocket is the production Transport: one long-lived outbound WebSocket
// stream per peer, carrying MessagePack frames of many raft messages each,
// and an HTTP server that accepts the peers' streams at /raft/stream. See
// the package documentation for the protocol.
//
// All methods are safe for concurrent use. Send never blocks.
type WebSocket struct {
	cfg    Config
	h      Handler
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	client *http.Client
	dialer *http.Transport

	// ctx is cancelled by Close; every stream goroutine derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the transport starts or lends a handler
	// to, so Close can wait for them all.
	wg sync.WaitGroup

	// mu guards closed and peers (and each peer's inbound field). Send
	// takes it shared; no Handler method is ever called while it is held.
	mu     sync.RWMutex
	closed bool
	peers  map[uint64]*peer
	// peerStats holds each peer's counters by id, also after RemovePeer
	// (ids are never reused, and membership is small). Guarded by mu.
	peerStats map[uint64]*peerCounters

	stats counters
	// nextWarn (unix nanoseconds) rate-limits warnings about bad inbound
	// traffic, so a misbehaving peer cannot flood the log.
	nextWarn atomic.Int64
	// nextClusterLog rate-limits errors about peers of another cluster.
	nextClusterLog atomic.Int64
}

// peer is one remote node: its outbound stream and a handle on the inbound
// stream it opened to us. A peer struct is never re-pointed at a new
// address; AddPeer replaces it.
type peer struct {
	id   uint64
	name string
	addr string
	// counters are shared by every peer struct the id has had.
	counters *peerCounters

	// queue holds messages waiting for the writer, bounded so that a slow
	// or dead peer costs at most SendQueueSize messages of memory. It is
	// never closed: Send may still hold the peer when the writer stops.
	queue chan *wireMessage
	// stop ends the writer goroutine.
	stop context.CancelFunc
	// connected is true while the outbound stream is up.
	connected atomic.Bool
	// snapSending is true while a snapshot is being streamed to the peer;
	// one at a time per peer.
	snapSending atomic.Bool

	// inbound is the stream this peer opened to us, if any; guarded by
	// WebSocket.mu.
	inbound *inboundStream
}

// inboundStream is a handle on one accepted stream, so that a newer stream
// from the same peer, RemovePeer or Close can end it.
type inboundStream struct {
	cancel context.CancelFunc
}

const streamPath = "/raft/stream"

// Handshake headers on the dialer's upgrade request.
const (
	headerFrom = "X-Consensus-From" // the dialer's raft id, decimal
	headerName = "X-Consensus-Name" // the dialer's name
	headerTo   = "X-Consensus-To"   // the raft id the dialer means to reach
	// headerCluster carries the cluster id, hex, in the dialer's request
	// and in a refusal, so both ends can log which clusters met.
	headerCluster = "X-Consensus-Cluster"
	// headerRefused says why a handshake was refused.
	headerRefused = "X-Consensus-Refused"
	// refusedCluster is headerRefused's value for a cluster id mismatch.
	refusedCluster = "cluster-mismatch"
)

// warnInterval is the least time between two warnings about bad inbound
// traffic; the counters in Stats keep the full tally.
const warnInterval = 5 * time.Second

// New starts a transport for the node cfg.ID: it listens (or serves
// cfg.Listener) for peer streams at once, and dials peers as AddPeer names
// them. h receives inbound messages and delivery failures.
func New(cfg Config, h Handler) (*WebSocket, error) {
	if h == nil {
		return nil, errors.New("transport: nil Handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("transport: listen: %w", err)
		}
	}
	if cfg.ServerTLS != nil {
		srvTLS := cfg.ServerTLS.Clone()
		srvTLS.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, srvTLS)
	}
	log := cfg.Logger.With("component", "transport", "node", cfg.Name, "node_id", cfg.ID)
	dialer := &http.Transport{
		// Peer traffic never goes through an HTTP proxy, and every stream
		// is its own connection: a pooled one would only go stale.
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		DisableKeepAlives: true,
	}
	if cfg.ClientTLS != nil {
		dialer.TLSClientConfig = cfg.ClientTLS.Clone()
		dialer.TLSHandshakeTimeout = cfg.DialTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &WebSocket{
		cfg:    cfg,
		h:      h,
		log:    log,
		ln:     ln,
		client: &http.Client{Transport: dialer},
		dialer: dialer,
		ctx:    ctx,
		cancel: cancel,
		peers:  make(map[uint64]*peer),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+streamPath, t.serveStream)
	mux.HandleFunc("GET "+snapshotPath, t.serveSnapshot)
	t.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.DialTimeout + time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.log.Error("peer listener stopped", "err", err)
		}
	}()
	t.log.Info("transport listening", "addr", ln.Addr().String())
	return t, nil
}

// Addr returns the address the transport listens on, with the actual port
// when it was asked for port 0.
func (t *WebSocket) Addr() string {
	return t.ln.Addr().String()
}

// AddPeer makes the peer with raft id id, named name, reachable at addr
// (host:port) and starts dialing it. Adding a known peer with the same name
// and address does nothing; a new address (or name) replaces the old and
// reconnects, dropping what was queued for the old one. Adding this node's
// own id, or id 0, is ignored: peer lists often include the local node.
func (t *WebSocket) AddPeer(id uint64, name, addr string) {
	if id == 0 || id == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	old := t.peers[id]
	if old != nil && old.addr == addr && old.name == name {
		return
	}
	pc := t.peerStats[id]
	if pc == nil {
		if t.peerStats == nil {
			t.peerStats = make(map[uint64]*peerCounters)
		}
		pc = &peerCounters{id: id}
		t.peerStats[id] = pc
	}
	pc.name.Store(&name)
	ctx, stop := context.WithCancel(t.ctx)
	p := &peer{
		id:       id,
		name:     name,
		addr:     addr,
		counters: pc,
		queue:    make(chan *wireMessage, t.cfg.SendQueueSize),
		stop:     stop,
	}
	if old != nil {
		old.stop()
		p.inbound = old.inbound // the peer's stream to us is unaffected
		t.log.Info("peer address changed", "peer", name, "peer_id", id, "old_addr", old.addr, "addr", addr)
	} else {
		t.log.Info("peer added", "peer", name, "peer_id", id, "addr", addr)
	}
	t.peers[id] = p
	t.wg.Add(1)
	go t.runPeer(ctx, p)
}

// RemovePeer forgets a peer: its outbound stream stops, what was queued for
// it is dropped, its inbound stream is closed, and further handshakes from
// it are refused. Removing an unknown peer does nothing.
func (t *WebSocket) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil {
		return
	}
	delete(t.peers, id)
	p.stop()
	if p.inbound != nil {
		p.inbound.cancel()
		p.inbound = nil
	}
	t.log.Info("peer removed", "peer", p.name, "peer_id", id)
}

// sendFailure is a message Send could not queue, to report once the lock
// is released.
type sendFailure struct {
	to   uint64
	snap bool
}

// Send queues msgs for their peers and returns without blocking. Each
// message is copied to its wire form here, so raft may reuse msgs as soon
// as Send returns (entry and snapshot data are referenced, not copied). A
// message for an unknown peer, or for a peer whose queue is full, is
// dropped: the peer is reported unreachable (once per call) and a MsgSnap
// also as raft.SnapshotFailure. After Close, messages are dropped without
// reports.
func (t *WebSocket) Send(msgs []*raftpb.Message) {
	var scratch [8]sendFailure
	failed := scratch[:0]
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		t.stats.messagesDropped.Add(uint64(len(msgs)))
		return
	}
	sh, streams := t.h.(SnapshotHandler)
	for _, m := range msgs {
		if m == nil {
			continue
		}
		p := t.peers[m.GetTo()]
		if p == nil {
			failed = append(failed, sendFailure{m.GetTo(), m.GetType() == raftpb.MsgSnap})
			continue
		}
		if streams && m.GetType() == raftpb.MsgSnap {
			if !t.startSnapshot(p, m, sh) {
				failed = append(failed, sendFailure{p.id, true})
			}
			continue
		}
		w := toWire(m)
		select {
		case p.queue <- w:
		default:
			failed = append(failed, sendFailure{p.id, w.isSnap()})
		}
	}
	t.mu.RUnlock()
	if len(failed) == 0 {
		return
	}
	t.stats.messagesDropped.Add(uint64(len(failed)))
	for i, f := range failed {
		if !slices.ContainsFunc(failed[:i], func(g sendFailure) bool { return g.to == f.to }) {
			t.h.ReportUnreachable(f.to)
		}
		if f.snap {
			t.h.ReportSnapshot(f.to, raft.SnapshotFailure)
		}
	}
}

// ConnectedPeers returns, sorted, the ids of peers whose outbound stream is
// connected right now.
func (t *WebSocket) ConnectedPeers() []uint64 {
	t.mu.RLock()
	ids := make([]uint64, 0, len(t.peers))
	for id, p := range t.peers {
		if p.connected.Load() {
			ids = append(ids, id)
		}
	}
	t.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// Stats returns the transport's counters. Each is read atomically; the set
// is not one consistent snapshot.
func (t *WebSocket) Stats() Stats {
	c := &t.stats
	return Stats{
		FramesSent:       c.framesSent.Load(),
		FramesReceived:   c.framesReceived.Load(),
		MessagesSent:     c.messagesSent.Load(),
		MessagesReceived: c.messagesReceived.Load(),
		MessagesDropped:  c.messagesDropped.Load(),
		BadFrames:        c.badFrames.Load(),
		UnknownSender:    c.unknownSender.Load(),
		Misaddressed:     c.misaddressed.Load(),
		WrongCluster:     c.wrongCluster.Load(),
	}
}

// PeerStats returns the counters of every peer ever added, sorted by id.
func (t *WebSocket) PeerStats() []PeerStats {
	t.mu.RLock()
	out := make([]PeerStats, 0, len(t.peerStats))
	for _, c := range t.peerStats {
		out = append(out, PeerStats{
			ID:               c.id,
			Name:             *c.name.Load(),
			BytesSent:        c.bytesSent.Load(),
			MessagesSent:     c.messagesSent.Load(),
			BytesReceived:    c.bytesReceived.Load(),
			MessagesReceived: c.messagesReceived.Load(),
			Connects:         c.connects.Load(),
			Disconnects:      c.disconnects.Load(),
		})
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b PeerStats) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Close stops listening, closes every stream and waits for all of the
// transport's goroutines to finish. Once it returns, no Handler method is
// called. Close is idempotent; later calls return nil. It must not be called
// from a Handler method, which Close would wait for.
func (t *WebSocket) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for _, p := range t.peers {
		p.stop()
		if p.inbound != nil {
			p.inbound.cancel()
		}
	}
	clear(t.peers)
	t.mu.Unlock()

	t.cancel()
	err := t.srv.Close()
	t.wg.Wait()
	t.dialer.CloseIdleConnections()
	t.log.Info("transport closed")
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("transport: close: %w", err)
	}
	return nil
}

// warn logs a problem with inbound traffic at most once per warnInterval.
func (t *WebSocket) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	next := t.nextWarn.Load()
	if now < next || !t.nextWarn.CompareAndSwap(next, now+int64(warnInterval)) {
		return
	}
	s := t.Stats()
	t.log.Warn(msg, append(args, "bad_frames", s.BadFrames, "unknown_sender", s.UnknownSender, "misaddressed", s.Misaddressed)...)
}

// clusterError logs a cluster mismatch at Error, at most once per
// warnInterval: a misconfigured peer redials every second and must not
// flood the log, while the counter keeps the full tally.
func (t *WebSocket) clusterError(msg string, args ...any) {
	now := time.Now().UnixNano()
	next := t.nextClusterLog.Load()
	if now < next || !t.nextClusterLog.CompareAndSwap(next, now+int64(warnInterval)) {
		return
	}
	t.log.Error(msg, append(args, "our_cluster", fmt.Sprintf("%x", t.cfg.ClusterID), "wrong_cluster", t.stats.wrongCluster.Load())...)
}
