package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testwait"
)

// waitTimeout bounds every wait in these tests; conditions normally hold
// within milliseconds.
const waitTimeout = 10 * time.Second

type snapReport struct {
	id     uint64
	status raft.SnapshotStatus
}

// recorder is a Handler that remembers everything it is told.
type recorder struct {
	mu          sync.Mutex
	delivered   []*raftpb.Message
	unreachable map[uint64]int
	snaps       []snapReport
}

func newRecorder() *recorder { return &recorder{unreachable: map[uint64]int{}} }

func (r *recorder) Deliver(msgs []*raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered = append(r.delivered, msgs...)
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *recorder) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps = append(r.snaps, snapReport{id, status})
}

func (r *recorder) messages() []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delivered)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.delivered)
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) snapReports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.snaps)
}

// testLogger logs to stderr when TRANSPORT_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testConfig(id uint64) Config {
	return Config{
		ID:          id,
		Name:        fmt.Sprintf("n%d", id),
		DialTimeout: 2 * time.Second,
		BackoffMin:  2 * time.Millisecond,
		BackoffMax:  20 * time.Millisecond,
		Logger:      testLogger(),
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// start runs a transport, closed when the test ends.
func start(t *testing.T, cfg Config, h Handler) *WebSocket {
	t.Helper()
	if cfg.Listener == nil && cfg.ListenAddr == "" {
		cfg.Listener = listen(t)
	}
	tr, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tr
}

// pair starts two connected transports with ids 1 and 2.
func pair(t *testing.T) (a, b *WebSocket, ha, hb *recorder) {
	t.Helper()
	ha, hb = newRecorder(), newRecorder()
	a = start(t, testConfig(1), ha)
	b = start(t, testConfig(2), hb)
	a.AddPeer(2, "n2", b.Addr())
	b.AddPeer(1, "n1", a.Addr())
	waitConnected(t, a, 2)
	waitConnected(t, b, 1)
	return a, b, ha, hb
}

func waitConnected(t *testing.T, tr *WebSocket, ids ...uint64) {
	t.Helper()
	testwait.For(t, waitTimeout, fmt.Sprintf("node %d connected to %v", tr.cfg.ID, ids), func() bool {
		return slices.Equal(tr.ConnectedPeers(), ids)
	})
}

func msg(typ raftpb.MessageType, from, to, term uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Term: proto.Uint64(term)}
}

func heartbeat(from, to, commit uint64) *raftpb.Message {
	m := msg(raftpb.MsgHeartbeat, from, to, 1)
	m.Commit = proto.Uint64(commit)
	return m
}

// sameMessages reports whether got and want are equal message by message.
func sameMessages(t *testing.T, got, want []*raftpb.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("message %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestDeliverMessageTypesInOrder(t *testing.T) {
	a, _, recA, recB := pair(t)

	app := msg(raftpb.MsgApp, 1, 2, 3)
	app.LogTerm, app.Index, app.Commit = proto.Uint64(3), proto.Uint64(10), proto.Uint64(9)
	for i := range 3 {
		app.Entries = append(app.Entries, &raftpb.Entry{
			Term: proto.Uint64(3), Index: proto.Uint64(uint64(11 + i)), Type: raftpb.EntryNormal.Enum(),
			Data: fmt.Appendf(nil, "command %d", i),
		})
	}
	app.Entries = append(app.Entries, &raftpb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(14), Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte{}})
	snap := msg(raftpb.MsgSnap, 1, 2, 3)
	snap.Snapshot = &raftpb.Snapshot{
		Data: []byte("the whole state machine"),
		Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(9), Term: proto.Uint64(3),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, AutoLeave: proto.Bool(false)},
		},
	}
	vote := msg(raftpb.MsgPreVote, 1, 2, 4)
	vote.LogTerm, vote.Index = proto.Uint64(3), proto.Uint64(14)
	resp := msg(raftpb.MsgAppResp, 1, 2, 3)
	resp.Index, resp.Reject, resp.RejectHint, resp.LogTerm = proto.Uint64(10), proto.Bool(true), proto.Uint64(7), proto.Uint64(2)
	beat := heartbeat(1, 2, 9)
	beat.Context = []byte("read-index ctx")
	sent := []*raftpb.Message{beat, app, snap, vote, resp, msg(raftpb.MsgTimeoutNow, 1, 2, 3)}

	// Send must not retain the messages: keep copies to compare against and
	// scribble over the originals once Send returns, as raft may.
	want := make([]*raftpb.Message, len(sent))
	for i, m := range sent {
		want[i] = proto.Clone(m).(*raftpb.Message)
	}
	a.Send(sent)
	for _, m := range sent {
		m.Term = proto.Uint64(999)
		m.Entries = nil
		m.Snapshot = nil
		if len(m.Context) > 0 {
			m.Context[0] = 'X' // Context is copied; entry data is shared
		}
	}

	testwait.For(t, waitTimeout, "all messages delivered", func() bool { return recB.count() >= len(want) })
	sameMessages(t, recB.messages(), want)
	testwait.For(t, waitTimeout, "snapshot reported", func() bool { return len(recA.snapReports()) > 0 })
	if got := recA.snapReports(); !slices.Equal(got, []snapReport{{2, raft.SnapshotFinish}}) {
		t.Fatalf("snapshot reports %v, want one SnapshotFinish for 2", got)
	}
	if s := a.Stats(); s.MessagesSent != uint64(len(want)) || s.MessagesDropped != 0 {
		t.Fatalf("sender stats %+v", s)
	}
}

// gatedListener accepts nothing until open is closed; the kernel still
// completes TCP handshakes, so a dialer connects and then waits.
type gatedListener struct {
	net.Listener
	open      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newGatedListener(t *testing.T) *gatedListener {
	return &gatedListener{Listener: listen(t), open: make(chan struct{}), closed: make(chan struct{})}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	select {
	case <-l.open:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	return l.Listener.Accept()
}

func (l *gatedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// TestBatchManyMessagesPerFrame queues messages while the stream is still
// being set up (the peer's listener is gated), so they are all waiting when
// it connects and must go out as few frames.
func TestBatchManyMessagesPerFrame(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	gate := newGatedListener(t)
	cfgB := testConfig(2)
	cfgB.Listener = gate
	b := start(t, cfgB, recB)
	cfgA := testConfig(1)
	cfgA.DialTimeout = waitTimeout
	a := start(t, cfgA, recA)
	b.AddPeer(1, "n1", a.Addr())
	a.AddPeer(2, "n2", b.Addr())

	const n = 2000
	want := make([]*raftpb.Message, n)
	for i := range want {
		want[i] = heartbeat(1, 2, uint64(i))
		a.Send(want[i : i+1])
	}
	if got := a.ConnectedPeers(); len(got) != 0 {
		t.Fatalf("connected to %v before the gate opened", got)
	}
	close(gate.open)

	testwait.For(t, waitTimeout, "all messages delivered", func() bool { return recB.count() >= n })
	sameMessages(t, recB.messages(), want)
	s := a.Stats()
	t.Logf("%d messages in %d frames", s.MessagesSent, s.FramesSent)
	if s.MessagesSent != n || s.FramesSent >= s.MessagesSent {
		t.Fatalf("sent %d messages in %d frames, want %d in fewer frames", s.MessagesSent, s.FramesSent, n)
	}
	if rs := b.Stats(); rs.FramesReceived != s.FramesSent || rs.MessagesReceived != n {
		t.Fatalf("receiver stats %+v, sender %+v", rs, s)
	}
}

// TestReconnectAfterPeerRestart restarts B on the same address and checks
// that A notices the loss at once, reconnects and resumes delivery.
func TestReconnectAfterPeerRestart(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	a := start(t, testConfig(1), recA)
	cfgB := testConfig(2)
	// B's address is re-bound after B closes: take it below the ephemeral
	// range so no other socket can take it in between.
	addrB := deadAddr(t)
	cfgB.Listener = relisten(t, addrB)
	b, err := New(cfgB, recB)
	if err != nil {
		t.Fatal(err)
	}
	a.AddPeer(2, "n2", addrB)
	b.AddPeer(1, "n1", a.Addr())
	waitConnected(t, a, 2)
	a.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
	testwait.For(t, waitTimeout, "first delivery", func() bool { return recB.count() == 1 })

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, a)
	testwait.For(t, waitTimeout, "B reported unreachable", func() bool { return recA.unreachableCount(2) > 0 })

	// Sends while B is down are dropped (or wait in the queue); none block.
	a.Send([]*raftpb.Message{heartbeat(1, 2, 2)})

	recB2 := newRecorder()
	cfgB.Listener = relisten(t, addrB)
	b2 := start(t, cfgB, recB2)
	b2.AddPeer(1, "n1", a.Addr())
	waitConnected(t, a, 2)
	waitConnected(t, b2, 1)

	a.Send([]*raftpb.Message{heartbeat(1, 2, 3)})
	testwait.For(t, waitTimeout, "delivery after restart", func() bool {
		ms := recB2.messages()
		return len(ms) > 0 && ms[len(ms)-1].GetCommit() == 3
	})
	// And the other direction, over B2's new stream to A.
	b2.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeatResp, 2, 1, 1)})
	testwait.For(t, waitTimeout, "delivery from the restarted peer", func() bool { return recA.count() == 1 })
}

// rawStream dials tr as node from, as a misbehaving peer would.
func rawStream(t *testing.T, tr *WebSocket, from, to uint64) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set(headerFrom, strconv.FormatUint(from, 10))
	hdr.Set(headerTo, strconv.FormatUint(to, 10))
	hdr.Set(headerName, "raw")
	conn, resp, err := websocket.Dial(ctx, "ws://"+tr.Addr()+streamPath, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err == nil {
		t.Cleanup(func() { _ = conn.CloseNow() })
	}
	return conn, resp, err
}

func TestBadInboundTraffic(t *testing.T) {
	a, b, _, recB := pair(t)
	// Node 3 is a member B knows (at an address nobody serves); the test
	// speaks for it over a raw stream, so A's own stream is left alone.
	b.AddPeer(3, "n3", deadAddr(t))
	conn, _, err := rawStream(t, b, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	write := func(typ websocket.MessageType, p []byte) {
		t.Helper()
		if err := conn.Write(ctx, typ, p); err != nil {
			t.Fatal(err)
		}
	}
	frame := func(from uint64, msgs ...*raftpb.Message) []byte {
		t.Helper()
		f, err := EncodeFrame(from, msgs)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	write(websocket.MessageBinary, []byte("not msgpack at all"))
	write(websocket.MessageBinary, []byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	write(websocket.MessageText, []byte(`{"v":1}`))
	testwait.For(t, waitTimeout, "bad frames counted", func() bool { return b.Stats().BadFrames == 3 })

	// pair may have seen A dial before B knew it; count from here.
	unknownBefore := b.Stats().UnknownSender
	write(websocket.MessageBinary, frame(1, heartbeat(1, 2, 1)))                       // envelope claims A
	write(websocket.MessageBinary, frame(3, heartbeat(1, 2, 1), heartbeat(3, 2, 100))) // one message claims A
	write(websocket.MessageBinary, frame(3, heartbeat(3, 5, 1)))                       // not for B
	testwait.For(t, waitTimeout, "forgeries counted", func() bool {
		s := b.Stats()
		return s.UnknownSender-unknownBefore == 2 && s.Misaddressed == 1
	})
	// The raw stream survived all that, and so did A's.
	testwait.For(t, waitTimeout, "honest message from 3", func() bool { return recB.count() == 1 })
	a.Send([]*raftpb.Message{heartbeat(1, 2, 7)})
	testwait.For(t, waitTimeout, "A still delivers", func() bool { return recB.count() == 2 })
	want := []*raftpb.Message{heartbeat(3, 2, 100), heartbeat(1, 2, 7)}
	sameMessages(t, recB.messages(), want)

	// Handshakes from strangers, or meant for another node, are refused.
	before := b.Stats().UnknownSender
	for _, c := range []struct{ from, to uint64 }{{99, 2}, {1, 3}, {0, 2}} {
		_, resp, err := rawStream(t, b, c.from, c.to)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("handshake from %d to %d: err %v, response %v; want 403", c.from, c.to, err, resp)
		}
	}
	if got := b.Stats().UnknownSender - before; got != 3 {
		t.Fatalf("UnknownSender grew by %d, want 3", got)
	}
}

// relisten binds addr, waiting while a closing listener still holds it.
func relisten(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := loopback.Listen(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// sendWithDeadline runs send and fails the test if it does not return
// promptly: Send must never block the raft loop.
func sendWithDeadline(t *testing.T, send func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		send()
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked")
	}
}

func TestBackpressureUnreachablePeer(t *testing.T) {
	rec := newRecorder()
	cfg := testConfig(1)
	cfg.SendQueueSize = 4
	a := start(t, cfg, rec)
	a.AddPeer(2, "n2", deadAddr(t))

	const n = 10000
	snap := msg(raftpb.MsgSnap, 1, 2, 1)
	snap.Snapshot = &raftpb.Snapshot{Data: []byte("state")}
	sendWithDeadline(t, func() {
		for i := range n - 1 {
			a.Send([]*raftpb.Message{heartbeat(1, 2, uint64(i))})
		}
		a.Send([]*raftpb.Message{snap})
	})
	testwait.For(t, waitTimeout, "drops counted", func() bool { return a.Stats().MessagesDropped > 0 })
	testwait.For(t, waitTimeout, "unreachable reported", func() bool { return rec.unreachableCount(2) > 0 })
	testwait.For(t, waitTimeout, "snapshot failure reported", func() bool {
		return slices.Contains(rec.snapReports(), snapReport{2, raft.SnapshotFailure})
	})
	if got := a.ConnectedPeers(); len(got) != 0 {
		t.Fatalf("connected to %v", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing was sent, so every message is accounted for as dropped.
	if s := a.Stats(); s.MessagesDropped != n || s.MessagesSent != 0 {
		t.Fatalf("stats %+v, want all %d dropped", s, n)
	}
}

// TestBackpressureStalledPeer queues for a peer whose dial hangs (its
// listener never accepts): the queue fills and the rest is dropped at once.
func TestBackpressureStalledPeer(t *testing.T) {
	rec := newRecorder()
	cfg := testConfig(1)
	cfg.SendQueueSize = 4
	cfg.DialTimeout = waitTimeout
	a := start(t, cfg, rec)
	stalled := listen(t) // never accepts
	t.Cleanup(func() { _ = stalled.Close() })
	a.AddPeer(2, "n2", stalled.Addr().String())

	const n = 1000
	msgs := make([]*raftpb.Message, n)
	for i := range msgs {
		msgs[i] = heartbeat(1, 2, uint64(i))
	}
	sendWithDeadline(t, func() { a.Send(msgs) })
	if s := a.Stats(); s.MessagesDropped != n-4 {
		t.Fatalf("dropped %d, want %d", s.MessagesDropped, n-4)
	}
	// One report per Send call, however many messages it dropped.
	if got := rec.unreachableCount(2); got != 1 {
		t.Fatalf("ReportUnreachable(2) called %d times, want 1", got)
	}

	// Unknown peers are dropped and reported too.
	a.Send([]*raftpb.Message{heartbeat(1, 42, 1)})
	if got := rec.unreachableCount(42); got != 1 {
		t.Fatalf("ReportUnreachable(42) called %d times, want 1", got)
	}
}

func TestRemoveAndReaddressPeer(t *testing.T) {
	a, b, recA, recB := pair(t)

	a.RemovePeer(2)
	if got := a.ConnectedPeers(); len(got) != 0 {
		t.Fatalf("connected to %v after RemovePeer", got)
	}
	a.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
	if recA.unreachableCount(2) == 0 {
		t.Fatal("Send to a removed peer was not reported")
	}
	// B's stream to A is refused now: A no longer knows B.
	testwait.For(t, waitTimeout, "B's redial refused", func() bool { return a.Stats().UnknownSender > 0 })
	waitConnected(t, b)

	// Pointing A at a wrong address and back reconnects.
	a.AddPeer(2, "n2", deadAddr(t))
	if got := a.ConnectedPeers(); len(got) != 0 {
		t.Fatalf("still connected to %v after the address changed", got)
	}
	a.AddPeer(2, "n2", b.Addr())
	a.AddPeer(2, "n2", b.Addr()) // idempotent
	waitConnected(t, a, 2)
	waitConnected(t, b, 1)
	a.Send([]*raftpb.Message{heartbeat(1, 2, 5)})
	testwait.For(t, waitTimeout, "delivery after re-adding", func() bool { return recB.count() == 1 })
	sameMessages(t, recB.messages(), []*raftpb.Message{heartbeat(1, 2, 5)})

	// Self and id 0 are not peers.
	a.AddPeer(1, "n1", a.Addr())
	a.AddPeer(0, "nobody", a.Addr())
	if got := a.ConnectedPeers(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("connected peers %v", got)
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	a, b, recA, _ := pair(t)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitConnected(t, b) // B sees A go at once
	a.Send([]*raftpb.Message{heartbeat(1, 2, 1)})
	a.AddPeer(3, "n3", b.Addr())
	if got := a.ConnectedPeers(); len(got) != 0 {
		t.Fatalf("connected peers %v after Close", got)
	}
	if n := recA.unreachableCount(2); n != 0 {
		t.Fatalf("handler called after Close: %d reports", n)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	h := newRecorder()
	cases := map[string]Config{
		"zero id":          {ListenAddr: "127.0.0.1:0"},
		"no address":       {ID: 1},
		"negative queue":   {ID: 1, ListenAddr: "127.0.0.1:0", SendQueueSize: -1},
		"tiny frames":      {ID: 1, ListenAddr: "127.0.0.1:0", MaxFrameBytes: 100},
		"inverted backoff": {ID: 1, ListenAddr: "127.0.0.1:0", BackoffMin: time.Second, BackoffMax: time.Millisecond},
		"negative timeout": {ID: 1, ListenAddr: "127.0.0.1:0", WriteTimeout: -time.Second},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if err := cfg.Validate(); err == nil {
				t.Fatal("Validate accepted it")
			}
			if tr, err := New(cfg, h); err == nil {
				_ = tr.Close()
				t.Fatal("New accepted it")
			}
		})
	}
	if _, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0"}, nil); err == nil {
		t.Fatal("New accepted a nil handler")
	}
	if _, err := New(Config{ID: 1, ListenAddr: "256.0.0.1:0"}, h); err == nil {
		t.Fatal("New listened on a bad address")
	}

	tr, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0"}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	if _, port, _ := net.SplitHostPort(tr.Addr()); port == "0" || port == "" {
		t.Fatalf("Addr %q has no real port", tr.Addr())
	}
	if got, want := tr.cfg.SendQueueSize, DefaultConfig().SendQueueSize; got != want {
		t.Fatalf("SendQueueSize default %d, want %d", got, want)
	}
	if DefaultConfig().Validate() == nil {
		t.Fatal("DefaultConfig without an id validated")
	}
}
