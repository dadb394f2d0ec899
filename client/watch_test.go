package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// receive takes responses from w until its progress reaches rev and
// returns the events' revisions.
func receive(t *testing.T, w *Watcher, rev int64, progress *int64) []int64 {
	t.Helper()
	var got []int64
	deadline := time.After(20 * time.Second)
	for *progress < rev {
		select {
		case resp, ok := <-w.C():
			if !ok {
				t.Fatalf("watch ended at %d, want %d: %v", *progress, rev, w.Err())
			}
			if resp.Revision <= *progress {
				t.Fatalf("progress went from %d to %d", *progress, resp.Revision)
			}
			*progress = resp.Revision
			for _, ev := range resp.Events {
				got = append(got, ev.Item.Revision)
			}
		case <-deadline:
			t.Fatalf("watch at %d, want %d", *progress, rev)
		}
	}
	return got
}

// watchTransports runs test over GET /v1/watch and over /v1/ws.
func watchTransports(t *testing.T, test func(t *testing.T, overWS bool)) {
	t.Run("sse", func(t *testing.T) { test(t, false) })
	t.Run("ws", func(t *testing.T) { test(t, true) })
}

// The watch moves to the next endpoint when its node stops, resuming
// after the last revision it delivered: every write arrives once, in
// order.
func TestWatchFailsOverWithoutGapOrRepeat(t *testing.T) {
	watchTransports(t, testWatchFailsOver)
}

func testWatchFailsOver(t *testing.T, overWS bool) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	cl := newTestCluster(t, 3)
	cl.WaitLeader(t, leaderTimeout)
	ctx := testContext(t)
	// The watcher starts on n1 (the first endpoint); writes go to n2, n3.
	watching := newClient(t, Config{Endpoints: cl.Endpoints(), RetryBackoff: 10 * time.Millisecond, WatchOverWS: overWS})
	writer := newClient(t, Config{Endpoints: cl.Endpoints("n2", "n3")})
	w, err := watching.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.StartRevision() != 1 {
		t.Fatalf("from now on an empty cluster starts at %d", w.StartRevision())
	}
	var last int64
	write := func(n int) {
		for range n {
			rev, err := writer.Put(ctx, fmt.Sprintf("w/%d", rng.IntN(10)), []byte(fmt.Sprint(rng.IntN(100))))
			if err != nil {
				t.Fatal(err)
			}
			last = rev
		}
	}
	var progress int64
	write(20)
	got := receive(t, w, last, &progress)
	// Its node goes away (Close ends its streams) while writes go on.
	cl.Stop(t, "n1")
	write(20)
	got = append(got, receive(t, w, last, &progress)...)
	cl.WaitLeader(t, leaderTimeout)
	write(20)
	got = append(got, receive(t, w, last, &progress)...)
	for i, rev := range got {
		if rev != int64(i+1) {
			t.Fatalf("revision %d at position %d: gap, repeat or reorder in %v", rev, i, got)
		}
	}
	if int64(len(got)) != last {
		t.Fatalf("%d events for %d writes", len(got), last)
	}
	w.Close()
	if !errors.Is(w.Err(), kv.ErrWatchClosed) {
		t.Fatalf("after Close: %v", w.Err())
	}
}

func startWatchNode(t *testing.T, history kv.WatchConfig) *server.Server {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	peer := listen()
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": peer.Addr().String()}
	s, err := server.Start(server.Config{Node: cfg, PeerListener: peer, HTTPListener: listen(),
		DataDir: filepath.Join(t.TempDir(), "n1"), WatchHistory: history})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	testwait.For(t, 10*time.Second, "the one node leads", func() bool { return s.Node().Status().IsLeader })
	return s
}

func TestWatchCompactedAndClientClose(t *testing.T) {
	watchTransports(t, testWatchCompactedAndClientClose)
}

func testWatchCompactedAndClientClose(t *testing.T, overWS bool) {
	s := startWatchNode(t, kv.WatchConfig{HistoryEvents: 3})
	c, err := New(Config{Endpoints: []string{s.HTTPAddr()}, WatchOverWS: overWS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	for i := range 6 {
		if _, err := c.Put(ctx, fmt.Sprintf("k%d", i), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Watch(ctx, "", 2)
	var ce *kv.CompactedError
	if !errors.As(err, &ce) || ce.Oldest != 4 || ce.Requested != 2 {
		t.Fatalf("watch from 2 with history 4..6: %v", err)
	}
	w, err := c.Watch(ctx, "k", 4)
	if err != nil {
		t.Fatal(err)
	}
	var progress int64 = 3
	if got := receive(t, w, 6, &progress); fmt.Sprint(got) != "[4 5 6]" {
		t.Fatalf("from 4: %v", got)
	}
	if _, err := c.Watch(ctx, "", -1); !errors.Is(err, kv.ErrInvalidRevision) {
		t.Fatalf("watch from -1: %v", err)
	}
	c.Close()
	for range w.C() {
	}
	if !errors.Is(w.Err(), ErrClosed) {
		t.Fatalf("after the client's Close: %v", w.Err())
	}
}

func TestWatchURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:9080/v1/ws":         "http://127.0.0.1:9080/v1/watch?prefix=a%2Fb",
		"wss://h:1/v1/ws":                   "https://h:1/v1/watch?prefix=a%2Fb",
		"wss://proxy/consensus/v1/ws":       "https://proxy/consensus/v1/watch?prefix=a%2Fb",
		"ws://proxy/elsewhere?x=1#fragment": "http://proxy/v1/watch?prefix=a%2Fb#fragment",
	} {
		got, err := watchURL(in, "a/b")
		if err != nil || got != want {
			t.Errorf("watchURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReadLine(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("a\r\n"+strings.Repeat("x", 40)+"\n\nlast"), 16)
	for _, want := range []string{"a", strings.Repeat("x", 40), ""} {
		line, err := readLine(r, 64)
		if err != nil || string(line) != want {
			t.Fatalf("line %q %v, want %q", line, err, want)
		}
	}
	if _, err := readLine(r, 64); err == nil {
		t.Fatal("a line without its end was returned")
	}
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)+"\n"), 16)
	if _, err := readLine(r, 64); !errors.Is(err, errLineTooLong) {
		t.Fatalf("long line: %v", err)
	}
}

func TestWatchCodesMatchAPI(t *testing.T) {
	if CodeCompacted != api.CodeCompacted || CodeTooManyWatches != api.CodeTooManyWatches {
		t.Fatal("watch codes differ from api's")
	}
	if err := (&ServerError{Code: CodeTooManyWatches}); !errors.Is(err, ErrRateLimited) {
		t.Fatal("too_many_watches is not ErrRateLimited")
	}
}

// FuzzWatchStream feeds arbitrary bytes to the SSE reader as a stream's
// body: it never panics, and what it delivers keeps the watch's promises
// (progress only grows, events are in order and within it).
func FuzzWatchStream(f *testing.F) {
	f.Add([]byte("id: 0\n\nid: 1\ndata: {\"type\":\"put\",\"key\":\"a\",\"value\":1,\"revision\":1,\"createRevision\":1,\"version\":1}\n\n: heartbeat\n\nid: 3\n\n"))
	f.Add([]byte("data: {\"type\":\"put\",\"key\":\"a\",\"value\":1,\"revision\":2}\r\n\r\nid: 2\r\ndata: {\"type\":\"delete\",\"key\":\"b\",\"value\":null,\"revision\":2}\r\n\r\n"))
	f.Add([]byte("event: error\ndata: {\"error\":{\"code\":\"compacted\",\"message\":\"m\",\"oldestRevision\":9}}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		w := &Watcher{c: &Client{cfg: Config{MaxFrameBytes: 4096}}, ctx: ctx, cancel: cancel, out: make(chan kv.WatchResponse)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			var progress, lastEvent int64
			for resp := range w.out {
				if resp.Revision <= progress {
					t.Errorf("progress %d after %d", resp.Revision, progress)
				}
				for _, ev := range resp.Events {
					if ev.Item.Revision <= progress || ev.Item.Revision > resp.Revision || ev.Item.Revision < lastEvent {
						t.Errorf("event at %d in a response at %d after progress %d", ev.Item.Revision, resp.Revision, progress)
					}
					lastEvent = ev.Item.Revision
				}
				progress = resp.Revision
			}
		}()
		s := &watchStream{body: io.NopCloser(bytes.NewReader(nil)), r: bufio.NewReader(bytes.NewReader(in)), endpoint: "fuzz"}
		_ = w.follow(s)
		close(w.out)
		<-done
	})
}

// smallSendBuffers accepts connections with a small send buffer, so that
// a reader who stops reading is felt after a few KiB.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// metricValue reads from the node's /metrics the value of the first line
// that match accepts ("" when none does).
func metricValue(t *testing.T, addr string, match func(line string) bool) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); match(line) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

// stalledStreams reads the node's count of watch streams it cut off
// because a write to the client was blocked for the write timeout.
func stalledStreams(t *testing.T, addr string) string {
	t.Helper()
	return metricValue(t, addr, func(line string) bool {
		return strings.HasPrefix(line, "consensus_watches_ended_total{") && strings.Contains(line, `reason="stalled"`)
	})
}

// A caller that stops taking from a Watcher's C stalls the watcher's
// stream; the node cuts the stream off after its write timeout. When the
// caller takes again, the watcher resumes from the last revision it
// delivered: every change once, in order, and the watch goes on.
func TestWatchResumesAfterItsStalledStreamIsCutOff(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := consensus.DefaultConfig("n1")
	cfg.Peers = map[string]string{"n1": peer.Addr().String()}
	s, err := server.Start(server.Config{Node: cfg, PeerListener: peer, HTTPListener: smallSendBuffers{httpLn},
		DataDir: filepath.Join(t.TempDir(), "n1"),
		HTTP:    server.HTTPOptions{Watch: server.WatchOptions{WriteTimeout: 300 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	testwait.For(t, 10*time.Second, "the one node leads", func() bool { return s.Node().Status().IsLeader })
	ctx := testContext(t)

	// The watch's first stream has a small receive buffer too. Only the
	// first: with small buffers at both ends TCP crawls (window updates
	// wait on delayed acknowledgements), and the resumed stream must be
	// able to catch up.
	dialer := &net.Dialer{}
	var smallNext atomic.Bool
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && smallNext.CompareAndSwap(true, false) {
			_ = tc.SetReadBuffer(8 << 10)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	watching, err := New(Config{Endpoints: []string{s.HTTPAddr()}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer watching.Close()
	writing, err := New(Config{Endpoints: []string{s.HTTPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer writing.Close()

	smallNext.Store(true)
	w, err := watching.Watch(ctx, "w/", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if smallNext.Load() {
		t.Fatal("the watch opened no new connection")
	}
	// Nobody takes from C while far more is written than the buffers on
	// the way hold (the watcher's channel, the node's, the sockets').
	value := []byte(`"` + strings.Repeat("v", 16<<10) + `"`)
	var last int64
	for i := 0; stalledStreams(t, s.HTTPAddr()) != "1"; i++ {
		if i == 2000 {
			t.Fatalf("the stalled stream was not cut off after %d writes (stalled count %q)", i, stalledStreams(t, s.HTTPAddr()))
		}
		if last, err = writing.Put(ctx, fmt.Sprintf("w/%d", i%50), value); err != nil {
			t.Fatal(err)
		}
	}
	after, err := writing.Put(ctx, "w/after", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	var progress int64
	got := receive(t, w, after, &progress)
	if int64(len(got)) != after || got[0] != 1 || got[len(got)-1] != after {
		t.Fatalf("got %d revisions (%v...), want 1..%d (the last Put before it was %d)", len(got), got[:min(5, len(got))], after, last)
	}
	for i, rev := range got {
		if rev != int64(i+1) {
			t.Fatalf("revision %d where %d belongs", rev, i+1)
		}
	}
	if stalled := stalledStreams(t, s.HTTPAddr()); stalled != "1" {
		t.Fatalf("stalled count %q after the resume", stalled)
	}
}

// watchesOpen reads the node's count of open watches from /metrics.
func watchesOpen(t *testing.T, addr string) string {
	t.Helper()
	return metricValue(t, addr, func(line string) bool { return strings.HasPrefix(line, "consensus_watches_open") })
}

// With WatchOverWS many watches share the client's one connection: each
// gets exactly its prefix's changes, in order; Close cancels a watch on
// the server (its slot is freed) and the others go on.
func TestWatchOverWSSharesTheConnection(t *testing.T) {
	s := startWatchNode(t, kv.WatchConfig{})
	c := newClient(t, Config{Endpoints: []string{s.HTTPAddr()}, WatchOverWS: true})
	ctx := testContext(t)
	prefixes := []string{"a/", "b/", ""}
	const watches = 30
	ws := make([]*Watcher, watches)
	for i := range ws {
		w, err := c.Watch(ctx, prefixes[i%len(prefixes)], 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws[i] = w
	}
	if open := s.WSStats().Open; open != 1 {
		t.Fatalf("%d /v1/ws connections open, want the client's one", open)
	}
	if open := watchesOpen(t, s.HTTPAddr()); open != fmt.Sprint(watches) {
		t.Fatalf("watches open on the node: %q, want %d", open, watches)
	}
	keys := map[int64]string{}
	for i := range 60 {
		key := fmt.Sprintf("%s%d", []string{"a/", "b/", "c/"}[i%3], i)
		rev, err := c.Put(ctx, key, []byte(`1`))
		if err != nil {
			t.Fatal(err)
		}
		keys[rev] = key
	}
	// A last write that every watch sees (one revision, two keys), so
	// that each one's progress reaches it without a heartbeat.
	both := func() int64 {
		t.Helper()
		rev, err := c.Batch(ctx, []api.TxnOp{{Type: api.TxnPut, Key: "a/end", Value: []byte(`1`)},
			{Type: api.TxnPut, Key: "b/end", Value: []byte(`1`)}})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	last := both()
	for i, w := range ws {
		var want []int64
		for rev := w.StartRevision(); rev < last; rev++ {
			if strings.HasPrefix(keys[rev], prefixes[i%len(prefixes)]) {
				want = append(want, rev)
			}
		}
		want = append(want, last)
		if prefixes[i%len(prefixes)] == "" {
			want = append(want, last)
		}
		progress := w.StartRevision() - 1
		if got := receive(t, w, last, &progress); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("watch %d (%q): %v, want %v", i, prefixes[i%len(prefixes)], got, want)
		}
	}
	// Close one: the node forgets it, the others go on.
	ws[0].Close()
	if !errors.Is(ws[0].Err(), kv.ErrWatchClosed) {
		t.Fatalf("after Close: %v", ws[0].Err())
	}
	testwait.For(t, 10*time.Second, "the closed watch is cancelled on the node", func() bool {
		return watchesOpen(t, s.HTTPAddr()) == fmt.Sprint(watches-1)
	})
	rev := both()
	for _, i := range []int{1, 3} { // a b/ watch and an a/ one
		progress := last
		if got := receive(t, ws[i], rev, &progress); fmt.Sprint(got) != fmt.Sprint([]int64{rev}) {
			t.Fatalf("watch %d: %v, want [%d]", i, got, rev)
		}
	}
}

// A consumer that stops taking from C does not hold up the connection:
// once its watch's queue passes its bound the client restarts the watch
// from the last revision it delivered, and when the consumer takes again
// it gets every change once, in order. Calls on the same connection go
// on meanwhile.
func TestWatchOverWSSlowConsumerResumes(t *testing.T) {
	defer func(n int) { watchQueueBytes = n }(watchQueueBytes)
	watchQueueBytes = 16 << 10
	s := startWatchNode(t, kv.WatchConfig{HistoryEvents: 100_000})
	c := newClient(t, Config{Endpoints: []string{s.HTTPAddr()}, WatchOverWS: true})
	ctx := testContext(t)
	w, err := c.Watch(ctx, "w/", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	value := []byte(`"` + strings.Repeat("v", 1<<10) + `"`)
	var last int64
	// Far more than the watch's queue (16 KiB) and its channels hold.
	for i := range 300 {
		began := time.Now()
		if last, err = c.Put(ctx, fmt.Sprintf("w/%d", i%20), value); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Fatalf("a put on the connection took %v while its watch was not read", took)
		}
	}
	var progress int64
	got := receive(t, w, last, &progress)
	for i, rev := range got {
		if rev != int64(i+1) {
			t.Fatalf("revision %d where %d belongs", rev, i+1)
		}
	}
	if int64(len(got)) != last {
		t.Fatalf("%d events for %d writes", len(got), last)
	}
	// 300 puts and the first watch, then at least one more watch (and the
	// cancel of the first): the client restarted it.
	if n := s.WSStats().Requests; n < 303 {
		t.Fatalf("%d requests on /v1/ws: the slow consumer's watch was never restarted", n)
	}
}

// TestConnWatchHandsToParkedWatcher: while a Watcher's goroutine is
// parked with nothing queued, the connection's reader hands it each
// response itself, as deliverWS would (in order, repeats dropped), as long
// as the channel has room; otherwise, and once it unparks, responses are
// queued for the goroutine, behind anything already queued.
func TestConnWatchHandsToParkedWatcher(t *testing.T) {
	ev := func(rev int64) api.Event {
		return api.Event{Type: api.EventPut, Item: api.Item{Key: "k", Value: []byte(`1`), Revision: rev}}
	}
	resp := func(rev int64, evs ...api.Event) api.WatchResponse {
		return api.WatchResponse{Events: evs, Revision: rev}
	}
	w := &Watcher{out: make(chan api.WatchResponse, 2), progress: 5}
	cw := newConnWatch(1 << 20)
	if !cw.park(w) {
		t.Fatal("park with nothing queued refused")
	}
	cw.push(resp(7, ev(5), ev(6), ev(7))) // revision 5 already delivered
	cw.push(resp(7))                      // a repeat: dropped
	if got := <-w.out; len(got.Events) != 2 || got.Events[0].Item.Revision != 6 || got.Revision != 7 || w.progress != 7 {
		t.Fatalf("handed %+v, progress %d; want revisions 6-7, progress 7", got, w.progress)
	}
	if len(w.out) != 0 || len(cw.queue) != 0 {
		t.Fatalf("the repeat went somewhere: %d sent, %d queued", len(w.out), len(cw.queue))
	}
	// A full channel: queued, and so is what follows, behind it.
	cw.push(resp(8, ev(8)))
	cw.push(resp(9, ev(9)))
	cw.push(resp(10, ev(10)))
	cw.push(resp(11, ev(11)))
	if len(w.out) != 2 || len(cw.queue) != 2 || cw.queue[0].Revision != 10 {
		t.Fatalf("full channel: %d sent, %d queued (%+v)", len(w.out), len(cw.queue), cw.queue)
	}
	// Events past the response's own revision, which is not past the
	// progress, never come from a good server: not handed, left for the
	// goroutine to refuse.
	w2 := &Watcher{out: make(chan api.WatchResponse, 2), progress: 5}
	cw2 := newConnWatch(1 << 20)
	cw2.park(w2)
	cw2.push(resp(5, ev(6)))
	if len(w2.out) != 0 || len(cw2.queue) != 1 {
		t.Fatalf("a bad response was handed over: %d sent, %d queued", len(w2.out), len(cw2.queue))
	}
	if cw2.park(w2) {
		t.Fatal("parked with something queued")
	}
	// Unparked: queued.
	w3 := &Watcher{out: make(chan api.WatchResponse, 2), progress: 0}
	cw3 := newConnWatch(1 << 20)
	cw3.park(w3)
	cw3.unpark()
	cw3.push(resp(1, ev(1)))
	if len(w3.out) != 0 || len(cw3.queue) != 1 {
		t.Fatalf("unparked: %d sent, %d queued", len(w3.out), len(cw3.queue))
	}
}
