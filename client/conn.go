package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/stages"
)

// States of a call, changed by compare-and-swap so that exactly one of the
// writer (sending it) and the caller (giving up on it) wins.
const (
	callQueued int32 = iota
	callSent
	callAbandoned
)

// call is one request on a connection.
type call struct {
	id    uint64
	op    api.Op
	nargs int
	args  []byte
	state atomic.Int32
	// done receives the one result; buffered so the sender never blocks.
	done chan callResult
	// watch, for a watch request, receives the watch's elements: it is
	// registered under the call's id before the request is sent.
	watch *connWatch
}

type callResult struct {
	resp response
	err  error
}

// finish delivers the result of a call that has left the pending table.
func (cl *call) finish(resp response, err error) {
	cl.done <- callResult{resp: resp, err: err}
}

// failed returns err as the call's connection failure: not sent when the
// writer never took it, lost otherwise.
func (cl *call) failed(err error) error {
	if cl.state.CompareAndSwap(callQueued, callAbandoned) {
		return &notSentError{err: err}
	}
	return &lostError{err: err}
}

// conn is one multiplexed /v1/ws connection. A reader goroutine matches
// answers to pending calls by id, a writer goroutine coalesces queued
// requests into frames, and a keepalive goroutine pings a connection that
// has requests pending but has been silent.
type conn struct {
	endpoint string
	ws       *websocket.Conn
	cfg      *Config

	// slots bounds calls in progress (Config.MaxInFlight); a caller waits
	// for one before its request is queued.
	slots chan struct{}
	sendq chan *call

	mu      sync.Mutex
	pending map[uint64]*call
	// watches are the watches open on the connection, by id (watch.go).
	watches map[uint64]*connWatch
	// watchEvents shares the decoding of events that several watches'
	// elements repeat; the reader's alone.
	watchEvents api.WatchEventsCache
	nextID      uint64
	err         error         // why the connection ended; set once
	done        chan struct{} // closed when err is set

	// lastRecv is when the last frame arrived (unix nanoseconds).
	lastRecv atomic.Int64
}

func newConn(endpoint string, ws *websocket.Conn, cfg *Config) *conn {
	ws.SetReadLimit(cfg.MaxFrameBytes)
	c := &conn{
		endpoint: endpoint,
		ws:       ws,
		cfg:      cfg,
		slots:    make(chan struct{}, cfg.MaxInFlight),
		sendq:    make(chan *call, cfg.MaxInFlight),
		pending:  make(map[uint64]*call),
		watches:  make(map[uint64]*connWatch),
		done:     make(chan struct{}),
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

// start runs the connection's goroutines, counted in wg.
func (c *conn) start(wg *sync.WaitGroup) {
	wg.Add(3)
	go func() {
		defer wg.Done()
		c.readLoop()
	}()
	go func() {
		defer wg.Done()
		c.writeLoop()
	}()
	go func() {
		defer wg.Done()
		c.keepalive()
	}()
}

func (c *conn) broken() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// fail ends the connection with cause: every pending call fails, and the
// WebSocket closes with code and reason (at once when code is 0).
func (c *conn) fail(cause error, code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	close(c.done)
	pending := c.pending
	c.pending = nil
	watches := c.watches
	c.watches = nil
	c.mu.Unlock()
	for _, cl := range pending {
		cl.finish(response{}, cl.failed(cause))
	}
	for _, w := range watches {
		w.end(&lostError{err: cause})
	}
	if code != 0 {
		_ = c.ws.Close(code, reason)
	} else {
		_ = c.ws.CloseNow()
	}
}

// forget removes a call the caller no longer waits for.
func (c *conn) forget(cl *call) {
	c.mu.Lock()
	delete(c.pending, cl.id)
	c.mu.Unlock()
}

// roundTrip sends one request and waits for its answer. Errors: a
// *notSentError when the request never left (retry is safe), a *lostError
// when it was sent and no answer will come, or the server's answer (in
// response.err).
func (c *conn) roundTrip(ctx context.Context, op api.Op, nargs int, args []byte) (response, error) {
	return c.roundTripWatch(ctx, op, nargs, args, nil)
}

// roundTripWatch is roundTrip that, when watch is not nil, registers it
// under the request's id before the request is sent, so that no element
// pushed after the answer is missed. The caller removes it (forgetWatch)
// when the answer is not a start.
func (c *conn) roundTripWatch(ctx context.Context, op api.Op, nargs int, args []byte, watch *connWatch) (response, error) {
	if stages.Enabled {
		stages.Mark("client_call", 0)
		defer stages.Mark("client_done", 0)
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return response{}, &notSentError{err: ctx.Err()}
	case <-c.done:
		return response{}, &notSentError{err: c.err}
	}
	defer func() { <-c.slots }()

	cl := &call{op: op, nargs: nargs, args: args, done: make(chan callResult, 1), watch: watch}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return response{}, &notSentError{err: c.err}
	}
	c.nextID++
	cl.id = c.nextID
	c.pending[cl.id] = cl
	if watch != nil {
		watch.id = cl.id
		c.watches[cl.id] = watch
	}
	c.mu.Unlock()

	select {
	case c.sendq <- cl:
	case <-ctx.Done():
		c.forget(cl)
		return response{}, cl.failed(ctx.Err())
	case <-c.done:
		// fail has delivered the result.
	}
	select {
	case r := <-cl.done:
		return r.resp, r.err
	case <-ctx.Done():
		c.forget(cl)
		// The reader may have delivered the answer meanwhile.
		select {
		case r := <-cl.done:
			return r.resp, r.err
		default:
		}
		return response{}, cl.failed(ctx.Err())
	}
}

// writeLoop sends queued requests, everything queued at that moment (up to
// the frame limit) in one frame.
func (c *conn) writeLoop() {
	budget := int(c.cfg.MaxFrameBytes) - api.FrameOverhead
	var (
		batch []*call
		frame []byte
		carry *call
	)
	for {
		batch = batch[:0]
		size := 0
		add := func(cl *call) bool {
			// A call its caller gave up on before it was sent stays unsent.
			if !cl.state.CompareAndSwap(callQueued, callSent) {
				return true
			}
			n := len(cl.args) + api.RequestOverhead
			if len(batch) > 0 && size+n > budget {
				carry = cl
				return false
			}
			batch = append(batch, cl)
			size += n
			return true
		}
		if carry != nil {
			batch, size, carry = append(batch, carry), len(carry.args)+api.RequestOverhead, nil
		} else {
			select {
			case cl := <-c.sendq:
				add(cl)
			case <-c.done:
				return
			}
		}
		yielded := false
	fill:
		for carry == nil {
			select {
			case cl := <-c.sendq:
				if !add(cl) {
					break fill
				}
			default:
				// Other callers hold slots but have not queued yet: let them,
				// so that their requests share this frame.
				if yielded || len(c.slots) <= len(batch) {
					break fill
				}
				yielded = true
				runtime.Gosched()
			}
		}
		if len(batch) == 0 {
			continue
		}
		frame = api.AppendFrameHeader(frame[:0], len(batch))
		for _, cl := range batch {
			frame = api.AppendRequest(frame, cl.id, cl.op, cl.nargs, cl.args)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
		if stages.Enabled {
			stages.Mark("client_write", 0)
		}
		err := c.ws.Write(ctx, websocket.MessageBinary, frame)
		cancel()
		if err != nil {
			c.fail(fmt.Errorf("write to %s: %w", c.endpoint, err), 0, "")
			return
		}
		if cap(frame) > keepBuffer {
			frame = nil
		}
	}
}

// keepBuffer is the largest frame buffer the writer keeps between frames.
const keepBuffer = 256 << 10

// readLoop reads frames and hands each answer to its call, until the
// connection ends.
func (c *conn) readLoop() {
	// Decoding copies what it keeps, so one buffer serves every frame.
	var buf bytes.Buffer
	for {
		typ, r, err := c.ws.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.fail(c.readError(err), 0, "")
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if stages.Enabled {
			stages.Mark("client_read", 0)
		}
		if typ != websocket.MessageBinary {
			c.fail(fmt.Errorf("%w: text frame from %s", errFrame, c.endpoint), websocket.StatusUnsupportedData, "text frame")
			return
		}
		err = c.deliver(buf.Bytes())
		if buf.Cap() > keepBuffer {
			buf = bytes.Buffer{}
		}
		if err != nil {
			err = fmt.Errorf("from %s: %w", c.endpoint, err)
			c.fail(err, websocket.StatusProtocolError, closeReason(err.Error()))
			return
		}
	}
}

// readError describes why reading failed, with the server's close reason
// when it sent one.
func (c *conn) readError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s closed the connection (%d %s): %w", c.endpoint, int(ce.Code), ce.Reason, err)
	}
	return fmt.Errorf("read from %s: %w", c.endpoint, err)
}

// deliver decodes one frame of answers and completes their calls. Answers
// to calls nobody waits for any more are skipped.
func (c *conn) deliver(b []byte) error {
	r, err := api.NewFrameReader(b)
	if err != nil {
		return fmt.Errorf("%w: %w", errFrame, err)
	}
	defer r.Release()
	count, extra, err := readFrameHeader(r)
	if err != nil {
		return err
	}
	for i := range count {
		id, kind, more, err := r.ResponseHeader()
		if err != nil {
			return fmt.Errorf("%w: response %d: %w", errFrame, i, err)
		}
		if kind == api.ResultWatchEvents || kind == api.ResultWatchEnd {
			if err := c.deliverWatch(r, id, kind); err != nil {
				return fmt.Errorf("%w: watch element %d: %w", errFrame, i, err)
			}
			if err := r.Skip(more); err != nil {
				return fmt.Errorf("%w: response %d: %w", errFrame, i, err)
			}
			continue
		}
		c.mu.Lock()
		cl := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if cl == nil {
			if err := r.Skip(1 + more); err != nil {
				return fmt.Errorf("%w: response %d: %w", errFrame, i, err)
			}
			continue
		}
		resp, err := readPayload(r, cl.op, kind)
		if err == nil {
			err = r.Skip(more)
		}
		if err != nil {
			err = fmt.Errorf("%w: response %d (%s): %w", errFrame, i, cl.op, err)
			cl.finish(response{}, &lostError{err: err})
			return err
		}
		if resp.err != nil {
			resp.err.Endpoint = c.endpoint
			resp.err.write = cl.op.IsWrite()
		}
		cl.finish(resp, nil)
	}
	if err := r.Skip(extra); err != nil {
		return fmt.Errorf("%w: %w", errFrame, err)
	}
	return nil
}

// keepalive pings a connection that has calls pending or watches open
// but has received nothing for a whole interval, and fails it when no pong comes within
// another: a server cut off without a TCP reset would otherwise hold its
// callers until their deadlines.
func (c *conn) keepalive() {
	interval := c.cfg.KeepAlive
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		waiting := len(c.pending) + len(c.watches)
		c.mu.Unlock()
		if waiting == 0 || time.Since(time.Unix(0, c.lastRecv.Load())) < interval {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			c.fail(fmt.Errorf("%s: no pong within %v: %w", c.endpoint, interval, err), 0, "")
			return
		}
	}
}

// closeReason fits s into a WebSocket close reason (at most 123 bytes).
func closeReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	const max = 123
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
