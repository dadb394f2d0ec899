package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3"

	"github.com/unrdf/consensus/internal/stages"
)

// maxBatchBytes is the writer's soft budget for one frame: it keeps taking
// queued messages until their estimated size reaches it. Large enough that
// a busy leader sends few frames, small enough that one frame does not hold
// up the next heartbeat for long.
const maxBatchBytes = 1 << 20

// maxKeptBufferBytes is the largest encode buffer a writer keeps between
// frames; after a bigger frame (a snapshot) the buffer is let go.
const maxKeptBufferBytes = 4 << 20

var errPeerClosed = errors.New("peer closed the stream")

// runPeer is the writer goroutine of one peer: it keeps an outbound stream
// open, reconnecting with backoff, and drains the queue into it.
func (t *WebSocket) runPeer(ctx context.Context, p *peer) {
	defer t.wg.Done()
	log := t.log.With("peer", p.name, "peer_id", p.id, "addr", p.addr)
	w := &streamWriter{t: t, p: p, enc: msgpack.NewEncoder(nil)}
	attempt := 0
	for {
		conn, err := t.dial(ctx, p, streamPath)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Debug("dial peer failed", "attempt", attempt+1, "err", err)
			if errors.Is(err, syscall.ECONNREFUSED) {
				// Nothing listens at the peer's address: its process is
				// gone, not merely slow or cut off.
				if o, ok := t.h.(PeerObserver); ok {
					o.PeerDown(p.id)
				}
			}
			// While the peer is down, messages waiting for it are stale:
			// raft retransmits, and holding them would only delay fresher
			// ones once the peer is back.
			w.failQueued()
			attempt++
			if !sleep(ctx, t.backoff(attempt)) {
				break
			}
			continue
		}
		p.connected.Store(true)
		p.counters.connects.Add(1)
		log.Info("peer stream connected")
		start := time.Now()
		err = w.run(ctx, conn)
		p.connected.Store(false)
		p.counters.disconnects.Add(1)
		_ = conn.CloseNow()
		if ctx.Err() != nil {
			break
		}
		log.Info("peer stream disconnected", "err", err)
		t.h.ReportUnreachable(p.id)
		// A stream that lasted resets the backoff, and is redialed at
		// once: a refused redial tells the node within a millisecond that
		// the peer's process died (see PeerObserver). One that dies at
		// once (a peer that accepts and then drops us) keeps growing it.
		if time.Since(start) > t.cfg.BackoffMax {
			attempt = 0
			continue
		}
		attempt++
		if !sleep(ctx, t.backoff(attempt)) {
			break
		}
	}
	// Stopped by RemovePeer, AddPeer or Close: nobody waits for these.
	t.stats.messagesDropped.Add(uint64(w.discard()))
}

// backoff returns the wait before reconnect attempt n (from 1): doubling
// from BackoffMin up to BackoffMax, jittered into [d/2, d] so that peers
// that lost a node together do not redial in lockstep.
func (t *WebSocket) backoff(n int) time.Duration {
	d := t.cfg.BackoffMax
	if n-1 < 32 {
		if e := t.cfg.BackoffMin << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// dial opens the outbound stream to p, presenting this node in the
// handshake headers.
func (t *WebSocket) dial(ctx context.Context, p *peer, path string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set(headerFrom, strconv.FormatUint(t.cfg.ID, 10))
	hdr.Set(headerName, t.cfg.Name)
	hdr.Set(headerTo, strconv.FormatUint(p.id, 10))
	hdr.Set(headerCluster, strconv.FormatUint(t.cfg.ClusterID, 16))
	scheme := "ws"
	if t.cfg.ClientTLS != nil {
		scheme = "wss"
	}
	u := url.URL{Scheme: scheme, Host: p.addr, Path: path}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient:      t.client,
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.Header.Get(headerRefused) == refusedCluster {
			t.stats.wrongCluster.Add(1)
			t.clusterError("peer belongs to another cluster; not connecting",
				"peer_id", p.id, "addr", p.addr, "peer_cluster", resp.Header.Get(headerCluster))
			return nil, fmt.Errorf("transport: peer %s is in cluster %s, this node in %x: %w", p.addr, resp.Header.Get(headerCluster), t.cfg.ClusterID, err)
		}
		if resp != nil && resp.StatusCode == http.StatusForbidden {
			return nil, fmt.Errorf("transport: peer refused the stream (does it know node %d?): %w", t.cfg.ID, err)
		}
		return nil, fmt.Errorf("transport: dial: %w", err)
	}
	return conn, nil
}

// streamWriter turns one peer's queue into frames. Its buffers are reused
// across frames and connections.
type streamWriter struct {
	t       *WebSocket
	p       *peer
	enc     *msgpack.Encoder
	buf     bytes.Buffer
	batch   []*wireMessage
	pending *wireMessage // taken from the queue but kept for the next frame
}

// run writes frames to conn until a write fails, the peer closes the
// stream, or ctx is done.
func (w *streamWriter) run(ctx context.Context, conn *websocket.Conn) error {
	// The peer never sends on this stream; reading only handles control
	// frames and notices at once when the peer goes away.
	peerGone := conn.CloseRead(ctx)
	budget := min(maxBatchBytes, int(w.t.cfg.MaxFrameBytes))
	for {
		m := w.pending
		w.pending = nil
		if m == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-peerGone.Done():
				return errPeerClosed
			case m = <-w.p.queue:
			}
		}
		w.batch = append(w.batch[:0], m)
		size := m.size
	fill:
		for size < budget {
			select {
			case m := <-w.p.queue:
				if size+m.size > budget {
					w.pending = m
					break fill
				}
				w.batch = append(w.batch, m)
				size += m.size
			default:
				break fill
			}
		}
		if err := w.write(ctx, conn); err != nil {
			return err
		}
	}
}

// write sends the batch as one frame and reports the outcome of snapshots
// in it. A failed write fails the whole batch: how much the peer got is
// unknown, and raft retransmits what it needs.
func (w *streamWriter) write(ctx context.Context, conn *websocket.Conn) error {
	t, batch := w.t, w.batch
	defer func() {
		clear(w.batch) // let the messages' data go
		if w.buf.Cap() > maxKeptBufferBytes {
			w.buf = bytes.Buffer{}
		}
	}()
	if err := encodeFrame(w.enc, &w.buf, t.cfg.ID, batch); err != nil {
		w.fail(batch, true)
		return err
	}
	if int64(w.buf.Len()) > t.cfg.MaxFrameBytes {
		// Only a single huge message (a snapshot) gets here, since batches
		// stop at maxBatchBytes. The peer would refuse it and drop the
		// stream, so refuse it here and keep the stream.
		t.warn("dropping frame larger than MaxFrameBytes", "peer_id", w.p.id, "bytes", w.buf.Len(), "max", t.cfg.MaxFrameBytes)
		w.fail(batch, true)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, t.cfg.WriteTimeout)
	if stages.Enabled {
		stages.Mark("peer_write", 0)
	}
	err := conn.Write(wctx, websocket.MessageBinary, w.buf.Bytes())
	cancel()
	if err != nil {
		// The caller reports the peer unreachable as it disconnects.
		w.fail(batch, false)
		return fmt.Errorf("transport: write frame: %w", err)
	}
	t.stats.framesSent.Add(1)
	t.stats.messagesSent.Add(uint64(len(batch)))
	w.p.counters.bytesSent.Add(uint64(w.buf.Len()))
	w.p.counters.messagesSent.Add(uint64(len(batch)))
	for _, m := range batch {
		if m.isSnap() {
			t.h.ReportSnapshot(w.p.id, raft.SnapshotFinish)
		}
	}
	return nil
}

// fail drops msgs, reporting snapshot failures and, if asked, the peer
// unreachable.
func (w *streamWriter) fail(msgs []*wireMessage, unreachable bool) {
	w.t.stats.messagesDropped.Add(uint64(len(msgs)))
	if unreachable && len(msgs) > 0 {
		w.t.h.ReportUnreachable(w.p.id)
	}
	for _, m := range msgs {
		if m.isSnap() {
			w.t.h.ReportSnapshot(w.p.id, raft.SnapshotFailure)
		}
	}
}

// failQueued drops everything queued for the peer after a failed dial. The
// queue is drained only up to its length now, so a steady stream of Sends
// cannot keep the writer here.
func (w *streamWriter) failQueued() {
	w.batch = w.batch[:0]
	if w.pending != nil {
		w.batch = append(w.batch, w.pending)
		w.pending = nil
	}
	for n := len(w.p.queue); n > 0; n-- {
		w.batch = append(w.batch, <-w.p.queue)
	}
	w.fail(w.batch, true)
	clear(w.batch)
	w.batch = w.batch[:0]
}

// discard empties the queue without reports and returns how many messages
// it held. Only the writer receives from the queue, so this cannot block.
func (w *streamWriter) discard() int {
	n := len(w.p.queue)
	for range n {
		<-w.p.queue
	}
	if w.pending != nil {
		w.pending = nil
		n++
	}
	return n
}

// serveStream accepts a peer's outbound stream after checking the handshake
// and reads it until it ends.
func (t *WebSocket) serveStream(rw http.ResponseWriter, r *http.Request) {
	from, name, ok := t.checkHandshake(rw, r)
	if !ok {
		return
	}
	// Added under mu, before Close can start waiting.
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()

	conn, err := websocket.Accept(rw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		t.log.Debug("accept peer stream failed", "from", from, "err", err)
		return
	}
	defer func() { _ = conn.CloseNow() }()
	conn.SetReadLimit(t.cfg.MaxFrameBytes)

	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	// One inbound stream per peer: a new one (the peer restarted or
	// redialed) replaces the old, which may be half-dead.
	in := &inboundStream{cancel: cancel}
	t.mu.Lock()
	p := t.peers[from]
	if p == nil || t.closed {
		t.mu.Unlock()
		return
	}
	if p.inbound != nil {
		p.inbound.cancel()
	}
	p.inbound = in
	pc := p.counters
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if p := t.peers[from]; p != nil && p.inbound == in {
			p.inbound = nil
		}
		t.mu.Unlock()
	}()
	t.log.Info("inbound stream opened", "peer", name, "peer_id", from, "remote", r.RemoteAddr)

	err = t.readStream(ctx, conn, from, pc)
	t.log.Info("inbound stream closed", "peer", name, "peer_id", from, "err", err)
	if ctx.Err() == nil {
		// The peer ended its stream (it was not replaced or closed by us):
		// if its process died, say so now rather than when our own
		// outbound stream next notices.
		t.probePeer(from)
	}
}

// probePeer dials peer id's address once and reports it down to a
// PeerObserver if the connection is refused (nothing listens there).
func (t *WebSocket) probePeer(id uint64) {
	o, ok := t.h.(PeerObserver)
	if !ok {
		return
	}
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return
	}
	c, err := net.DialTimeout("tcp", p.addr, t.cfg.DialTimeout)
	if err == nil {
		_ = c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		o.PeerDown(id)
	}
}

// readStream delivers frames from one peer, in order, until the stream
// fails or ctx is done. Bad frames are counted and skipped: the websocket
// layer still delimits messages, so one bad frame does not spoil the next.
func (t *WebSocket) readStream(ctx context.Context, conn *websocket.Conn, peerID uint64, pc *peerCounters) error {
	for {
		typ, b, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		if stages.Enabled {
			stages.Mark("peer_frame", 0)
		}
		if typ != websocket.MessageBinary {
			t.stats.badFrames.Add(1)
			t.warn("dropped non-binary frame", "peer_id", peerID)
			continue
		}
		from, msgs, err := DecodeFrame(b)
		if err != nil {
			t.stats.badFrames.Add(1)
			t.warn("dropped bad frame", "peer_id", peerID, "bytes", len(b), "err", err)
			continue
		}
		t.stats.framesReceived.Add(1)
		pc.bytesReceived.Add(uint64(len(b)))
		if from != peerID {
			t.stats.unknownSender.Add(1)
			t.warn("dropped frame with forged sender", "peer_id", peerID, "frame_from", from)
			continue
		}
		keep := msgs[:0]
		for _, m := range msgs {
			switch {
			case m.GetFrom() != peerID:
				t.stats.unknownSender.Add(1)
				t.warn("dropped message with forged sender", "peer_id", peerID, "msg_from", m.GetFrom())
			case m.GetTo() != t.cfg.ID:
				t.stats.misaddressed.Add(1)
				t.warn("dropped misaddressed message", "peer_id", peerID, "msg_to", m.GetTo())
			default:
				keep = append(keep, m)
			}
		}
		if len(keep) == 0 {
			continue
		}
		t.stats.messagesReceived.Add(uint64(len(keep)))
		pc.messagesReceived.Add(uint64(len(keep)))
		t.h.Deliver(keep)
	}
}

// checkHandshake validates a peer's handshake headers and, on success,
// returns with t.mu held (the caller registers itself and unlocks). On
// failure it has answered the request and does not hold the lock.
func (t *WebSocket) checkHandshake(rw http.ResponseWriter, r *http.Request) (from uint64, name string, ok bool) {
	var errFrom error
	from, errFrom = strconv.ParseUint(r.Header.Get(headerFrom), 10, 64)
	to, errTo := strconv.ParseUint(r.Header.Get(headerTo), 10, 64)
	name = r.Header.Get(headerName)
	if errFrom != nil || errTo != nil || to != t.cfg.ID {
		t.stats.unknownSender.Add(1)
		t.warn("refused peer stream: bad handshake", "remote", r.RemoteAddr, "from", r.Header.Get(headerFrom), "to", r.Header.Get(headerTo))
		http.Error(rw, "transport: handshake is not addressed to this node", http.StatusForbidden)
		return 0, "", false
	}
	if cluster, err := strconv.ParseUint(r.Header.Get(headerCluster), 16, 64); t.cfg.ClusterID != 0 && (err != nil || cluster != t.cfg.ClusterID) {
		t.stats.wrongCluster.Add(1)
		t.clusterError("refused peer stream from another cluster",
			"remote", r.RemoteAddr, "from", from, "name", name, "peer_cluster", r.Header.Get(headerCluster))
		rw.Header().Set(headerRefused, refusedCluster)
		rw.Header().Set(headerCluster, strconv.FormatUint(t.cfg.ClusterID, 16))
		http.Error(rw, "transport: this node belongs to another cluster", http.StatusForbidden)
		return 0, "", false
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		http.Error(rw, "transport: closed", http.StatusServiceUnavailable)
		return 0, "", false
	}
	if t.peers[from] == nil {
		t.mu.Unlock()
		t.stats.unknownSender.Add(1)
		t.warn("refused peer stream: unknown sender", "remote", r.RemoteAddr, "from", from, "name", name)
		http.Error(rw, "transport: unknown peer", http.StatusForbidden)
		return 0, "", false
	}
	return from, name, true
}
