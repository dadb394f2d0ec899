package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// wsWatchConn is a raw /v1/ws connection that reads frames with api's
// decoder, watch elements included.
type wsWatchConn struct {
	t    *testing.T
	c    *websocket.Conn
	mu   sync.Mutex
	ops  map[uint64]api.Op
	next uint64
	// maxPerFrame is the most watch elements one frame carried.
	maxPerFrame int
}

// wsElem is one decoded element of a frame.
type wsElem struct {
	id, kind uint64
	resp     api.Response      // an answer's
	events   api.WatchResponse // a ResultWatchEvents element's
	// code, message and oldest are an error answer's or an end's.
	code, message string
	oldest        int64
}

func dialWatchWS(t *testing.T, addr string, opts *websocket.DialOptions) *wsWatchConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+wsPath, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &wsWatchConn{t: t, c: c, ops: make(map[uint64]api.Op)}
}

// request sends r with a new id and returns the id.
func (w *wsWatchConn) request(r api.Request) uint64 {
	w.t.Helper()
	w.mu.Lock()
	w.next++
	id := w.next
	w.ops[id] = r.Op
	w.mu.Unlock()
	args, n := api.AppendArgs(nil, &r)
	frame := api.AppendRequest(api.AppendFrameHeader(nil, 1), id, r.Op, n, args)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageBinary, frame); err != nil {
		w.t.Fatalf("write: %v", err)
	}
	return id
}

// read reads one frame.
func (w *wsWatchConn) read(ctx context.Context) ([]wsElem, error) {
	_, b, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	fr, err := api.NewFrameReader(b)
	if err != nil {
		return nil, fmt.Errorf("frame: %w", err)
	}
	defer fr.Release()
	count, extra, err := fr.Header()
	if err != nil {
		return nil, err
	}
	var out []wsElem
	pushed := 0
	for range count {
		id, kind, more, err := fr.ResponseHeader()
		if err != nil {
			return nil, err
		}
		e := wsElem{id: id, kind: kind}
		switch kind {
		case api.ResultWatchEvents:
			e.events, err = fr.WatchEvents()
			pushed++
		case api.ResultWatchEnd:
			e.code, e.message, e.oldest, err = fr.WatchEnd()
			pushed++
		default:
			w.mu.Lock()
			op := w.ops[id]
			w.mu.Unlock()
			e.resp, err = fr.Payload(op, kind)
			e.code, e.message, e.oldest = e.resp.Code, e.resp.Message, e.resp.OldestRevision
		}
		if err != nil {
			return nil, fmt.Errorf("element %d (kind %d): %w", id, kind, err)
		}
		if err := fr.Skip(more); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	w.maxPerFrame = max(w.maxPerFrame, pushed)
	return out, fr.Skip(extra)
}

// answer reads until the frame with the answer to request id and
// returns the answer, passing every element of those frames, the answer
// included, to seen (if not nil) in order.
func (w *wsWatchConn) answer(id uint64, seen func(wsElem)) wsElem {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var found *wsElem
	for found == nil {
		es, err := w.read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for the answer to %d: %v", id, err)
		}
		for _, e := range es {
			if e.id == id && e.kind <= api.ResultError {
				found = &e
			}
			if seen != nil {
				seen(e)
			}
		}
	}
	return *found
}

// watch starts a watch and returns its id, failing unless it starts at
// wantStart.
func (w *wsWatchConn) watch(prefix string, from, wantStart int64, seen func(wsElem)) uint64 {
	w.t.Helper()
	id := w.request(api.Request{Op: api.OpWatch, Key: prefix, Revision: from})
	if a := w.answer(id, seen); a.kind != api.ResultOK || a.resp.Revision != wantStart {
		w.t.Fatalf("watch %q from %d: %+v, want start %d", prefix, from, a, wantStart)
	}
	return id
}

// TestWSWatchManyWatchesInOrder starts watches of several prefixes (some
// the same) on one connection, some from revision 1 while writes go on,
// and checks that each gets exactly its prefix's revisions, in order,
// after its answer; and that the elements of different watches share
// frames.
func TestWSWatchManyWatchesInOrder(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{})
	base := "http://" + s.HTTPAddr()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	prefixes := []string{"a/", "b/", "", "a/x", "c/"}
	const before, after = 40, 160
	keyOf := func(i int) string {
		return fmt.Sprintf("%s%d", []string{"a/", "a/x", "b/", "c/", "d/"}[rng.IntN(5)], i)
	}
	written := map[int64]string{}
	for i := range before {
		k := keyOf(i)
		written[putRev(t, base, k, `1`, "")] = k
	}

	w := dialWatchWS(t, s.HTTPAddr(), nil)
	type watchState struct {
		prefix  string
		got     []int64
		started bool // its answer has arrived
	}
	watches := map[uint64]*watchState{}
	var mu sync.Mutex
	seen := func(e wsElem) {
		mu.Lock()
		defer mu.Unlock()
		st := watches[e.id]
		if st == nil {
			t.Errorf("element for unknown or unanswered watch %d: %+v", e.id, e)
			return
		}
		switch e.kind {
		case api.ResultOK:
			st.started = true
		case api.ResultWatchEvents:
			if !st.started {
				t.Errorf("watch %d: events before its answer", e.id)
			}
			for _, ev := range e.events.Events {
				if !strings.HasPrefix(ev.Item.Key, st.prefix) {
					t.Errorf("watch %d (%q): event of key %q", e.id, st.prefix, ev.Item.Key)
				}
				st.got = append(st.got, ev.Item.Revision)
			}
		case api.ResultWatchEnd:
			t.Errorf("watch %d ended: %s %s", e.id, e.code, e.message)
		}
	}
	// 40 watches: eight of each prefix, half from revision 1, half from
	// now (the revision after the last write).
	for i := range 40 {
		prefix := prefixes[i%len(prefixes)]
		from, start := int64(1), int64(1)
		if i%2 == 1 {
			from, start = 0, int64(before+1)
		}
		id := w.request(api.Request{Op: api.OpWatch, Key: prefix, Revision: from})
		mu.Lock()
		watches[id] = &watchState{prefix: prefix}
		mu.Unlock()
		a := w.answer(id, seen)
		if a.kind != api.ResultOK || a.resp.Revision != start {
			t.Fatalf("watch %d: %+v, want start %d", id, a, start)
		}
	}
	var lastRev int64
	for i := before; i < before+after; i++ {
		k := keyOf(i)
		lastRev = putRev(t, base, k, `"v"`, "")
		written[lastRev] = k
	}
	// Read until every watch has every revision of its prefix.
	want := func(prefix string, from int64) []int64 {
		var revs []int64
		for rev := from; rev <= lastRev; rev++ {
			if strings.HasPrefix(written[rev], prefix) {
				revs = append(revs, rev)
			}
		}
		return revs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, st := range watches {
			from := int64(1)
			if id%2 == 0 { // the even requests were from now
				from = before + 1
			}
			if len(st.got) < len(want(st.prefix, from)) {
				return false
			}
		}
		return true
	}
	for !complete() {
		es, err := w.read(ctx)
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		for _, e := range es {
			seen(e)
		}
	}
	for id, st := range watches {
		from := int64(1)
		if id%2 == 0 {
			from = before + 1
		}
		if exp := want(st.prefix, from); fmt.Sprint(st.got) != fmt.Sprint(exp) {
			t.Errorf("watch %d (%q from %d): revisions %v, want %v", id, st.prefix, from, st.got, exp)
		}
	}
	if w.maxPerFrame < 2 {
		t.Errorf("no frame carried more than %d watch elements: the watches' events were not coalesced", w.maxPerFrame)
	}
	t.Logf("at most %d watch elements in one frame", w.maxPerFrame)
}

// TestWSWatchCancelResumeAndErrors: a cancel's answer follows the watch's
// last element and nothing of it comes after; a watch resumes from a
// revision; a start older than the history is compacted with the oldest
// revision; bad requests get typed errors; the per-client limit holds.
func TestWSWatchCancelResumeAndErrors(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: 5}, HTTPOptions{Watch: WatchOptions{MaxPerClient: 3}})
	base := "http://" + s.HTTPAddr()
	for i := range 10 {
		putRev(t, base, fmt.Sprintf("k/%d", i), `1`, "")
	}
	w := dialWatchWS(t, s.HTTPAddr(), nil)

	// Compacted: the history holds 6..10.
	id := w.request(api.Request{Op: api.OpWatch, Key: "k/", Revision: 5})
	if a := w.answer(id, nil); a.kind != api.ResultError || a.code != api.CodeCompacted || a.oldest != 6 {
		t.Fatalf("watch from 5 with history 6..10: %+v", a)
	}
	// Resume from a revision in history.
	var events []api.Event
	collect := func(want uint64) func(wsElem) {
		return func(e wsElem) {
			if e.kind <= api.ResultError {
				return // an answer
			}
			if e.id != want {
				t.Errorf("element of watch %d, want only %d's: %+v", e.id, want, e)
			}
			if e.kind != api.ResultWatchEvents {
				t.Errorf("element %+v", e)
			}
			events = append(events, e.events.Events...)
		}
	}
	w1 := w.request(api.Request{Op: api.OpWatch, Key: "k/", Revision: 8})
	if a := w.answer(w1, collect(w1)); a.resp.Revision != 8 {
		t.Fatalf("watch from 8: %+v", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(events) < 3 {
		es, err := w.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			collect(w1)(e)
		}
	}
	for i, ev := range events {
		if ev.Item.Revision != int64(8+i) || ev.Item.Key != fmt.Sprintf("k/%d", 7+i) || string(ev.Item.Value) != "1" || ev.Type != api.EventPut {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}

	// Bad input: typed errors, the connection stays.
	for _, tc := range []struct {
		req  api.Request
		code string
	}{
		{api.Request{Op: api.OpWatch, Key: strings.Repeat("p", kv.DefaultMaxKeyBytes+1)}, api.CodeInvalidKey},
		{api.Request{Op: api.OpWatchCancel, Watch: 999}, api.CodeNotFound},
	} {
		if a := w.answer(w.request(tc.req), nil); a.kind != api.ResultError || a.code != tc.code {
			t.Errorf("%+v: %+v, want %s", tc.req, a, tc.code)
		}
	}
	// A cancel without a watch id, and a negative revision, are refused
	// by the decoder: bad_request.
	raw := func(req ...any) wsTestResponse {
		tc := &wsTestConn{t: t, c: w.c}
		tc.send(req)
		rs, err := tc.readFrame(ctx)
		if err != nil || len(rs) != 1 {
			t.Fatalf("%v: %v %v", req, rs, err)
		}
		return rs[0]
	}
	wantWSError(t, raw(uint64(900), uint64(api.OpWatchCancel)), api.CodeBadRequest)
	wantWSError(t, raw(uint64(901), uint64(api.OpWatch), "k/", -3), api.CodeBadRequest)
	wantWSError(t, raw(uint64(902), uint64(api.OpWatchCancel), "one"), api.CodeBadRequest)

	// Per-client limit: w1 and two more, then too_many_watches.
	w2 := w.watch("k/", 0, 11, nil)
	w.watch("", 0, 11, nil)
	if a := w.answer(w.request(api.Request{Op: api.OpWatch, Key: "k/"}), nil); a.code != api.CodeTooManyWatches {
		t.Fatalf("fourth watch of a client limited to 3: %+v", a)
	}

	// Cancel w2, then write: w1 and the third get the event, w2 nothing
	// after its cancel's answer.
	cancelID := w.request(api.Request{Op: api.OpWatchCancel, Watch: w2})
	if a := w.answer(cancelID, nil); a.kind != api.ResultOK {
		t.Fatalf("cancel: %+v", a)
	}
	rev := putRev(t, base, "k/new", `2`, "")
	got := map[uint64]bool{}
	for len(got) < 2 {
		es, err := w.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.id == w2 {
				t.Fatalf("element of the cancelled watch: %+v", e)
			}
			if e.kind == api.ResultWatchEvents && len(e.events.Events) == 1 && e.events.Events[0].Item.Revision == rev {
				got[e.id] = true
			}
		}
	}
	// The cancelled watch's slot is free again.
	w.watch("k/", 0, rev+1, nil)
	if a := w.answer(w.request(api.Request{Op: api.OpWatchCancel, Watch: w2}), nil); a.code != api.CodeNotFound {
		t.Fatalf("second cancel: %+v", a)
	}
	// Closing the connection releases every watch.
	_ = w.c.Close(websocket.StatusNormalClosure, "")
	testwait.For(t, 10*time.Second, "the connection's watches end", func() bool { return s.api.watches.open() == 0 })
}

// TestWSWatchFallsOutOfHistory: a watch whose connection is not read
// falls behind the history (the writes never wait for it) and ends with
// a compacted element carrying the oldest revision.
func TestWSWatchFallsOutOfHistory(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: 4}, HTTPOptions{WSMaxFrameBytes: 256 << 10,
		Watch: WatchOptions{WriteTimeout: time.Minute}},
		func(ln net.Listener) net.Listener { return smallBuffers{ln} })
	base := "http://" + s.HTTPAddr()
	w := dialWatchWS(t, s.HTTPAddr(), &websocket.DialOptions{HTTPClient: stalledWatchClient(t)})
	id := w.watch("k", 1, 1, nil)
	// Far more than the socket buffers, the push queue (a frame) and the
	// watcher's channel hold.
	value := `"` + strings.Repeat("v", 64<<10) + `"`
	const writes = 100
	for i := range writes {
		putRev(t, base, fmt.Sprintf("k%d", i%10), value, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var want int64 = 1
	for {
		es, err := w.read(ctx)
		if err != nil {
			t.Fatalf("connection ended without an end element after revision %d: %v", want-1, err)
		}
		for _, e := range es {
			if e.id != id {
				t.Fatalf("element %+v", e)
			}
			if e.kind == api.ResultWatchEnd {
				if e.code != api.CodeCompacted || e.oldest <= want {
					t.Fatalf("end %+v after revision %d", e, want-1)
				}
				if want > writes {
					t.Fatalf("the watch was never behind the history")
				}
				if stalled, behind := s.api.watches.ended(); stalled != 0 || behind != 1 {
					t.Fatalf("watches ended by the server: %d stalled, %d behind; want 0 and 1", stalled, behind)
				}
				return
			}
			for _, ev := range e.events.Events {
				if ev.Item.Revision != want {
					t.Fatalf("event at revision %d, want %d", ev.Item.Revision, want)
				}
				want++
			}
		}
	}
}

// TestWSWatchStalledConnectionIsCutOff: a connection that stops reading
// is closed once one frame write has been blocked for the watches' write
// timeout, while writes and a watch on another connection go on at their
// pace; the stalled client resumes from its last revision without a gap.
func TestWSWatchStalledConnectionIsCutOff(t *testing.T) {
	const (
		writeTimeout = 3 * time.Second
		stallBound   = writeTimeout / 2
		valueBytes   = 4 << 10
		pace         = 2 * time.Millisecond
		maxWrites    = 20_000
	)
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: maxWrites, HistoryBytes: 256 << 20},
		HTTPOptions{WSMaxFrameBytes: 256 << 10, Watch: WatchOptions{WriteTimeout: writeTimeout}},
		func(ln net.Listener) net.Listener { return smallBuffers{ln} })
	base := "http://" + s.HTTPAddr()
	stalled := dialWatchWS(t, s.HTTPAddr(), &websocket.DialOptions{HTTPClient: stalledWatchClient(t)})
	// Two watches on the stalled connection, one on the healthy one.
	stalled.watch("fan/", 1, 1, nil)
	stalled.watch("fan/", 1, 1, nil)
	healthy := dialWatchWS(t, s.HTTPAddr(), nil)
	hid := healthy.watch("fan/", 1, 1, nil)
	arrivals := make(chan arrival, maxWrites)
	healthyDone := make(chan error, 1)
	go func() {
		for {
			es, err := healthy.read(context.Background())
			if err != nil {
				healthyDone <- err
				return
			}
			for _, e := range es {
				if e.id != hid || e.kind != api.ResultWatchEvents {
					healthyDone <- fmt.Errorf("healthy connection: element %+v", e)
					return
				}
				for _, ev := range e.events.Events {
					arrivals <- arrival{ev.Item.Revision, time.Now()}
				}
			}
		}
	}()

	acked, lastRev, worstWrite := writeWhileStalled(t, base, "connection", valueBytes, pace, maxWrites, stallBound,
		func() bool { stalled, _ := s.api.watches.ended(); return stalled == 0 })
	testwait.For(t, 10*time.Second, "the stalled connection's watches end", func() bool { return s.api.watches.open() == 1 })
	t.Logf("%d writes; the stalled connection was cut off after revision %d; slowest write %v", len(acked), lastRev, worstWrite)

	checkArrivals(t, "healthy watch", arrivals, healthyDone, acked, lastRev, stallBound)

	// The stalled client reads what reached it, in order, then the end of
	// the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[uint64]int64{}
	for {
		es, err := stalled.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the stalled connection was not closed")
			}
			break
		}
		for _, e := range es {
			for _, ev := range e.events.Events {
				if ev.Item.Revision != got[e.id]+1 {
					t.Fatalf("stalled watch %d: revision %d after %d", e.id, ev.Item.Revision, got[e.id])
				}
				got[e.id] = ev.Item.Revision
			}
		}
	}
	var last int64 = lastRev
	for _, rev := range got {
		last = min(last, rev)
	}
	if last >= lastRev {
		t.Fatalf("the stalled client got everything (%v of %d): it never stalled", got, lastRev)
	}
	// It resumes on a new connection from its last revision + 1.
	resumed := dialWatchWS(t, s.HTTPAddr(), nil)
	want := last + 1
	check := func(e wsElem) {
		for _, ev := range e.events.Events {
			if ev.Item.Revision != want {
				t.Fatalf("resumed: revision %d, want %d", ev.Item.Revision, want)
			}
			want++
		}
	}
	resumed.watch("fan/", last+1, last+1, check)
	for want <= lastRev {
		es, err := resumed.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			check(e)
		}
	}
}

// TestWSWatchShutdownEndsWatches: a server shutting down ends its watches
// with unavailable, so that clients resume elsewhere.
func TestWSWatchShutdownEndsWatches(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{})
	w := dialWatchWS(t, s.HTTPAddr(), nil)
	id := w.watch("", 0, 1, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Close(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ended := false
	for {
		// Read on after the end: the close handshake needs the reader.
		es, err := w.read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Fatalf("connection ended without a going-away close: %v", err)
			}
			break
		}
		for _, e := range es {
			if e.id != id || e.kind != api.ResultWatchEnd || e.code != api.CodeUnavailable || ended {
				t.Fatalf("element %+v, want one unavailable end", e)
			}
			ended = true
		}
	}
	if !ended {
		t.Error("no end element before the close")
	}
	if err := <-done; err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := s.api.watches.open(); n != 0 {
		t.Fatalf("%d watches open after close", n)
	}
}
