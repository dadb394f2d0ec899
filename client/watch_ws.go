package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
)

// Watches over /v1/ws (Config.WatchOverWS): a watch is a request (op 27)
// whose answer is followed by elements pushed on the connection, tagged
// with the request's id (docs/PROTOCOL.md "Watches"). The connection's
// reader appends them to the watch's queue and never waits for the
// Watcher's consumer: a watch whose queue passes watchQueueBytes is ended
// on the client's side and resumed, from the last revision its consumer
// received, so a slow consumer neither blocks the connection's other
// calls and watches nor holds unbounded memory.

// watchQueueBytes, when set, replaces Config.MaxFrameBytes as the bound
// on a connection's watch queue (for tests).
var watchQueueBytes = 0

// errWatchOverflow ends a connection's watch whose consumer fell behind.
var errWatchOverflow = errors.New("watch queue full: the consumer is slower than the events")

// connWatch is one watch on a connection: its elements, queued by the
// connection's reader for the Watcher's goroutine.
type connWatch struct {
	id     uint64 // set by roundTripWatch
	limit  int    // bytes of events queued before it overflows
	mu     sync.Mutex
	queue  []api.WatchResponse
	queued int
	err    error         // why it ended, once it has
	notify chan struct{} // capacity 1: something to take
	// parked is the Watcher whose goroutine waits on notify with nothing
	// queued: the connection's reader then hands it what arrives itself
	// (Watcher.offer) while its channel has room, sparing the goroutine a
	// wakeup per response.
	parked *Watcher
}

func newConnWatch(limit int) *connWatch {
	return &connWatch{limit: limit, notify: make(chan struct{}, 1)}
}

func (w *connWatch) wake() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// push queues resp; false when the watch has overflowed (and so ended).
func (w *connWatch) push(resp api.WatchResponse) bool {
	size := 0
	for i := range resp.Events {
		size += len(resp.Events[i].Item.Key) + len(resp.Events[i].Item.Value) + api.WatchEventOverhead
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return true
	}
	if w.parked != nil && len(w.queue) == 0 && w.parked.offer(resp) {
		return true
	}
	if w.queued+size > w.limit && len(w.queue) > 0 {
		w.err = errWatchOverflow
		w.queue, w.queued = nil, 0
		w.wake()
		return false
	}
	w.queue = append(w.queue, resp)
	w.queued += size
	w.wake()
	return true
}

// park marks the Watcher's goroutine as waiting for notify, unless
// something is queued or the watch has ended (then false: take it).
func (w *connWatch) park(wr *Watcher) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 || w.err != nil {
		return false
	}
	w.parked = wr
	return true
}

// unpark ends park: nothing is handed to the Watcher after it returns.
func (w *connWatch) unpark() {
	w.mu.Lock()
	w.parked = nil
	w.mu.Unlock()
}

// end ends the watch with err (the first reason wins).
func (w *connWatch) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	w.wake()
}

// take returns what is queued, or why the watch ended once nothing is.
func (w *connWatch) take() ([]api.WatchResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue, w.queued = nil, 0
	if len(q) > 0 {
		return q, nil
	}
	return nil, w.err
}

// deliverWatch reads a pushed element of watch id and hands it to the
// watch, if it is still open on this connection.
func (c *conn) deliverWatch(r *api.FrameReader, id, kind uint64) error {
	c.mu.Lock()
	w := c.watches[id]
	c.mu.Unlock()
	if kind == api.ResultWatchEnd {
		code, message, oldest, err := r.WatchEnd()
		if err != nil {
			return err
		}
		if w == nil {
			return nil
		}
		c.forgetWatch(w)
		if code == api.CodeCompacted {
			w.end(&api.CompactedError{Oldest: oldest})
		} else {
			w.end(&ServerError{Code: code, Message: message, Endpoint: c.endpoint})
		}
		return nil
	}
	// The watches of one prefix get the same events: decoded once.
	resp, err := r.WatchEventsCached(&c.watchEvents)
	if err != nil {
		return err
	}
	if w != nil && !w.push(resp) {
		c.forgetWatch(w)
	}
	return nil
}

// forgetWatch removes w from the connection: its elements are dropped
// from now on.
func (c *conn) forgetWatch(w *connWatch) {
	c.mu.Lock()
	if c.watches[w.id] == w {
		delete(c.watches, w.id)
	}
	c.mu.Unlock()
}

// wsWatchSource is a Watcher's watch on one connection.
type wsWatchSource struct {
	c        *Client
	conn     *conn
	watch    *connWatch
	endpoint string
}

// openWS starts the watch on the current endpoint's connection, from
// w.progress+1 (from now when fromNow). retry says whether another
// attempt may do better.
func (w *Watcher) openWS(fromNow bool) (*wsWatchSource, bool, error) {
	ep := w.c.endpoints[w.endpoint%len(w.c.endpoints)]
	ctx, cancel := context.WithTimeout(w.ctx, w.c.cfg.RequestTimeout)
	defer cancel()
	cn, err := w.c.connect(ctx, ep)
	if err != nil {
		if cause := context.Cause(w.ctx); cause != nil {
			return nil, false, cause
		}
		if errors.Is(err, ErrHTTPSEndpoint) {
			return nil, false, fmt.Errorf("client: watch on %s: %w", ep.url, err)
		}
		return nil, true, fmt.Errorf("client: watch on %s: %w: %w", ep.url, ErrUnavailable, err)
	}
	from := w.progress + 1
	if fromNow {
		from = 0
	}
	args, nargs := encodeArgs(&api.Request{Op: api.OpWatch, Key: w.prefix, Revision: from})
	limit := int(w.c.cfg.MaxFrameBytes)
	if watchQueueBytes > 0 {
		limit = watchQueueBytes
	}
	cw := newConnWatch(limit)
	resp, err := cn.roundTripWatch(ctx, api.OpWatch, nargs, args, cw)
	if err == nil && resp.err != nil {
		resp.err.Endpoint = ep.url
		err = resp.err
	}
	if err != nil {
		cn.forgetWatch(cw)
		if cause := context.Cause(w.ctx); cause != nil {
			return nil, false, cause
		}
		var se *ServerError
		if !errors.As(err, &se) {
			ep.noteFailure()
			return nil, true, fmt.Errorf("client: watch on %s: %w: %w", ep.url, ErrUnavailable, err)
		}
		if se.Code == CodeCompacted {
			return nil, false, fmt.Errorf("client: watch on %s: %w", ep.url,
				&api.CompactedError{Requested: w.progress + 1, Oldest: resp.oldest})
		}
		switch se.Code {
		case CodeBadRequest, CodeInvalidKey, CodeNotFound, CodeUnauthorized, CodeForbidden:
			return nil, false, fmt.Errorf("client: watch: %w", se)
		}
		return nil, true, fmt.Errorf("client: watch: %w", se)
	}
	if w.progress < 0 || fromNow {
		if resp.revision < 1 {
			cn.forgetWatch(cw)
			return nil, true, fmt.Errorf("client: watch on %s: %w: start revision %d", ep.url, ErrUnavailable, resp.revision)
		}
		w.progress = resp.revision - 1
	}
	return &wsWatchSource{c: w.c, conn: cn, watch: cw, endpoint: ep.url}, false, nil
}

// follow delivers the watch's events until it ends. It returns nil when a
// new watch should resume it (the connection broke, the node is shutting
// down, the consumer fell behind), or the error that ends the Watcher.
func (s *wsWatchSource) follow(w *Watcher) error {
	for {
		resps, err := s.watch.take()
		for _, resp := range resps {
			if err := w.deliverWS(s.endpoint, resp); err != nil {
				return err
			}
		}
		if err != nil {
			var (
				ce *api.CompactedError
				se *ServerError
			)
			switch {
			case errors.As(err, &ce):
				return fmt.Errorf("client: watch on %s: %w", s.endpoint,
					&api.CompactedError{Requested: w.progress + 1, Oldest: ce.Oldest})
			case errors.As(err, &se) && se.Code != CodeUnavailable:
				return fmt.Errorf("client: watch: %w", se)
			}
			return nil // resume
		}
		if len(resps) > 0 || !s.watch.park(w) {
			continue
		}
		select {
		case <-s.watch.notify:
		case <-w.ctx.Done():
			s.watch.unpark()
			return context.Cause(w.ctx)
		}
		s.watch.unpark()
	}
}

// deliverWS hands one pushed response to the Watcher's consumer, skipping
// what it has already delivered.
func (w *Watcher) deliverWS(endpoint string, resp api.WatchResponse) error {
	events := resp.Events
	for len(events) > 0 && events[0].Item.Revision <= w.progress {
		events = events[1:]
	}
	if resp.Revision <= w.progress {
		if len(events) > 0 {
			return fmt.Errorf("client: watch on %s: %w: events after progress %d", endpoint, errBadStream, resp.Revision)
		}
		return nil // a repeat, or a progress report that says nothing new
	}
	w.progress = resp.Revision
	return w.send(api.WatchResponse{Events: events, Revision: resp.Revision})
}

// offer hands resp to the consumer as deliverWS does, without blocking,
// for the connection's reader while the Watcher's goroutine is parked
// (connWatch.park; the caller holds the connWatch's lock, so the goroutine
// cannot unpark meanwhile and w.progress is the reader's). false means it
// did not: the channel is full, or the response is not simply the next
// one; queue it for the goroutine then.
func (w *Watcher) offer(resp api.WatchResponse) bool {
	events := resp.Events
	for len(events) > 0 && events[0].Item.Revision <= w.progress {
		events = events[1:]
	}
	if resp.Revision <= w.progress {
		return len(events) == 0 // a repeat is dropped; a bad stream is the goroutine's to end
	}
	select {
	case w.out <- api.WatchResponse{Events: events, Revision: resp.Revision}:
		w.progress = resp.Revision
		return true
	default:
		return false
	}
}

// close ends the watch on its connection: forgotten at once, cancelled on
// the server in the background (bounded by RequestTimeout and Close).
func (s *wsWatchSource) close() {
	s.conn.forgetWatch(s.watch)
	s.watch.mu.Lock()
	ended := s.watch.err != nil && !errors.Is(s.watch.err, errWatchOverflow)
	s.watch.mu.Unlock()
	if ended || s.conn.broken() {
		return // nothing open on the server
	}
	args, nargs := encodeArgs(&api.Request{Op: api.OpWatchCancel, Watch: s.watch.id})
	s.c.wg.Add(1)
	go func() {
		defer s.c.wg.Done()
		ctx, cancel := context.WithTimeout(s.c.ctx, s.c.cfg.RequestTimeout)
		defer cancel()
		_, _ = s.conn.roundTrip(ctx, api.OpWatchCancel, nargs, args)
	}()
}

// watchSource is where a Watcher's events come from: an SSE stream or a
// watch on a /v1/ws connection.
type watchSource interface {
	follow(w *Watcher) error
	close()
}

func (s *watchStream) follow(w *Watcher) error { return w.follow(s) }

// resumeDelay is the pause before a Watcher resumes after its source
// ended: none after a watch it ended itself for being slow, which the
// server is not to blame for.
func resumeDelay(cfg *Config, s watchSource) time.Duration {
	if ws, ok := s.(*wsWatchSource); ok {
		ws.watch.mu.Lock()
		overflow := errors.Is(ws.watch.err, errWatchOverflow)
		ws.watch.mu.Unlock()
		if overflow {
			return 0
		}
	}
	return cfg.RetryBackoff
}
