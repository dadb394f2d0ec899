package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// SnapshotHandler is implemented by a Handler whose node keeps snapshot
// data outside raft messages (consensus.Node does; it has the method set
// of consensus.SnapshotHandler). A MsgSnap to a peer is then not queued on
// the peer's stream: it goes on a connection of its own, with the data
// read from OpenSnapshot and sent in chunks, and the receiver gets it
// through ReceiveSnapshot. Without it a MsgSnap travels inline, data
// included, and must fit in MaxFrameBytes.
type SnapshotHandler interface {
	OpenSnapshot(index, term uint64) (data io.ReadCloser, size int64, err error)
	ReceiveSnapshot(m *raftpb.Message, data io.Reader) error
}

// snapshotPath is where a peer accepts snapshot connections.
const snapshotPath = "/raft/snapshot"

// snapshotChunkBytes is the data per chunk frame: what one snapshot in
// flight costs in memory at either end, beyond the encode buffers.
const snapshotChunkBytes = 1 << 20

// snapshotIdleTimeout bounds the wait for each frame of a snapshot
// connection, and for the receiver's verdict once all is sent.
const snapshotIdleTimeout = 30 * time.Second

// ErrBadSnapshotStream means a snapshot connection broke its protocol:
// a frame of the wrong kind or size, more data than announced, or a
// checksum that does not match.
var ErrBadSnapshotStream = errors.New("transport: bad snapshot stream")

// A snapshot connection carries, from the leader:
//
//	frame 1: data size (8 bytes, big-endian) followed by an envelope frame
//	         holding the one MsgSnap (metadata only)
//	frames:  the data, in binary frames of at most snapshotChunkBytes
//	last:    CRC-32C (Castagnoli) of the data, 4 bytes
//
// and back from the follower one text frame, "ok" or the error that made
// it refuse the snapshot.
const snapshotOK = "ok"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// startSnapshot sends m on its own connection in the background. Called by
// Send with t.mu read-held. It reports false (and sends nothing) if a
// snapshot to the peer is already in flight.
func (t *WebSocket) startSnapshot(p *peer, m *raftpb.Message, sh SnapshotHandler) bool {
	if !p.snapSending.CompareAndSwap(false, true) {
		return false
	}
	m = proto.Clone(m).(*raftpb.Message) // raft may reuse m once Send returns
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer p.snapSending.Store(false)
		err := t.sendSnapshot(p, m, sh)
		if err != nil {
			t.log.Warn("sending snapshot failed", "peer", p.name, "peer_id", p.id,
				"index", m.GetSnapshot().GetMetadata().GetIndex(), "err", err)
			t.stats.messagesDropped.Add(1)
			t.h.ReportUnreachable(p.id)
			t.h.ReportSnapshot(p.id, raft.SnapshotFailure)
			return
		}
		t.stats.messagesSent.Add(1)
		t.h.ReportSnapshot(p.id, raft.SnapshotFinish)
	}()
	return true
}

func (t *WebSocket) sendSnapshot(p *peer, m *raftpb.Message, sh SnapshotHandler) error {
	meta := m.GetSnapshot().GetMetadata()
	data, size, err := sh.OpenSnapshot(meta.GetIndex(), meta.GetTerm())
	if err != nil {
		return err
	}
	defer data.Close()
	conn, err := t.dial(t.ctx, p, snapshotPath)
	if err != nil {
		return err
	}
	defer func() { _ = conn.CloseNow() }()
	conn.SetReadLimit(4 << 10)
	start := time.Now()

	env, err := EncodeFrame(t.cfg.ID, []*raftpb.Message{m})
	if err != nil {
		return err
	}
	head := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(env)), uint64(size))
	if err := t.writeFrame(conn, append(head, env...)); err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	buf := make([]byte, min(snapshotChunkBytes, int(t.cfg.MaxFrameBytes)))
	var sent int64
	for sent < size {
		n, err := io.ReadFull(data, buf[:min(int64(len(buf)), size-sent)])
		if err != nil {
			return fmt.Errorf("read snapshot data at %d of %d: %w", sent, size, err)
		}
		crc.Write(buf[:n])
		if err := t.writeFrame(conn, buf[:n]); err != nil {
			return err
		}
		sent += int64(n)
	}
	if err := t.writeFrame(conn, binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.ctx, snapshotIdleTimeout)
	defer cancel()
	typ, verdict, err := conn.Read(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the peer's verdict: %w", err)
	}
	if typ != websocket.MessageText || string(verdict) != snapshotOK {
		return fmt.Errorf("peer refused the snapshot: %.200q", verdict)
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
	t.log.Info("snapshot sent", "peer", p.name, "index", meta.GetIndex(), "bytes", size, "took", time.Since(start))
	return nil
}

func (t *WebSocket) writeFrame(conn *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WriteTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		return fmt.Errorf("transport: write snapshot frame: %w", err)
	}
	t.stats.framesSent.Add(1)
	return nil
}

// serveSnapshot receives one snapshot from a peer and hands it to the
// handler, then tells the peer whether it was taken.
func (t *WebSocket) serveSnapshot(rw http.ResponseWriter, r *http.Request) {
	sh, ok := t.h.(SnapshotHandler)
	if !ok {
		http.Error(rw, "transport: this node does not receive snapshot streams", http.StatusNotFound)
		return
	}
	from, name, ok := t.checkHandshake(rw, r)
	if !ok {
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()

	conn, err := websocket.Accept(rw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer func() { _ = conn.CloseNow() }()
	conn.SetReadLimit(t.cfg.MaxFrameBytes)
	err = t.receiveSnapshot(conn, from, sh)
	verdict := snapshotOK
	if err != nil {
		t.stats.badFrames.Add(1)
		t.warn("refused snapshot", "peer", name, "peer_id", from, "err", err)
		verdict = err.Error()
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.WriteTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, []byte(verdict)); err == nil {
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
}

func (t *WebSocket) receiveSnapshot(conn *websocket.Conn, from uint64, sh SnapshotHandler) error {
	b, err := readSnapshotFrame(t.ctx, conn)
	if err != nil {
		return err
	}
	if len(b) < 8 {
		return fmt.Errorf("%w: first frame of %d bytes", ErrBadSnapshotStream, len(b))
	}
	size := int64(binary.BigEndian.Uint64(b[:8]))
	frameFrom, msgs, err := DecodeFrame(b[8:])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshotStream, err)
	}
	if size < 0 || len(msgs) != 1 || msgs[0].GetType() != raftpb.MsgSnap {
		return fmt.Errorf("%w: first frame is not one MsgSnap with a size", ErrBadSnapshotStream)
	}
	m := msgs[0]
	if frameFrom != from || m.GetFrom() != from || m.GetTo() != t.cfg.ID {
		t.stats.unknownSender.Add(1)
		return fmt.Errorf("%w: snapshot from %d to %d on a connection from %d", ErrBadSnapshotStream, m.GetFrom(), m.GetTo(), from)
	}
	t.stats.framesReceived.Add(1)
	r := &snapshotReader{ctx: t.ctx, conn: conn, remaining: size, crc: crc32.New(castagnoli)}
	if err := sh.ReceiveSnapshot(m, r); err != nil {
		return err
	}
	if !r.verified {
		return fmt.Errorf("%w: receiver stopped before the end of the data", ErrBadSnapshotStream)
	}
	t.stats.messagesReceived.Add(1)
	return nil
}

func readSnapshotFrame(ctx context.Context, conn *websocket.Conn) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotIdleTimeout)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("transport: snapshot stream: %w", err)
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: text frame", ErrBadSnapshotStream)
	}
	return b, nil
}

// snapshotReader is the data of a snapshot connection as an io.Reader. It
// returns io.EOF only once all announced bytes arrived and their checksum
// matched; a cut or damaged stream is an error.
type snapshotReader struct {
	ctx       context.Context
	conn      *websocket.Conn
	remaining int64
	chunk     []byte
	crc       hash.Hash32
	verified  bool
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	if len(r.chunk) == 0 {
		if r.remaining == 0 {
			if err := r.verify(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		b, err := readSnapshotFrame(r.ctx, r.conn)
		if err != nil {
			return 0, err
		}
		if len(b) == 0 || int64(len(b)) > r.remaining {
			return 0, fmt.Errorf("%w: chunk of %d bytes with %d left", ErrBadSnapshotStream, len(b), r.remaining)
		}
		r.chunk = b
		r.remaining -= int64(len(b))
		r.crc.Write(b)
	}
	n := copy(p, r.chunk)
	r.chunk = r.chunk[n:]
	return n, nil
}

func (r *snapshotReader) verify() error {
	if r.verified {
		return nil
	}
	b, err := readSnapshotFrame(r.ctx, r.conn)
	if err != nil {
		return err
	}
	if len(b) != 4 || binary.BigEndian.Uint32(b) != r.crc.Sum32() {
		return fmt.Errorf("%w: checksum mismatch", ErrBadSnapshotStream)
	}
	r.verified = true
	return nil
}
