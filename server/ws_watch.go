package server

// Watches on /v1/ws (api/watch.go has the wire format): many watches on
// one connection, their events pushed in the frames the connection's
// writer writes anyway, so that the events of every watch of a
// connection go out in as few writes as possible (GET /v1/watch writes
// and flushes once per stream and event).
//
// A watch is a kv.Watcher, as for GET /v1/watch, and a forwarder
// goroutine that encodes its responses into elements and appends them to
// the connection's push queue. The queue is bounded (WSMaxFrameBytes):
// when the client does not read, the writer blocks, the queue fills, the
// forwarders wait, and the watchers lag in the node's history (which
// costs no memory) until they fall out of it (a compacted end) or the
// writer's deadline (WatchOptions.WriteTimeout) closes the connection.
// Writes never wait on a watch.
//
// The answers to watch and cancel requests go through the same queue, so
// that a watch's first element follows its answer and a cancel's answer
// follows the watch's last element.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// wsWatches is the watches of one /v1/ws connection and the queue of what
// they push, which the writer drains into frames.
type wsWatches struct {
	mu   sync.Mutex
	byID map[uint64]*wsWatch
	// queue holds the elements waiting for the writer, in order; queued
	// is their bytes.
	queue  []wsPush
	queued int
	// limit bounds queued: a forwarder waits while the queue is over it.
	limit int
	// wake (capacity 1) tells the writer the queue has something.
	wake chan struct{}
	// room is closed, and replaced, when the writer takes from a queue
	// that was over its limit: it wakes every waiting forwarder.
	room chan struct{}
	// closed is set when the connection ends: nothing is queued after.
	closed bool
	// forwarders counts the running forwarder goroutines.
	forwarders sync.WaitGroup
}

// wsPush is one element for the writer.
type wsPush struct {
	b []byte
	// answer marks the answer to a request (it holds a request slot);
	// counted, one that drain waits for.
	answer, counted bool
}

// wsWatch is one watch of a connection.
type wsWatch struct {
	id      uint64
	watcher *kv.Watcher
	// cancel ends the watch's context; done is closed when its forwarder
	// has returned (its last element queued).
	cancel context.CancelFunc
	done   chan struct{}
	// cancelled is set by a cancel request, which answers for the watch.
	cancelled atomic.Bool
}

func (q *wsWatches) init(limit int) {
	q.limit = limit
	q.wake = make(chan struct{}, 1)
	q.room = make(chan struct{})
}

// open returns the number of watches open.
func (q *wsWatches) open() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.byID)
}

// pushLocked appends p and wakes the writer. Call with mu held.
func (q *wsWatches) pushLocked(p wsPush) {
	q.queue = append(q.queue, p)
	q.queued += len(p.b)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pushAnswer queues the answer to a request: never refused for room,
// since the request already holds a slot.
func (q *wsWatches) pushAnswer(b []byte, counted bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pushLocked(wsPush{b: b, answer: true, counted: counted})
}

// pushElement queues a watch's element, waiting while the queue is over
// its limit. false means ctx ended or the connection is closing first.
func (q *wsWatches) pushElement(ctx context.Context, b []byte) bool {
	for {
		q.mu.Lock()
		switch {
		case q.closed:
			q.mu.Unlock()
			return false
		case q.queued < q.limit:
			q.pushLocked(wsPush{b: b})
			q.mu.Unlock()
			return true
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
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
	for n < len(q.queue) && ((n == 0 && first) || size+len(q.queue[n].b) <= budget) {
		size += len(q.queue[n].b)
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

// closeAll refuses new watches and elements, ends every watch and waits
// for their forwarders. The connection's context must already be
// cancelled and its requests finished (so no watch starts after).
func (q *wsWatches) closeAll() {
	q.mu.Lock()
	q.closed = true
	close(q.room)
	q.room = make(chan struct{})
	watches := make([]*wsWatch, 0, len(q.byID))
	for _, w := range q.byID {
		watches = append(watches, w)
	}
	q.mu.Unlock()
	for _, w := range watches {
		w.cancel()
	}
	q.forwarders.Wait()
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
// queued, then the forwarder starts.
func (c *wsConn) startWatch(req api.Request, counted bool) []byte {
	fail := func(e apiError) []byte { return encodeWSResponse(req.ID, req.Op, api.Response{}, &e, c.maxFrame) }
	wb, ok := c.h.backend.(WatchBackend)
	if !ok {
		return fail(apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve watches"})
	}
	if msg := c.h.checkPrefix(req.Key); msg != "" {
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: msg})
	}
	if req.Revision == 1<<63-1 {
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "fromRevision out of range"})
	}
	q := &c.watches
	q.mu.Lock()
	_, taken := q.byID[req.ID]
	closed := q.closed
	q.mu.Unlock()
	switch {
	case closed:
		return fail(apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: "the connection is closing"})
	case taken:
		return fail(apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: fmt.Sprintf("a watch with id %d is open on this connection; a watch's id is its request's, unique among the open ones", req.ID)})
	}
	client := accessFrom(c.ctx).client
	closing, refused := c.h.watches.acquire(client, c.h.opts.Watch)
	if refused != nil {
		return fail(*refused)
	}
	// The watch lives until it is cancelled, the connection ends or
	// drains, or the server begins to shut down.
	ctx, cancel := context.WithCancel(c.waitCtx)
	stop := context.AfterFunc(closing, cancel)
	release := func() {
		stop()
		cancel()
		c.h.watches.release(client)
	}
	watcher, err := c.h.startWatch(ctx, wb, req.Key, req.Revision)
	if err != nil {
		release()
		if ce, ok := errors.AsType[*kv.CompactedError](err); ok {
			b, _ := api.AppendResponse(nil, req.Op, &api.Response{ID: req.ID, Code: api.CodeCompacted,
				Message: ce.Error(), OldestRevision: ce.Oldest})
			return b
		}
		e := requestError(c.ctx, err)
		if e.unexpected {
			c.h.log.Error("ws watch error", "err", err)
		}
		return fail(e)
	}
	w := &wsWatch{id: req.ID, watcher: watcher, cancel: cancel, done: make(chan struct{})}
	answer := encodeWSResponse(req.ID, req.Op, api.Response{Revision: watcher.StartRevision()}, nil, c.maxFrame)
	q.mu.Lock()
	if q.closed || q.byID[req.ID] != nil {
		// The connection began to close, or a concurrent request took
		// the id, while the watch started.
		q.mu.Unlock()
		watcher.Close()
		release()
		return fail(apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: "the connection is closing, or the watch id was taken meanwhile"})
	}
	if q.byID == nil {
		q.byID = make(map[uint64]*wsWatch)
	}
	q.byID[req.ID] = w
	q.pushLocked(wsPush{b: answer, answer: true, counted: counted})
	q.forwarders.Add(1)
	q.mu.Unlock()
	// An open watch counts as a request in progress, so that a drain
	// waits for its end element (forward) to be written.
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
	go func() {
		defer q.forwarders.Done()
		defer release()
		c.forward(ctx, w)
		q.mu.Lock()
		if q.byID[w.id] == w {
			delete(q.byID, w.id) // it ended on its own
		}
		q.mu.Unlock()
	}()
	return nil
}

// cancelWatch serves a cancel request: the watch's forwarder stops, then
// the answer is queued after its last element.
func (c *wsConn) cancelWatch(req api.Request, counted bool) []byte {
	q := &c.watches
	q.mu.Lock()
	w := q.byID[req.Watch]
	if w != nil {
		delete(q.byID, req.Watch)
	}
	q.mu.Unlock()
	if w == nil {
		e := apiError{status: http.StatusNotFound, code: api.CodeNotFound,
			message: fmt.Sprintf("no watch %d is open on this connection", req.Watch)}
		return encodeWSResponse(req.ID, req.Op, api.Response{}, &e, c.maxFrame)
	}
	w.cancelled.Store(true)
	w.cancel()
	<-w.done
	q.pushAnswer(encodeWSResponse(req.ID, req.Op, api.Response{}, nil, c.maxFrame), counted)
	return nil
}

// forward pushes w's responses as elements until the watch ends, then the
// element that says why, when the client should know.
func (c *wsConn) forward(ctx context.Context, w *wsWatch) {
	defer close(w.done)
	defer w.watcher.Close()
	q := &c.watches
	heartbeat := time.NewTicker(c.h.opts.Watch.Heartbeat)
	defer heartbeat.Stop()
	// budget bounds an element: it must fit in a frame on its own.
	budget := int(c.maxFrame) - api.FrameOverhead - api.WatchElementOverhead
	progress := w.watcher.StartRevision() - 1
	for {
		var (
			resp api.WatchResponse
			ok   bool
		)
		select {
		case resp, ok = <-w.watcher.C():
		case <-heartbeat.C:
			w.watcher.RequestProgress()
			continue
		}
		if !ok {
			break
		}
		if len(resp.Events) == 0 {
			// A progress report: only when it moves the client on.
			if resp.Revision <= progress {
				continue
			}
			if !q.pushElement(ctx, api.AppendWatchEvents(nil, w.id, resp.Revision, nil)) {
				c.watchEnded()
				return
			}
			progress = resp.Revision
			continue
		}
		// Elements of whole revisions, each within budget.
		evs := resp.Events
		for len(evs) > 0 {
			n, size := 0, 0
			for n < len(evs) {
				// The events of evs[n]'s revision.
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
				// One command's events are larger than a frame: they
				// cannot be delivered whole.
				c.endWatch(ctx, w, api.CodeTooLarge, fmt.Sprintf(
					"the events of revision %d take %d bytes, more than a frame of %d holds", evs[0].Item.Revision, size, c.maxFrame), 0)
				return
			}
			rev := evs[n-1].Item.Revision
			if n == len(evs) {
				rev = resp.Revision
			}
			if !q.pushElement(ctx, api.AppendWatchEvents(nil, w.id, rev, evs[:n])) {
				c.watchEnded()
				return
			}
			progress, evs = rev, evs[n:]
		}
	}
	err := w.watcher.Err()
	switch ce, compacted := errors.AsType[*kv.CompactedError](err); {
	case compacted:
		c.h.watches.behind.Add(1)
		c.endWatch(ctx, w, api.CodeCompacted, err.Error(), ce.Oldest)
	case w.cancelled.Load() || c.ctx.Err() != nil:
		// Cancelled by its client, or the connection is gone.
		c.watchEnded()
	default:
		// The server is shutting down or the connection draining: the
		// client resumes elsewhere.
		c.endWatch(ctx, w, api.CodeUnavailable, "server is shutting down; resume the watch on another node", 0)
	}
}

// endWatch queues w's end element, which the writer counts as the end of
// the watch's request in progress. It is queued even when ctx is over
// (without waiting for room: no element of w follows it), unless the
// connection is closing.
func (c *wsConn) endWatch(ctx context.Context, w *wsWatch, code, message string, oldest int64) {
	q := &c.watches
	b := api.AppendWatchEnd(nil, w.id, code, message, oldest)
	q.mu.Lock()
	defer q.mu.Unlock()
	for ctx.Err() == nil && !q.closed && q.queued >= q.limit {
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
		}
		q.mu.Lock()
	}
	if q.closed {
		q.mu.Unlock()
		c.watchEnded()
		q.mu.Lock()
		return
	}
	q.pushLocked(wsPush{b: b, counted: true})
}

// watchEnded ends the count of a watch that ends without an end element
// as a request in progress.
func (c *wsConn) watchEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	c.checkDrainedLocked()
}
