package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus/internal/testwait"
)

// snapHandler is a recorder that also serves and receives snapshot data.
type snapHandler struct {
	*recorder
	data []byte // what OpenSnapshot serves

	mu       sync.Mutex
	received [][]byte
	errs     []error
}

func (h *snapHandler) OpenSnapshot(index, term uint64) (io.ReadCloser, int64, error) {
	return io.NopCloser(bytes.NewReader(h.data)), int64(len(h.data)), nil
}

func (h *snapHandler) ReceiveSnapshot(m *raftpb.Message, data io.Reader) error {
	b, err := io.ReadAll(data)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.errs = append(h.errs, err)
		return err
	}
	h.received = append(h.received, b)
	h.recorder.Deliver([]*raftpb.Message{m})
	return nil
}

func (h *snapHandler) results() ([][]byte, []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.received...), append([]error(nil), h.errs...)
}

func snapMsg(from, to, index, term uint64) *raftpb.Message {
	m := msg(raftpb.MsgSnap, from, to, term)
	m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(index), Term: proto.Uint64(term),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
	}}
	return m
}

// A MsgSnap travels on its own connection with its data in chunks far
// smaller than the snapshot, and the receiver gets exactly the bytes.
func TestSnapshotStreamedInChunks(t *testing.T) {
	seed := uint64(42)
	t.Logf("seed %d", seed)
	data := make([]byte, 5*snapshotChunkBytes+12345)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	ha := &snapHandler{recorder: newRecorder(), data: data}
	hb := &snapHandler{recorder: newRecorder()}
	cfg := testConfig(1)
	cfg.MaxFrameBytes = 2 * snapshotChunkBytes // far below the snapshot
	a := start(t, cfg, ha)
	cfg = testConfig(2)
	cfg.MaxFrameBytes = 2 * snapshotChunkBytes
	b := start(t, cfg, hb)
	a.AddPeer(2, "n2", b.Addr())
	b.AddPeer(1, "n1", a.Addr())

	a.Send([]*raftpb.Message{snapMsg(1, 2, 500, 3)})
	testwait.For(t, waitTimeout, "snapshot delivered and reported", func() bool {
		return len(ha.snapReports()) == 1 && hb.count() == 1
	})
	got, errs := hb.results()
	if len(errs) != 0 || len(got) != 1 || !bytes.Equal(got[0], data) {
		t.Fatalf("receiver got %d snapshots, errors %v; want the %d bytes sent", len(got), errs, len(data))
	}
	if r := ha.snapReports()[0]; r.id != 2 || r.status != raft.SnapshotFinish {
		t.Fatalf("sender's report = %+v, want finish for 2", r)
	}
	if m := hb.messages()[0]; m.GetSnapshot().GetMetadata().GetIndex() != 500 || m.GetFrom() != 1 {
		t.Fatalf("delivered %v", m)
	}
}

// rawSnapshot opens a snapshot connection to tr as peer from.
func rawSnapshot(t *testing.T, tr *WebSocket, from uint64) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set(headerFrom, strconv.FormatUint(from, 10))
	hdr.Set(headerTo, strconv.FormatUint(tr.cfg.ID, 10))
	hdr.Set(headerName, "raw")
	conn, _, err := websocket.Dial(ctx, "ws://"+tr.Addr()+snapshotPath, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return conn
}

// A damaged or cut snapshot stream is refused with a verdict, and the
// receiving node never steps the MsgSnap.
func TestSnapshotStreamRejectsBadStreams(t *testing.T) {
	data := bytes.Repeat([]byte("snapshot"), 1000)
	good := crc32.Checksum(data, castagnoli)
	head := func(size int, m *raftpb.Message) []byte {
		env, err := EncodeFrame(1, []*raftpb.Message{m})
		if err != nil {
			t.Fatal(err)
		}
		return append(binary.BigEndian.AppendUint64(nil, uint64(size)), env...)
	}
	type frame struct {
		typ websocket.MessageType
		b   []byte
	}
	bin := func(b []byte) frame { return frame{websocket.MessageBinary, b} }
	cases := map[string][]frame{
		"bad checksum":          {bin(head(len(data), snapMsg(1, 2, 9, 1))), bin(data), bin(binary.BigEndian.AppendUint32(nil, good+1))},
		"more data than said":   {bin(head(10, snapMsg(1, 2, 9, 1))), bin(data)},
		"garbage first frame":   {bin([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xc1})},
		"short first frame":     {bin([]byte{1, 2})},
		"not a snapshot":        {bin(head(0, heartbeat(1, 2, 0)))},
		"forged sender":         {bin(head(len(data), snapMsg(3, 2, 9, 1)))},
		"text chunk":            {bin(head(len(data), snapMsg(1, 2, 9, 1))), {websocket.MessageText, data}},
		"checksum of two bytes": {bin(head(len(data), snapMsg(1, 2, 9, 1))), bin(data), bin([]byte{1, 2})},
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			hb := &snapHandler{recorder: newRecorder()}
			b := start(t, testConfig(2), hb)
			b.AddPeer(1, "n1", deadAddr(t))
			conn := rawSnapshot(t, b, 1)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			for _, f := range frames {
				if err := conn.Write(ctx, f.typ, f.b); err != nil {
					break // the receiver may have given up already
				}
			}
			typ, verdict, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("no verdict: %v", err)
			}
			if typ != websocket.MessageText || string(verdict) == snapshotOK {
				t.Fatalf("verdict %q, want a refusal", verdict)
			}
			if hb.count() != 0 {
				t.Fatalf("a refused snapshot was delivered")
			}
		})
	}
	// A stream cut before the checksum never reaches Deliver either.
	hb := &snapHandler{recorder: newRecorder()}
	b := start(t, testConfig(2), hb)
	b.AddPeer(1, "n1", deadAddr(t))
	conn := rawSnapshot(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageBinary, head(len(data), snapMsg(1, 2, 9, 1)))
	_ = conn.Write(ctx, websocket.MessageBinary, data[:100])
	_ = conn.CloseNow()
	testwait.For(t, waitTimeout, "the cut stream's error", func() bool { _, errs := hb.results(); return len(errs) == 1 })
	if _, errs := hb.results(); errors.Is(errs[0], io.EOF) || hb.count() != 0 {
		t.Fatalf("cut stream: error %v (must not be a clean EOF), delivered %d", errs[0], hb.count())
	}
}
