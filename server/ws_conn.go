package server

// The /v1/ws client protocol: many requests in flight on one WebSocket,
// MessagePack frames batched both ways. docs/PROTOCOL.md is the full
// description; in short:
//
//	frame    = [version, [element, ...], ...]   version is 1 (WSProtocolVersion)
//	request  = [id, op, args...]
//	response = [id, 0, result] | [id, 1, [code, message]]
//
//	op 1 put     [id, 1, key, value bin]           result: revision
//	op 2 get     [id, 2, key, consistency?]         result: [key, value bin, revision, createRevision, version]
//	op 3 delete  [id, 3, key]                       result: revision
//	op 4 list    [id, 4, prefix?, consistency?]     result: [revision, [item, ...]]
//	op 5 status  [id, 5]                            result: bin, the JSON of GET /v1/status
//
// and, with reqid = nil | [client, seq] (exactly-once) and cond = nil |
// revision (0: absent), appended to put as [id, 1, key, value, reqid?,
// cond?] and to delete as [id, 3, key, reqid?, cond?]:
//
//	op 6 txn              [id, 6, [[1, key, value, cond?] | [2, key, cond?], ...], reqid?]   result: revision
//	op 7 start workflow   [id, 7, wfid, fields?, reqid?]     result: revision
//	op 8 stop workflow    [id, 8, wfid, fields?, reqid?]     result: revision
//	op 9 update workflow  [id, 9, wfid, fields, reqid?]      result: revision
//	op 10 get workflow    [id, 10, wfid, consistency?]       result: item of workflow:<wfid>
//	op 11 list workflows  [id, 11, consistency?]             result: [revision, [item, ...]]
//	op 12 register node   [id, 12, nodeid, metadata?, reqid?] result: revision
//	op 13 deregister node [id, 13, nodeid, reqid?]           result: revision
//	op 14 list nodes      [id, 14, consistency?]             result: [revision, [item, ...]]
//	op 15 grant lease     [id, 15, ttlMs, lease?, reqid?]    result: lease
//	op 16 revoke lease    [id, 16, lease, reqid?]            result: revision
//	op 17 keep lease alive [id, 17, lease]                   result: lease
//	op 18 lease time to live [id, 18, lease]                 result: lease with keys
//	op 19 list leases     [id, 19, consistency?]             result: [lease, ...]
//	op 30 list page       [id, 30, prefix?, consistency?, limit?, start?, revision?, mode?]
//	                      result: [revision, [item, ...], more, next?, count]
//
// (a list too large for op 4's one frame is read in pages of op 30, each
// within a frame, all at the first page's revision; list.go).
//
// with lease = [id, ttlMs, remainingMs?, keys?], and put's optional
// [..., lease?, ttlMs?] after cond.
//
// consistency is 0 (linearizable, the default) or 1 (local). Values are
// JSON carried as bin. Error codes and their meaning are those of the JSON
// API (errors.go), chosen by the same table. The operations, their
// schemas and the frame codec are api's, shared with the client; this
// file holds the connections, ws_exec.go the execution of requests.
//
// Per connection: the reader goroutine (the handler's) reads a frame,
// decodes it (api.DecodeRequests), and hands each request to a
// worker goroutine (an idle one, else a new one; workers are reused across
// requests) once a slot of WSMaxInFlight is free (when none is, it stops
// reading: backpressure reaches the client through TCP). Each request
// encodes its own response and hands it to the writer goroutine, which
// coalesces whatever is ready into one frame of at most WSMaxFrameBytes. A
// frame that does not decode closes the connection with 1002 and a reason;
// a malformed request inside a good frame is answered bad_request.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/stages"
)

// WSProtocolVersion is the frame format of /v1/ws (api.ProtocolVersion):
// the first element of every frame in both directions. A server answers a
// frame of another version by closing the connection (1002) with a reason
// naming the versions it speaks; an incompatible change bumps it.
const WSProtocolVersion = api.ProtocolVersion

// Defaults applied by NewHandler to zero /v1/ws fields of HTTPOptions.
const (
	// DefaultWSMaxFrameBytes is the default bound on one /v1/ws frame in
	// either direction: room for a 1 MiB value with its key and framing,
	// several times over, so batching still pays with large values.
	DefaultWSMaxFrameBytes int64 = 4 << 20
	// DefaultWSMaxInFlight is the default bound on the requests in
	// progress on one /v1/ws connection.
	DefaultWSMaxInFlight = 1024
)

const (
	wsPath = "/v1/ws"
	// wsFrameHeadroom is what a frame needs beyond the largest value: key,
	// ids and framing.
	wsFrameHeadroom = 64 << 10
	// wsMaxCloseReason is the longest close reason WebSocket allows.
	wsMaxCloseReason = 123
	// wsKeepBuffer is the largest read or write buffer a connection keeps
	// between frames; a larger one (after a big frame) is dropped, so idle
	// connections do not each hold megabytes.
	wsKeepBuffer = 256 << 10
)

// wsBigFrames holds the buffers of frames larger than wsKeepBuffer, shared
// by the connections (and let go by the GC when unused).
var wsBigFrames sync.Pool

// WSStats counts /v1/ws activity since the handler was made.
type WSStats struct {
	// Open is the number of connections being served now.
	Open int64
	// Accepted counts connections upgraded.
	Accepted int64
	// Requests counts requests read from well-formed frames.
	Requests int64
	// BadFrames counts frames that closed their connection: not binary,
	// larger than WSMaxFrameBytes, or not a frame this version decodes.
	BadFrames int64
	// BadRequests counts requests answered bad_request: an unknown
	// operation or arguments of the wrong type.
	BadRequests int64
}

// WSStats returns the counters of the server's /v1/ws endpoint.
func (s *Server) WSStats() WSStats { return s.api.ws.stats() }

// wsHub tracks the /v1/ws connections of one handler, so that shutdown can
// drain them: http.Server.Shutdown neither waits for nor closes hijacked
// connections.
type wsHub struct {
	mu      sync.Mutex
	closing bool
	conns   map[*wsConn]struct{}
	// wg counts connections being served, so that shutdown can wait.
	wg sync.WaitGroup

	accepted, requests, badFrames, badRequests atomic.Int64
}

func (hub *wsHub) stats() WSStats {
	hub.mu.Lock()
	open := len(hub.conns)
	hub.mu.Unlock()
	return WSStats{
		Open:        int64(open),
		Accepted:    hub.accepted.Load(),
		Requests:    hub.requests.Load(),
		BadFrames:   hub.badFrames.Load(),
		BadRequests: hub.badRequests.Load(),
	}
}

func (hub *wsHub) isClosing() bool {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	return hub.closing
}

// add registers c; false once shutdown has begun.
func (hub *wsHub) add(c *wsConn) bool {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.closing {
		return false
	}
	if hub.conns == nil {
		hub.conns = make(map[*wsConn]struct{})
	}
	hub.conns[c] = struct{}{}
	hub.wg.Add(1)
	hub.accepted.Add(1)
	return true
}

func (hub *wsHub) remove(c *wsConn) {
	hub.mu.Lock()
	delete(hub.conns, c)
	hub.mu.Unlock()
	hub.wg.Done()
}

// shutdown refuses new connections, lets every open one finish the
// requests it has in progress (new ones are answered unavailable), then
// closes it with 1001 going away. When ctx ends first, the remaining
// connections are closed at once and their requests abandoned. It returns
// when no connection is served any more.
func (hub *wsHub) shutdown(ctx context.Context) error {
	hub.mu.Lock()
	hub.closing = true
	conns := slices.Collect(maps.Keys(hub.conns))
	hub.mu.Unlock()
	for _, c := range conns {
		c.beginDrain()
	}
	done := make(chan struct{})
	go func() {
		hub.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.abort()
		}
		<-done
		return ctx.Err()
	}
}

// serveWS upgrades GET /v1/ws and serves the connection until it closes.
func (h *apiHandler) serveWS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, apiError{status: http.StatusUpgradeRequired, code: api.CodeBadRequest,
			message: "/v1/ws is a WebSocket endpoint (HTTP/1.1 upgrade, version 13); see docs/PROTOCOL.md"})
		return
	}
	if h.ws.isClosing() {
		writeError(w, apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "server is shutting down"})
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		// Accept has answered the request.
		h.log.Debug("ws upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := newWSConn(h, conn, r.Context())
	if !h.ws.add(c) {
		c.cancel()
		_ = conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer h.ws.remove(c)
	h.log.Debug("ws connection open", "remote", r.RemoteAddr)
	err = c.serve()
	h.log.Debug("ws connection closed", "remote", r.RemoteAddr, "err", err)
}

// isWebSocketUpgrade reports whether r asks for a WebSocket upgrade that
// websocket.Accept can take, so that everything else gets a JSON answer.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.ProtoAtLeast(1, 1) &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket") &&
		r.Header.Get("Sec-WebSocket-Version") == "13" &&
		r.Header.Get("Sec-WebSocket-Key") != ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsConn serves one /v1/ws connection.
type wsConn struct {
	h    *apiHandler
	conn *websocket.Conn
	// ctx is the parent of every request's context; cancelled when the
	// connection ends, abandoning the waits of requests in progress.
	ctx    context.Context
	cancel context.CancelFunc
	// waitCtx is the parent of the context of a request that may wait (an
	// acquire or a campaign with a wait): cancelled when the connection
	// starts draining too, so that a shutdown does not wait for them.
	waitCtx     context.Context
	cancelWaits context.CancelFunc

	// slots holds one token per request between admission and the writer
	// taking its answer: WSMaxInFlight bounds requests in progress and
	// answers waiting to be written together.
	slots chan struct{}
	// out carries encoded answers to the writer; its capacity equals
	// slots', so sending never blocks.
	out chan wsAnswer
	// requests counts requests being handled, so that teardown can wait.
	requests sync.WaitGroup
	// work hands a request to an idle worker (unbuffered: a send succeeds
	// only if one is waiting); workers counts the worker goroutines. A
	// worker serves request after request, so its stack, grown once by
	// the deep write path, is reused instead of grown again for every
	// request in a new goroutine (stack growth was ~5% of a leader's CPU
	// at 256 writers in flight).
	work    chan wsWork
	workers sync.WaitGroup

	mu sync.Mutex
	// inflight counts admitted requests whose answers are not yet written;
	// draining requests are not counted.
	inflight  int
	draining  bool
	drained   chan struct{} // closed when draining and inflight reaches 0
	isDrained bool

	abortOnce sync.Once
	aborted   chan struct{}

	maxFrame int64
	readBuf  bytes.Buffer

	// watches are the connection's watches and what they push
	// (ws_watch.go).
	watches wsWatches
}

// wsWork is one admitted request on its way to a worker.
type wsWork struct {
	req     api.Request
	counted bool
}

// wsAnswer is one encoded response on its way to the writer.
type wsAnswer struct {
	response []byte
	// counted marks answers to admitted requests (not those refused while
	// draining), which drain waits for.
	counted bool
}

func newWSConn(h *apiHandler, conn *websocket.Conn, parent context.Context) *wsConn {
	// The request context outlives the handler's HTTP bookkeeping only as
	// long as serve runs; it is not cancelled by http.Server.Shutdown.
	ctx, cancel := context.WithCancel(parent)
	waitCtx, cancelWaits := context.WithCancel(ctx)
	conn.SetReadLimit(h.opts.WSMaxFrameBytes)
	c := &wsConn{
		h:           h,
		conn:        conn,
		ctx:         ctx,
		cancel:      cancel,
		waitCtx:     waitCtx,
		cancelWaits: cancelWaits,
		slots:       make(chan struct{}, h.opts.WSMaxInFlight),
		out:         make(chan wsAnswer, h.opts.WSMaxInFlight),
		work:        make(chan wsWork),
		drained:     make(chan struct{}),
		aborted:     make(chan struct{}),
		maxFrame:    h.opts.WSMaxFrameBytes,
	}
	c.watches.init(int(h.opts.WSMaxFrameBytes))
	return c
}

// serve runs the connection until the peer closes it, it breaks, a bad
// frame arrives, or shutdown drains or aborts it. On return every goroutine
// it started has ended.
func (c *wsConn) serve() error {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	readDone := make(chan error, 1)
	go func() { readDone <- c.readLoop() }()

	abort := func() error {
		// Cancel first: the reader may be waiting for a slot that only a
		// request's end frees.
		c.cancel()
		_ = c.conn.CloseNow()
		return <-readDone
	}
	var err error
	select {
	case err = <-readDone:
	case <-c.drained:
		// Every admitted request is answered and its answer written. The
		// close handshake waits for the peer, so shutdown's deadline must
		// still be able to cut it short.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_ = c.conn.Close(websocket.StatusGoingAway, "server shutting down")
		}()
		select {
		case err = <-readDone:
		case <-c.aborted:
			err = abort()
		}
		<-closed
	case <-c.aborted:
		err = abort()
	}
	c.cancel()
	c.requests.Wait()
	// No request runs, so no watch starts any more.
	c.closeWatches()
	// The reader has returned: nothing sends on work any more.
	close(c.work)
	c.workers.Wait()
	close(c.out)
	<-writerDone
	_ = c.conn.CloseNow()
	return err
}

// beginDrain stops admitting requests; serve closes the connection once
// those in progress are answered.
func (c *wsConn) beginDrain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	c.cancelWaits()
	c.checkDrainedLocked()
}

func (c *wsConn) checkDrainedLocked() {
	if c.draining && c.inflight == 0 && !c.isDrained {
		c.isDrained = true
		close(c.drained)
	}
}

// abort closes the connection without waiting for requests in progress.
func (c *wsConn) abort() {
	c.abortOnce.Do(func() { close(c.aborted) })
}

// errBadFrame is returned by readLoop after it closed the connection for
// a frame it could not take.
var errBadFrame = errors.New("bad frame")

// readLoop reads frames and starts their requests until the connection
// ends. It returns the reason.
func (c *wsConn) readLoop() error {
	hub := &c.h.ws
	for {
		typ, r, err := c.conn.Reader(c.ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageBinary {
			hub.badFrames.Add(1)
			_ = c.conn.Close(websocket.StatusUnsupportedData, "text frame: /v1/ws frames are binary MessagePack")
			return fmt.Errorf("%w: text frame", errBadFrame)
		}
		c.readBuf.Reset()
		if _, err := c.readBuf.ReadFrom(r); err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// The library has closed the connection with 1009.
				hub.badFrames.Add(1)
				c.h.log.Debug("ws frame too large", "limit", c.maxFrame)
				return fmt.Errorf("%w: %w", errBadFrame, err)
			}
			return err
		}
		if stages.Enabled {
			stages.Mark("ws_frame", 0)
		}
		reqs, err := decodeWSFrame(c.readBuf.Bytes(), c.h.opts.WSMaxInFlight)
		if c.readBuf.Cap() > wsKeepBuffer {
			c.readBuf = bytes.Buffer{}
		}
		if err != nil {
			hub.badFrames.Add(1)
			c.h.log.Debug("ws bad frame", "err", err)
			_ = c.conn.Close(websocket.StatusProtocolError, closeReason(err.Error()))
			return fmt.Errorf("%w: %w", errBadFrame, err)
		}
		hub.requests.Add(int64(len(reqs)))
		for _, req := range reqs {
			counted, ok := c.admit()
			if !ok {
				return c.ctx.Err()
			}
			if req.Bad != "" {
				hub.badRequests.Add(1)
			}
			c.requests.Add(1)
			c.dispatch(req, counted)
		}
	}
}

// closeReason fits s into a WebSocket close reason: at most 123 bytes,
// cut on a rune boundary.
func closeReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= wsMaxCloseReason {
		return s
	}
	cut := wsMaxCloseReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// admit waits for a request slot. counted is false when the connection is
// draining: the request is refused rather than served. ok is false when
// the connection ended while waiting.
func (c *wsConn) admit() (counted, ok bool) {
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		return false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return false, true
	}
	c.inflight++
	return true, true
}

// dispatch hands req to an idle worker, or starts one. Workers are
// bounded by the requests in progress (admit), so by WSMaxInFlight; idle
// ones end with the connection.
func (c *wsConn) dispatch(req api.Request, counted bool) {
	w := wsWork{req: req, counted: counted}
	select {
	case c.work <- w:
	default:
		c.workers.Add(1)
		go c.worker(w)
	}
}

// worker handles w, then whatever dispatch hands it, until serve closes
// work.
func (c *wsConn) worker(w wsWork) {
	defer c.workers.Done()
	for ok := true; ok; w, ok = <-c.work {
		c.handle(w.req, w.counted)
	}
}

// handle serves one request and queues its answer.
func (c *wsConn) handle(req api.Request, counted bool) {
	defer c.requests.Done()
	if stages.Enabled {
		stages.Mark("ws_handle", 0)
		defer stages.Mark("ws_handled", 0)
	}
	var response []byte
	func() {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			c.h.panics.Add(1)
			c.h.log.Error("ws handler panic", "op", uint64(req.Op), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			response = encodeWSResponse(req.ID, req.Op, api.Response{}, &apiError{code: api.CodeInternal,
				message: "internal error while handling the request"}, c.maxFrame)
		}()
		if !counted {
			response = encodeWSResponse(req.ID, req.Op, api.Response{}, &apiError{code: api.CodeUnavailable,
				message: "server is shutting down; the request was not processed"}, c.maxFrame)
			return
		}
		if isWatchOp(req.Op) {
			// Answered here, or queued by the watches themselves.
			response = c.watchOp(req, counted)
			return
		}
		ctx := c.ctx
		if req.WaitMs > 0 {
			ctx = c.waitCtx
		}
		result, e := c.h.wsExecuteObserved(ctx, req)
		response = encodeWSResponse(req.ID, req.Op, result, e, c.maxFrame)
	}()
	if response == nil {
		return // queued by the watches (ws_watch.go)
	}
	c.out <- wsAnswer{response: response, counted: counted}
}

// writeLoop writes answers and the watches' elements as they come,
// coalescing all that are ready (up to the frame limit) into one frame,
// until out is closed.
func (c *wsConn) writeLoop() {
	budget := int(c.maxFrame) - api.FrameOverhead
	var (
		batch  []wsAnswer
		pushes []wsPush
		frame  bytes.Buffer
		carry  *wsAnswer
		broken bool
		open   = true
	)
	for open || carry != nil {
		var size int
		batch, pushes = batch[:0], pushes[:0]
		if carry != nil {
			batch, size, carry = append(batch, *carry), len(carry.response), nil
		} else if !c.watches.pending() {
			select {
			case a, ok := <-c.out:
				if !ok {
					return
				}
				<-c.slots
				batch, size = append(batch, a), len(a.response)
			case <-c.watches.wake:
			}
		}
		yielded := false
	fill:
		for open && carry == nil {
			select {
			case a, ok := <-c.out:
				if !ok {
					open = false
					break fill
				}
				// The answer has left out: its slot may admit a new request.
				<-c.slots
				if size+len(a.response) > budget {
					carry = &a
					break fill
				}
				batch, size = append(batch, a), size+len(a.response)
			default:
				if yielded || c.pendingAnswers() == 0 {
					break fill
				}
				// Requests are still being served: let them finish so that
				// their answers share this frame (one write instead of many).
				yielded = true
				runtime.Gosched()
			}
		}
		// Then the watches' elements, as many as fit (one at least when
		// the frame is empty).
		if carry == nil {
			pushes = c.watches.take(pushes, budget-size, len(batch) == 0)
		}
		counted := 0
		for _, p := range pushes {
			if p.answer {
				<-c.slots
			}
			if p.counted {
				counted++
			}
		}
		for _, a := range batch {
			if a.counted {
				counted++
			}
		}
		if len(batch)+len(pushes) == 0 {
			continue
		}
		if !broken {
			if err := c.writeFrame(&frame, batch, pushes); err != nil {
				// The connection is gone; make sure the reader sees it too.
				broken = true
				c.h.log.Debug("ws write failed", "err", err)
				_ = c.conn.CloseNow()
			}
		}
		// Drain waits until answers are written, not merely taken, so that
		// the close frame follows the last of them.
		c.mu.Lock()
		c.inflight -= counted
		c.checkDrainedLocked()
		c.mu.Unlock()
	}
}

// pendingAnswers returns how many admitted requests have not yet handed
// their answer to the writer, as far as the slot count tells.
func (c *wsConn) pendingAnswers() int { return len(c.slots) }

// writeFrame writes answers and then watch elements as one frame:
// [version, [element, ...]]. A frame with watch elements may take the
// watches' write timeout; one whose write runs out of it closes the
// connection and counts as a stalled watch stream.
func (c *wsConn) writeFrame(frame *bytes.Buffer, answers []wsAnswer, pushes []wsPush) error {
	size, pooled := api.FrameOverhead, false
	for _, a := range answers {
		size += len(a.response)
	}
	for _, p := range pushes {
		size += p.size()
	}
	if size > wsKeepBuffer {
		// A big frame (watch events, mostly) is laid out in a buffer of
		// the pool, sized once, rather than in one grown from small and
		// dropped after: with many watches, every write makes one.
		big, _ := wsBigFrames.Get().(*bytes.Buffer)
		if big == nil {
			big = new(bytes.Buffer)
		}
		defer wsBigFrames.Put(big)
		frame, pooled = big, true
	}
	frame.Reset()
	frame.Grow(size)
	var header [api.FrameOverhead]byte
	frame.Write(api.AppendFrameHeader(header[:0], len(answers)+len(pushes)))
	for _, a := range answers {
		frame.Write(a.response)
	}
	watching := false
	for _, p := range pushes {
		frame.Write(p.b)
		frame.Write(p.tail)
		watching = watching || !p.answer
	}
	timeout := c.h.opts.RequestTimeout
	if watching {
		timeout = c.h.opts.Watch.WriteTimeout
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if stages.Enabled {
		stages.Mark("ws_write", 0)
	}
	err := c.conn.Write(ctx, websocket.MessageBinary, frame.Bytes())
	if !pooled && frame.Cap() > wsKeepBuffer {
		*frame = bytes.Buffer{}
	}
	// The deadline, not the connection's end (which leaves ctx
	// Canceled), cut the write.
	if err != nil && watching && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		c.h.watches.stalled.Add(1)
	}
	return err
}

// decodeWSFrame decodes a request frame of at most maxRequests requests
// (api.DecodeRequests), saying which versions this server speaks when the
// frame is of another.
func decodeWSFrame(b []byte, maxRequests int) ([]api.Request, error) {
	reqs, err := api.DecodeRequests(b, maxRequests)
	if ve, ok := errors.AsType[*api.VersionError](err); ok {
		return nil, fmt.Errorf("unsupported frame version %d; this server speaks %d", ve.Version, WSProtocolVersion)
	}
	return reqs, err
}
