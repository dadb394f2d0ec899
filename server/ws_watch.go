package server

// Watches on /v1/ws (api/watch.go has the wire format): many watches on
// one connection, their events pushed in the frames the connection's
// writer writes anyway, so that the events of every watch of a
// connection go out in as few writes as possible (GET /v1/watch writes
// and flushes once per stream and event).
//
// The watches of a connection are a kv.WatchGroup served by one pump
// goroutine: a write wakes the pump once (not a goroutine per watch),
// and the pump polls the watches the write concerns, encodes their
// responses into elements and appends them to the connection's push
// queue. The queue is bounded (WSMaxFrameBytes): when the client does
// not read, the writer blocks, the queue fills, the pump waits, and the
// watches lag in the node's history (which costs no memory) until they
// fall out of it (a compacted end) or the writer's deadline
// (WatchOptions.WriteTimeout) closes the connection. Writes never wait on
// a watch.
//
// The answers to watch and cancel requests go through the same queue, so
// that a watch's first element follows its answer and a cancel's answer
// follows the watch's last element.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// GroupWatchBackend is implemented by a Backend that serves watches over
// /v1/ws; kv.Store does. A Backend without it answers them not_found.
type GroupWatchBackend interface {
	// WatchGrouped starts a watcher of group, of the keys under prefix
	// from fromRevision (0: from now, after a linearizable read bounded
	// by ctx). See kv.Store.WatchGrouped.
	WatchGrouped(ctx context.Context, group *kv.WatchGroup, prefix string, fromRevision int64) (kv.GroupWatcher, error)
}

// wsWatches is the watches of one /v1/ws connection and the queue of what
// they push, which the writer drains into frames.
type wsWatches struct {
	mu   sync.Mutex
	byID map[uint64]*wsWatch
	// list is the open watches in the order they started: what the pump
	// polls.
	list []*wsWatch
	// group is the watches' kv.WatchGroup, made with the first watch,
	// when the pump starts; pumpDone is closed when the pump returns.
	group    *kv.WatchGroup
	pumpDone chan struct{}
	// stopping is set when the pump has ended the watches for good (the
	// connection drains or ends, or the server shuts down): no watch
	// starts after.
	stopping bool
	// queue holds the elements waiting for the writer, in order; queued
	// is their bytes.
	queue  []wsPush
	queued int
	// limit bounds queued: the pump waits while the queue is over it.
	limit int
	// wake (capacity 1) tells the writer the queue has something.
	wake chan struct{}
	// room is closed, and replaced, when the writer takes from a queue
	// that was over its limit.
	room chan struct{}
	// closed is set when the connection ends: nothing is queued after.
	closed bool
}

// wsPush is one element for the writer: b, then tail.
type wsPush struct {
	b []byte
	// tail, when set, is shared with other elements (the events of
	// watches that read the same ones): read only.
	tail []byte
	// answer marks the answer to a request (it holds a request slot);
	// counted, one that drain waits for.
	answer, counted bool
}

// wsWatch is one watch of a connection.
type wsWatch struct {
	id      uint64
	prefix  string
	gw      kv.GroupWatcher
	release func() // frees its slot in the watch registry
	// ended (guarded by wsWatches.mu) is set when the watch is cancelled
	// or ends: nothing of it is queued after.
	ended bool
	// progress is the last revision pushed; the pump's.
	progress int64
}

func (q *wsWatches) init(limit int) {
	q.limit = limit
	q.wake = make(chan struct{}, 1)
	q.room = make(chan struct{})
}

// size is the bytes of p's element.
func (p wsPush) size() int { return len(p.b) + len(p.tail) }

// pushLocked appends p and wakes the writer. Call with mu held.
func (q *wsWatches) pushLocked(p wsPush) {
	q.queue = append(q.queue, p)
	q.queued += p.size()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pending reports whether the queue has something.
func (q *wsWatches) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue) > 0
}

// take moves to dst the queued elements, in order, while they fit in
// budget bytes; with first, the first one in any case (an element always
// fits an empty frame).
func (q *wsWatches) take(dst []wsPush, budget int, first bool) []wsPush {
	q.mu.Lock()
	defer q.mu.Unlock()
	full := q.queued >= q.limit
	n, size := 0, 0
	for n < len(q.queue) && ((n == 0 && first) || size+q.queue[n].size() <= budget) {
		size += q.queue[n].size()
		n++
	}
	if n == 0 {
		return dst
	}
	dst = append(dst, q.queue[:n]...)
	clear(q.queue[:n])
	q.queue = q.queue[n:]
	if len(q.queue) == 0 {
		q.queue = nil // let the backing array go
	}
	q.queued -= size
	if full {
		close(q.room)
		q.room = make(chan struct{})
	}
	return dst
}

// removeLocked takes w out of the open watches. Call with mu held.
func (q *wsWatches) removeLocked(w *wsWatch) {
	w.ended = true
	if q.byID[w.id] == w {
		delete(q.byID, w.id)
	}
	if i := slices.Index(q.list, w); i >= 0 {
		q.list = slices.Delete(q.list, i, i+1)
	}
}

// closeWatches stops the pump, ending every watch, and refuses elements. The
// connection's context must already be cancelled and its requests
// finished (so no watch starts after).
func (c *wsConn) closeWatches() {
	q := &c.watches
	q.mu.Lock()
	done := q.pumpDone
	q.mu.Unlock()
	if done != nil {
		<-done // it sees the connection's context end
	}
	q.mu.Lock()
	q.closed = true
	close(q.room)
	q.room = make(chan struct{})
	q.mu.Unlock()
}

// isWatchOp reports whether op is handled by the connection's watches
// rather than wsExecute.
func isWatchOp(op api.Op) bool { return op == api.OpWatch || op == api.OpWatchCancel }

// watchOp serves a watch or cancel request. It returns the encoded
// answer, or nil when it has queued the answer itself (behind or ahead of
// the watch's elements).
func (c *wsConn) watchOp(req api.Request, counted bool) []byte {
	fail := func(e apiError) []byte { return encodeWSResponse(req.ID, req.Op, api.Response{}, &e, c.maxFrame) }
	if req.Bad != "" {
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: req.Bad})
	}
	if e := c.h.wsAdmit(c.ctx, req.Op); e != nil {
		return fail(*e)
	}
	if req.Op == api.OpWatchCancel {
		return c.cancelWatch(req, counted)
	}
	return c.startWatch(req, counted)
}

// startWatch serves a watch request: the answer (the start revision) is
// queued, then the pump polls the watch.
func (c *wsConn) startWatch(req api.Request, counted bool) []byte {
	fail := func(e apiError) []byte { return encodeWSResponse(req.ID, req.Op, api.Response{}, &e, c.maxFrame) }
	wb, ok := c.h.backend.(GroupWatchBackend)
	if !ok {
		return fail(apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve watches over /v1/ws"})
	}
	if msg := c.h.checkPrefix(req.Key); msg != "" {
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: msg})
	}
	if req.Revision == 1<<63-1 {
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "fromRevision out of range"})
	}
	closing := func() []byte {
		return fail(apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: "the connection is closing"})
	}
	q := &c.watches
	q.mu.Lock()
	_, taken := q.byID[req.ID]
	stopping := q.closed || q.stopping
	if !stopping && q.group == nil {
		q.group, q.pumpDone = kv.NewWatchGroup(), make(chan struct{})
		go c.pump(q.group, q.pumpDone)
	}
	group := q.group
	q.mu.Unlock()
	switch {
	case stopping:
		return closing()
	case taken:
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: fmt.Sprintf("a watch with id %d is open on this connection; a watch's id is its request's, unique among the open ones", req.ID)})
	}
	client := accessFrom(c.ctx).client
	if _, refused := c.h.watches.acquire(client, c.h.opts.Watch); refused != nil {
		return fail(*refused)
	}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { c.h.watches.release(client) }) }
	// The start (a linearizable read for a watch from now) gets the
	// request timeout.
	ctx, cancel := context.WithTimeout(c.waitCtx, c.h.opts.RequestTimeout)
	gw, err := wb.WatchGrouped(ctx, group, req.Key, req.Revision)
	cancel()
	if err != nil {
		release()
		if ce, ok := errors.AsType[*kv.CompactedError](err); ok {
			b, _ := api.AppendResponse(nil, req.Op, &api.Response{ID: req.ID, Code: api.CodeCompacted,
				Message: ce.Error(), OldestRevision: ce.Oldest})
			return b
		}
		if c.waitCtx.Err() != nil {
			return closing()
		}
		e := requestError(c.ctx, err)
		if e.unexpected {
			c.h.log.Error("ws watch error", "err", err)
		}
		return fail(e)
	}
	w := &wsWatch{id: req.ID, prefix: req.Key, gw: gw, release: release, progress: gw.StartRevision() - 1}
	answer := encodeWSResponse(req.ID, req.Op, api.Response{Revision: gw.StartRevision()}, nil, c.maxFrame)
	q.mu.Lock()
	if q.closed || q.stopping || q.byID[req.ID] != nil {
		// The connection began to close, or a concurrent request took
		// the id, while the watch started.
		q.mu.Unlock()
		gw.Stop()
		release()
		return closing()
	}
	if q.byID == nil {
		q.byID = make(map[uint64]*wsWatch)
	}
	q.byID[req.ID] = w
	q.list = append(q.list, w)
	q.pushLocked(wsPush{b: answer, answer: true, counted: counted})
	q.mu.Unlock()
	// An open watch counts as a request in progress, so that a drain
	// waits for its end element to be written.
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
	group.Notify()
	return nil
}

// cancelWatch serves a cancel request: the watch is taken out of the
// pump's list and its answer queued in the same step, so that nothing of
// the watch follows the answer.
func (c *wsConn) cancelWatch(req api.Request, counted bool) []byte {
	q := &c.watches
	q.mu.Lock()
	w := q.byID[req.Watch]
	if w == nil {
		q.mu.Unlock()
		e := apiError{status: http.StatusNotFound, code: api.CodeNotFound,
			message: fmt.Sprintf("no watch %d is open on this connection", req.Watch)}
		return encodeWSResponse(req.ID, req.Op, api.Response{}, &e, c.maxFrame)
	}
	q.removeLocked(w)
	q.pushLocked(wsPush{b: encodeWSResponse(req.ID, req.Op, api.Response{}, nil, c.maxFrame), answer: true, counted: counted})
	q.mu.Unlock()
	w.gw.Stop()
	w.release()
	c.watchEnded()
	return nil
}

// watchEnded ends the count of a watch that ends without an end element
// as a request in progress.
func (c *wsConn) watchEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	c.checkDrainedLocked()
}

// errPumpStop is returned by pushElement when the pump must stop: the
// connection drains or ends, or the server shuts down.
var errPumpStop = errors.New("pump stopping")

// pushElement queues an element of w, waiting while the queue is over its
// limit. It drops the element of a watch that has ended (cancelled);
// errPumpStop means stop.
func (c *wsConn) pushElement(w *wsWatch, p wsPush, closing context.Context) error {
	q := &c.watches
	for {
		q.mu.Lock()
		switch {
		case q.closed:
			q.mu.Unlock()
			return errPumpStop
		case w.ended:
			q.mu.Unlock()
			return nil
		case q.queued < q.limit:
			q.pushLocked(p)
			q.mu.Unlock()
			return nil
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-c.waitCtx.Done():
			return errPumpStop
		case <-closing.Done():
			return errPumpStop
		}
	}
}

// endWatch ends w with an end element (code, message, oldest), queued
// whatever the queue's limit (it is small, and the last of w); the writer
// counts it as the end of w's request in progress.
func (c *wsConn) endWatch(w *wsWatch, code, message string, oldest int64) {
	q := &c.watches
	q.mu.Lock()
	ended := w.ended
	q.removeLocked(w)
	queued := !ended && !q.closed
	if queued {
		q.pushLocked(wsPush{b: api.AppendWatchEnd(nil, w.id, code, message, oldest), counted: true})
	}
	q.mu.Unlock()
	if !ended {
		w.gw.Stop()
		w.release()
		if !queued {
			c.watchEnded()
		}
	}
}

// pump serves the connection's watches until the connection drains or
// ends, or the server shuts down: it ends them then (with unavailable,
// when the client can still read it).
func (c *wsConn) pump(group *kv.WatchGroup, done chan struct{}) {
	defer close(done)
	q := &c.watches
	closing := c.h.watches.closingContext()
	heartbeat := time.NewTicker(c.h.opts.Watch.Heartbeat)
	defer heartbeat.Stop()
	var watches []*wsWatch
	bodies := make(map[eventsKey][]byte)
	var reads kv.PollCache
	for {
		select {
		case <-group.C():
		case <-heartbeat.C:
			q.mu.Lock()
			for _, w := range q.list {
				w.gw.RequestProgress()
			}
			q.mu.Unlock()
			continue
		case <-c.waitCtx.Done():
			c.stopWatches()
			return
		case <-closing.Done():
			c.stopWatches()
			return
		}
		// Round-robin passes over the watches until none has more.
		for more := true; more; {
			more = false
			q.mu.Lock()
			watches = append(watches[:0], q.list...)
			q.mu.Unlock()
			clear(bodies)
			reads.Reset()
			for _, w := range watches {
				again, err := c.pumpOne(w, closing, bodies, &reads)
				if errors.Is(err, errPumpStop) {
					clear(watches)
					c.stopWatches()
					return
				}
				more = more || again
			}
		}
		clear(watches) // let ended watches go
		clear(bodies)  // and the events
		reads.Reset()
	}
}

// eventsKey names the events of a watch's element: the watches of one
// prefix that read the same revisions get the same events, whose
// encoding a pass of the pump shares between them.
type eventsKey struct {
	prefix      string
	first, last int64
	n           int
}

// pumpOne polls w once, sharing reads through the pass's reads, and
// queues what it has, its events' encoding taken from (or added to)
// bodies and shared by the elements. again reports that it has more;
// errPumpStop that the pump must stop.
func (c *wsConn) pumpOne(w *wsWatch, closing context.Context, bodies map[eventsKey][]byte, reads *kv.PollCache) (again bool, err error) {
	resp, more, err := w.gw.PollShared(reads)
	if err != nil {
		if ce, ok := errors.AsType[*kv.CompactedError](err); ok {
			c.h.watches.behind.Add(1)
			c.endWatch(w, api.CodeCompacted, err.Error(), ce.Oldest)
		} else {
			c.endWatch(w, api.CodeUnavailable, err.Error(), 0)
		}
		return false, nil
	}
	if len(resp.Events) == 0 {
		if resp.Revision > w.progress {
			// A progress report that moves the client on.
			if err := c.pushElement(w, wsPush{b: api.AppendWatchEvents(nil, w.id, resp.Revision, nil)}, closing); err != nil {
				return false, err
			}
			w.progress = resp.Revision
		}
		return more, nil
	}
	// Elements of whole revisions, each within a frame.
	budget := int(c.maxFrame) - api.FrameOverhead - api.WatchElementOverhead
	evs := resp.Events
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) {
			end, groupSize := n, 0
			for end < len(evs) && evs[end].Item.Revision == evs[n].Item.Revision {
				groupSize += len(evs[end].Item.Key) + len(evs[end].Item.Value) + api.WatchEventOverhead
				end++
			}
			if n > 0 && size+groupSize > budget {
				break
			}
			n, size = end, size+groupSize
		}
		if size > budget {
			// One command's events are larger than a frame: they cannot
			// be delivered whole.
			c.endWatch(w, api.CodeTooLarge, fmt.Sprintf("the events of revision %d take %d bytes, more than a frame of %d holds",
				evs[0].Item.Revision, size, c.maxFrame), 0)
			return false, nil
		}
		rev := evs[n-1].Item.Revision
		if n == len(evs) {
			rev = resp.Revision
		}
		key := eventsKey{prefix: w.prefix, first: evs[0].Item.Revision, last: evs[n-1].Item.Revision, n: n}
		body, ok := bodies[key]
		if !ok {
			body = make([]byte, 0, size)
			for i := range evs[:n] {
				body = api.AppendWatchEvent(body, &evs[i])
			}
			bodies[key] = body
		}
		head := api.AppendWatchEventsHeader(make([]byte, 0, api.WatchElementOverhead), w.id, rev, n)
		if err := c.pushElement(w, wsPush{b: head, tail: body}, closing); err != nil {
			return false, err
		}
		w.progress, evs = rev, evs[n:]
	}
	return more, nil
}

// stopWatches ends every open watch for good: with an unavailable end
// when the connection can still carry it (it drains, or the server shuts
// down), silently when it is gone.
func (c *wsConn) stopWatches() {
	q := &c.watches
	q.mu.Lock()
	q.stopping = true
	watches := q.list
	q.list, q.byID = nil, nil
	gone := q.closed || c.ctx.Err() != nil
	for _, w := range watches {
		w.ended = true
		if !gone {
			q.pushLocked(wsPush{b: api.AppendWatchEnd(nil, w.id, api.CodeUnavailable,
				"server is shutting down; resume the watch on another node", 0), counted: true})
		}
	}
	q.mu.Unlock()
	for _, w := range watches {
		w.gw.Stop()
		w.release()
		if gone {
			c.watchEnded()
		}
	}
}
