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
//
// consistency is 0 (linearizable, the default) or 1 (local). Values are
// JSON carried as bin. Error codes and their meaning are those of the JSON
// API (errors.go), chosen by the same table.
//
// Per connection: the reader goroutine (the handler's) reads a frame,
// checks it with msgpackcheck before decoding, and hands each request to a
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
	"encoding/binary"
	"encoding/json"
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
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/unrdf/consensus/internal/msgpackcheck"
	"github.com/unrdf/consensus/internal/stages"
	"github.com/unrdf/consensus/kv"
)

// WSProtocolVersion is the frame format of /v1/ws: the first element of
// every frame in both directions. A server answers a frame of another
// version by closing the connection (1002) with a reason naming the
// versions it speaks; an incompatible change bumps it.
const WSProtocolVersion = 1

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
	// wsFrameOverhead bounds the bytes of a frame's envelope: the outer
	// array, the version and the header of the element array.
	wsFrameOverhead = 8
	// wsMaxDepth bounds the nesting of a frame: frame, request array,
	// request, and room for nested fields a later version may add.
	wsMaxDepth = 8
	// wsMaxCloseReason is the longest close reason WebSocket allows.
	wsMaxCloseReason = 123
	// wsKeepBuffer is the largest read or write buffer a connection keeps
	// between frames; a larger one (after a big frame) is dropped, so idle
	// connections do not each hold megabytes.
	wsKeepBuffer = 256 << 10
)

// Operations of the /v1/ws protocol.
const (
	wsOpPut      = 1
	wsOpGet      = 2
	wsOpDelete   = 3
	wsOpList     = 4
	wsOpStatus   = 5
	wsOpTxn      = 6
	wsOpWFStart  = 7
	wsOpWFStop   = 8
	wsOpWFUpdate = 9
	wsOpWFGet    = 10
	wsOpWFList   = 11
	wsOpNodeReg  = 12
	wsOpNodeDel  = 13
	wsOpNodeList = 14
	wsOpLast     = wsOpNodeList
)

// wsArg is the kind of a request argument.
type wsArg uint8

const (
	wsArgKey         wsArg = iota + 1 // str: a key, workflow id or node id
	wsArgPrefix                       // nil or str
	wsArgValue                        // bin: JSON
	wsArgFields                       // nil or bin: a JSON object
	wsArgConsistency                  // nil or 0 or 1
	wsArgReqID                        // nil or [client str, seq uint]
	wsArgCond                         // nil or a revision, 0 for absent
	wsArgOps                          // [[1, key, value, cond?] | [2, key, cond?], ...]
)

// wsSchema lists an operation's arguments (after id and op) and how many
// of them are required.
type wsSchema struct {
	args     []wsArg
	required int
	write    bool
}

var wsSchemas = [wsOpLast + 1]wsSchema{
	wsOpPut:      {args: []wsArg{wsArgKey, wsArgValue, wsArgReqID, wsArgCond}, required: 2, write: true},
	wsOpGet:      {args: []wsArg{wsArgKey, wsArgConsistency}, required: 1},
	wsOpDelete:   {args: []wsArg{wsArgKey, wsArgReqID, wsArgCond}, required: 1, write: true},
	wsOpList:     {args: []wsArg{wsArgPrefix, wsArgConsistency}},
	wsOpStatus:   {},
	wsOpTxn:      {args: []wsArg{wsArgOps, wsArgReqID}, required: 1, write: true},
	wsOpWFStart:  {args: []wsArg{wsArgKey, wsArgFields, wsArgReqID}, required: 1, write: true},
	wsOpWFStop:   {args: []wsArg{wsArgKey, wsArgFields, wsArgReqID}, required: 1, write: true},
	wsOpWFUpdate: {args: []wsArg{wsArgKey, wsArgFields, wsArgReqID}, required: 2, write: true},
	wsOpWFGet:    {args: []wsArg{wsArgKey, wsArgConsistency}, required: 1},
	wsOpWFList:   {args: []wsArg{wsArgConsistency}},
	wsOpNodeReg:  {args: []wsArg{wsArgKey, wsArgFields, wsArgReqID}, required: 1, write: true},
	wsOpNodeDel:  {args: []wsArg{wsArgKey, wsArgReqID}, required: 1, write: true},
	wsOpNodeList: {args: []wsArg{wsArgConsistency}},
}

// wsIsWrite reports whether op changes the state.
func wsIsWrite(op uint64) bool { return op <= wsOpLast && wsSchemas[op].write }

// Response kinds: the second element of a response.
const (
	wsResultOK    = 0
	wsResultError = 1
)

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
		writeError(w, apiError{status: http.StatusUpgradeRequired, code: CodeBadRequest,
			message: "/v1/ws is a WebSocket endpoint (HTTP/1.1 upgrade, version 13); see docs/PROTOCOL.md"})
		return
	}
	if h.ws.isClosing() {
		writeError(w, apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
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
}

// wsWork is one admitted request on its way to a worker.
type wsWork struct {
	req     wsRequest
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
	conn.SetReadLimit(h.opts.WSMaxFrameBytes)
	return &wsConn{
		h:        h,
		conn:     conn,
		ctx:      ctx,
		cancel:   cancel,
		slots:    make(chan struct{}, h.opts.WSMaxInFlight),
		out:      make(chan wsAnswer, h.opts.WSMaxInFlight),
		work:     make(chan wsWork),
		drained:  make(chan struct{}),
		aborted:  make(chan struct{}),
		maxFrame: h.opts.WSMaxFrameBytes,
	}
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
			if req.bad != "" {
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

// handle serves one request and queues its answer.
// dispatch hands req to an idle worker, or starts one. Workers are
// bounded by the requests in progress (admit), so by WSMaxInFlight; idle
// ones end with the connection.
func (c *wsConn) dispatch(req wsRequest, counted bool) {
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

func (c *wsConn) handle(req wsRequest, counted bool) {
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
			c.h.log.Error("ws handler panic", "op", req.op, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			response = encodeWSResponse(req.id, nil, &apiError{code: CodeInternal,
				message: "internal error while handling the request"}, c.maxFrame)
		}()
		if !counted {
			response = encodeWSResponse(req.id, nil, &apiError{code: CodeUnavailable,
				message: "server is shutting down; the request was not processed"}, c.maxFrame)
			return
		}
		result, e := c.h.wsExecuteObserved(c.ctx, req)
		response = encodeWSResponse(req.id, result, e, c.maxFrame)
	}()
	c.out <- wsAnswer{response: response, counted: counted}
}

// writeLoop writes answers as they come, coalescing all that are ready
// (up to the frame limit) into one frame, until out is closed.
func (c *wsConn) writeLoop() {
	budget := int(c.maxFrame) - wsFrameOverhead
	var (
		batch  []wsAnswer
		frame  bytes.Buffer
		carry  *wsAnswer
		broken bool
		open   = true
	)
	for open || carry != nil {
		var size int
		batch = batch[:0]
		if carry != nil {
			batch, size, carry = append(batch, *carry), len(carry.response), nil
		} else {
			a, ok := <-c.out
			if !ok {
				return
			}
			<-c.slots
			batch, size = append(batch, a), len(a.response)
		}
		yielded := false
	fill:
		for open {
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
		if !broken {
			if err := c.writeFrame(&frame, batch); err != nil {
				// The connection is gone; make sure the reader sees it too.
				broken = true
				c.h.log.Debug("ws write failed", "err", err)
				_ = c.conn.CloseNow()
			}
		}
		// Drain waits until answers are written, not merely taken, so that
		// the close frame follows the last of them.
		counted := 0
		for _, a := range batch {
			if a.counted {
				counted++
			}
		}
		c.mu.Lock()
		c.inflight -= counted
		c.checkDrainedLocked()
		c.mu.Unlock()
	}
}

// pendingAnswers returns how many admitted requests have not yet handed
// their answer to the writer, as far as the slot count tells.
func (c *wsConn) pendingAnswers() int { return len(c.slots) }

// writeFrame writes responses as one frame: [version, [response, ...]].
func (c *wsConn) writeFrame(frame *bytes.Buffer, answers []wsAnswer) error {
	frame.Reset()
	frame.WriteByte(0x92) // fixarray of 2
	frame.WriteByte(WSProtocolVersion)
	frame.Write(appendArrayHeader(nil, len(answers)))
	for _, a := range answers {
		frame.Write(a.response)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.h.opts.RequestTimeout)
	defer cancel()
	err := c.conn.Write(ctx, websocket.MessageBinary, frame.Bytes())
	if frame.Cap() > wsKeepBuffer {
		*frame = bytes.Buffer{}
	}
	return err
}

// appendArrayHeader appends a MessagePack array header for n elements.
func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Array16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Array32), uint32(n))
	}
}

// wsRequest is one decoded request.
type wsRequest struct {
	id          uint64
	op          uint64
	key         string // the key, the list prefix, or a workflow or node id
	value       []byte // a value, or a JSON object of fields (nil: none)
	consistency kv.Consistency
	reqID       kv.RequestID
	cond        kv.Cond
	ops         []wsTxnOp
	// bad, when set, says why the request is malformed; it is answered
	// bad_request without reaching the backend.
	bad string
}

// wsTxnOp is one operation of a txn request, as decoded.
type wsTxnOp struct {
	typ   uint64
	key   string
	value []byte
	cond  kv.Cond
}

// wsStatusJSON is the result of a status request: the JSON object of GET
// /v1/status, carried as bin.
type wsStatusJSON []byte

// wsListResult is the result of a list request.
type wsListResult struct {
	items    []kv.Item
	revision int64
}

// wsExecute serves req against the backend with the request timeout; the
// result is an int64 revision, a kv.Item, a wsListResult or a
// wsStatusJSON. Keys, prefixes and values are checked exactly as the JSON
// API checks them, and errors are mapped by the same table.
func (h *apiHandler) wsExecute(connCtx context.Context, req wsRequest) (any, *apiError) {
	if req.bad != "" {
		return nil, &apiError{status: http.StatusBadRequest, code: CodeBadRequest, message: req.bad}
	}
	invalidKey := func(msg string) *apiError {
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: msg}
	}
	if e := h.wsAdmit(connCtx, req.op); e != nil {
		return nil, e
	}
	// checkValue checks and compacts a JSON value as the body of a PUT.
	checkValue := func(v []byte, what string) ([]byte, *apiError) {
		if int64(len(v)) > h.opts.MaxBodyBytes {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: CodeTooLarge,
				message: fmt.Sprintf("%s is %d bytes, larger than the limit of %d", what, len(v), h.opts.MaxBodyBytes)}
		}
		return compactJSONValue(v, what)
	}
	switch req.op {
	case wsOpList:
		if msg := h.checkPrefix(req.key); msg != "" {
			return nil, invalidKey(msg)
		}
	case wsOpStatus, wsOpTxn, wsOpWFList, wsOpNodeList:
	default:
		if msg := h.checkKey(req.key); msg != "" {
			return nil, invalidKey(msg)
		}
	}
	var fields []byte
	if req.value != nil && req.op != wsOpPut {
		var e *apiError
		if fields, e = checkValue(req.value, "fields"); e != nil {
			return nil, e
		}
	}
	ctx, cancel := context.WithTimeout(connCtx, h.opts.RequestTimeout)
	defer cancel()
	if req.reqID.Client != "" {
		if err := req.reqID.Validate(); err != nil {
			return nil, &apiError{status: http.StatusBadRequest, code: CodeBadRequest, message: err.Error()}
		}
		ctx = kv.WithRequestID(ctx, req.reqID)
	}
	var (
		result any
		err    error
	)
	switch req.op {
	case wsOpPut:
		value, e := checkValue(req.value, "value")
		if e != nil {
			return nil, e
		}
		if _, conditional := req.cond.Revision(); conditional {
			result, err = h.backend.PutIf(ctx, req.key, value, req.cond)
		} else {
			result, err = h.backend.Put(ctx, req.key, value)
		}
	case wsOpGet:
		result, err = h.backend.Get(ctx, req.key, req.consistency)
	case wsOpDelete:
		if _, conditional := req.cond.Revision(); conditional {
			result, err = h.backend.DeleteIf(ctx, req.key, req.cond)
		} else {
			result, err = h.backend.Delete(ctx, req.key)
		}
	case wsOpList:
		var list wsListResult
		list.items, list.revision, err = h.backend.List(ctx, req.key, req.consistency)
		result = list
	case wsOpTxn:
		if len(req.ops) == 0 || len(req.ops) > kv.DefaultMaxBatchOps {
			return nil, &apiError{status: http.StatusBadRequest, code: CodeBadRequest,
				message: fmt.Sprintf("a txn holds 1 to %d operations, not %d", kv.DefaultMaxBatchOps, len(req.ops))}
		}
		ops := make([]kv.Op, len(req.ops))
		for i, o := range req.ops {
			if msg := h.checkKey(o.key); msg != "" {
				return nil, invalidKey(fmt.Sprintf("operation %d: %s", i, msg))
			}
			ops[i] = kv.Op{Type: kv.OpDelete, Key: o.key, Cond: o.cond}
			if o.typ == uint64(kv.OpPut) {
				value, e := checkValue(o.value, fmt.Sprintf("operation %d value", i))
				if e != nil {
					return nil, e
				}
				ops[i].Type, ops[i].Value = kv.OpPut, value
			}
		}
		result, err = h.backend.Batch(ctx, ops)
	case wsOpWFStart:
		result, err = h.backend.StartWorkflow(ctx, req.key, fields)
	case wsOpWFStop:
		result, err = h.backend.StopWorkflow(ctx, req.key, fields)
	case wsOpWFUpdate:
		result, err = h.backend.UpdateWorkflowState(ctx, req.key, fields)
	case wsOpWFGet:
		var wf kv.Workflow
		if wf, err = h.backend.WorkflowState(ctx, req.key, req.consistency); err == nil {
			result = kv.Item{Key: kv.WorkflowPrefix + wf.ID, Value: wf.Value, Revision: wf.Revision,
				CreateRevision: wf.CreateRevision, Version: wf.Version}
		}
	case wsOpWFList:
		var wfs []kv.Workflow
		var list wsListResult
		wfs, list.revision, err = h.backend.Workflows(ctx, req.consistency)
		for _, wf := range wfs {
			list.items = append(list.items, kv.Item{Key: kv.WorkflowPrefix + wf.ID, Value: wf.Value,
				Revision: wf.Revision, CreateRevision: wf.CreateRevision, Version: wf.Version})
		}
		result = list
	case wsOpNodeReg:
		result, err = h.backend.RegisterNode(ctx, req.key, fields)
	case wsOpNodeDel:
		result, err = h.backend.DeregisterNode(ctx, req.key)
	case wsOpNodeList:
		var nodes []kv.Node
		var list wsListResult
		nodes, list.revision, err = h.backend.Nodes(ctx, req.consistency)
		for _, n := range nodes {
			list.items = append(list.items, kv.Item{Key: kv.NodePrefix + n.ID, Value: n.Value,
				Revision: n.Revision, CreateRevision: n.CreateRevision, Version: n.Version})
		}
		result = list
	case wsOpStatus:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(h.status()); err != nil {
			return nil, &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
				message: "encoding status: " + err.Error()}
		}
		result = wsStatusJSON(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	default:
		// decodeWSFrame marks unknown operations bad.
		return nil, &apiError{status: http.StatusBadRequest, code: CodeBadRequest,
			message: fmt.Sprintf("unknown operation %d", req.op)}
	}
	if err != nil {
		e := requestError(connCtx, err)
		if e.unexpected {
			h.log.Error("ws backend error", "op", req.op, "err", err)
		}
		return nil, &e
	}
	return result, nil
}

// wsEncoder writes MessagePack into a buffer, keeping the first error
// (writing to a bytes.Buffer does not fail, so in practice there is none).
type wsEncoder struct {
	enc *msgpack.Encoder
	err error
}

func (w *wsEncoder) keep(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *wsEncoder) arrayLen(n int) { w.keep(w.enc.EncodeArrayLen(n)) }
func (w *wsEncoder) uint(v uint64)  { w.keep(w.enc.EncodeUint(v)) }
func (w *wsEncoder) int(v int64)    { w.keep(w.enc.EncodeInt(v)) }
func (w *wsEncoder) str(s string)   { w.keep(w.enc.EncodeString(s)) }
func (w *wsEncoder) bin(b []byte)   { w.keep(w.enc.EncodeBytes(b)) }

// item writes [key, value, revision, createRevision, version].
func (w *wsEncoder) item(it *kv.Item) {
	w.arrayLen(5)
	w.str(it.Key)
	w.bin(it.Value)
	w.int(it.Revision)
	w.int(it.CreateRevision)
	w.int(it.Version)
}

// encodeWSResponse encodes the response to request id: the result, or e
// when it is not nil. A response that would not fit in a frame of
// maxFrame bytes is replaced by a too_large error.
func encodeWSResponse(id uint64, result any, e *apiError, maxFrame int64) []byte {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	w := wsEncoder{enc: enc}
	w.arrayLen(3)
	w.uint(id)
	if e != nil {
		w.uint(wsResultError)
		w.arrayLen(2)
		w.str(e.code)
		// Messages may quote a key; keep them valid UTF-8 as the JSON
		// API does.
		w.str(strings.ToValidUTF8(e.message, "\uFFFD"))
	} else {
		w.uint(wsResultOK)
		switch r := result.(type) {
		case int64:
			w.int(r)
		case kv.Item:
			w.item(&r)
		case wsListResult:
			w.arrayLen(2)
			w.int(r.revision)
			w.arrayLen(len(r.items))
			for i := range r.items {
				w.item(&r.items[i])
			}
		case wsStatusJSON:
			w.bin(r)
		default:
			w.err = fmt.Errorf("unexpected result %T", result)
		}
	}
	switch {
	case w.err != nil:
		return encodeWSResponse(id, nil, &apiError{code: CodeUnavailable, message: "encoding response: " + w.err.Error()}, maxFrame)
	case int64(buf.Len()) > maxFrame-wsFrameOverhead:
		if e != nil {
			// Only a message longer than a frame gets here; cut it.
			e2 := *e
			e2.message = closeReason(e.message)
			return encodeWSResponse(id, nil, &e2, maxFrame)
		}
		return encodeWSResponse(id, nil, &apiError{code: CodeTooLarge,
			message: fmt.Sprintf("response of %d bytes exceeds the frame limit of %d", buf.Len(), maxFrame)}, maxFrame)
	}
	return buf.Bytes()
}

// wsReader decodes a frame that msgpackcheck.Validate accepted: every
// declared length fits in the input, so the decoder's preallocation is
// bounded by the frame's size. Each typed read peeks first and skips a
// value of the wrong type, so the stream stays aligned after an error.
type wsReader struct {
	src bytes.Reader
	d   *msgpack.Decoder
}

// errWSField is wrapped by errors about a field's type or value; the
// value has been consumed, so decoding can go on with the next field.
var errWSField = errors.New("bad field")

func isMsgpackArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func isMsgpackInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)
}

// skipWrong skips the next value and returns an error naming want.
func (r *wsReader) skipWrong(c byte, want string) error {
	if err := r.d.Skip(); err != nil {
		return err
	}
	return fmt.Errorf("%w: type %#x, want %s", errWSField, c, want)
}

func (r *wsReader) arrayLen() (int, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !isMsgpackArray(c) {
		return 0, r.skipWrong(c, "an array")
	}
	return r.d.DecodeArrayLen()
}

func (r *wsReader) uint() (uint64, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !isMsgpackInt(c) {
		return 0, r.skipWrong(c, "an integer")
	}
	if c <= msgpcode.PosFixedNumHigh || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64) {
		return r.d.DecodeUint64()
	}
	v, err := r.d.DecodeInt64()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: %d is negative", errWSField, v)
	}
	return uint64(v), nil
}

// str reads a str (or bin) as a string.
func (r *wsReader) str() (string, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsString(c) && !msgpcode.IsBin(c) {
		return "", r.skipWrong(c, "a string")
	}
	return r.d.DecodeString()
}

// bin reads a bin (or str) as bytes; never nil.
func (r *wsReader) bin() ([]byte, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsString(c) && !msgpcode.IsBin(c) {
		return nil, r.skipWrong(c, "bin")
	}
	b, err := r.d.DecodeBytes()
	if b == nil && err == nil {
		b = []byte{}
	}
	return b, err
}

// isNil consumes a nil if one is next.
func (r *wsReader) isNil() (bool, error) {
	c, err := r.d.PeekCode()
	if err != nil || c != msgpcode.Nil {
		return false, err
	}
	return true, r.d.Skip()
}

func (r *wsReader) consistency() (kv.Consistency, error) {
	if null, err := r.isNil(); err != nil || null {
		return kv.Linearizable, err
	}
	v, err := r.uint()
	if err != nil {
		return 0, err
	}
	switch v {
	case 0:
		return kv.Linearizable, nil
	case 1:
		return kv.Local, nil
	}
	return 0, fmt.Errorf("%w: consistency %d, want 0 (linearizable) or 1 (local)", errWSField, v)
}

// decodeWSFrame decodes a request frame holding at most maxRequests
// requests. An error means the frame as a whole cannot be answered (it is
// not a frame of this version, or a request has no readable id); a
// request that has an id but is otherwise malformed is returned with bad
// set. It never panics, and it allocates at most a small multiple of
// len(b).
func decodeWSFrame(b []byte, maxRequests int) ([]wsRequest, error) {
	if err := msgpackcheck.Validate(b, wsMaxDepth); err != nil {
		return nil, err
	}
	r := wsReader{d: msgpack.GetDecoder()}
	defer msgpack.PutDecoder(r.d)
	r.src.Reset(b)
	r.d.Reset(&r.src)

	n, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("frame: %w", err)
	}
	if n < 2 {
		return nil, fmt.Errorf("frame has %d elements; want [version, [request, ...]]", n)
	}
	version, err := r.uint()
	if err != nil {
		return nil, fmt.Errorf("frame version: %w", err)
	}
	if version != WSProtocolVersion {
		return nil, fmt.Errorf("unsupported frame version %d; this server speaks %d", version, WSProtocolVersion)
	}
	count, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("frame requests: %w", err)
	}
	if count > maxRequests {
		return nil, fmt.Errorf("frame carries %d requests, more than the limit of %d", count, maxRequests)
	}
	reqs := make([]wsRequest, count)
	for i := range reqs {
		if err := r.request(&reqs[i]); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	// Envelope elements after the requests come from a newer compatible
	// version.
	for range n - 2 {
		if err := r.d.Skip(); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// request decodes one request into req. It fails only when the request has
// no id to answer.
func (r *wsReader) request(req *wsRequest) error {
	n, err := r.arrayLen()
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("empty; want [id, op, ...]")
	}
	if req.id, err = r.uint(); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	bad := func(format string, args ...any) {
		if req.bad == "" {
			req.bad = fmt.Sprintf(format, args...)
		}
	}
	if n < 2 {
		bad("request has no operation")
		return nil
	}
	if req.op, err = r.uint(); err != nil {
		if !errors.Is(err, errWSField) {
			return fmt.Errorf("operation: %w", err)
		}
		bad("operation: %v", err)
	} else if req.op < wsOpPut || req.op > wsOpLast {
		bad("unknown operation %d", req.op)
	}
	var schema wsSchema
	if req.bad == "" {
		schema = wsSchemas[req.op] // otherwise skip the arguments
	}
	for i := 2; i < n; i++ {
		var err error
		if i-2 < len(schema.args) {
			err = r.arg(req, schema.args[i-2])
		} else {
			// Arguments this version does not know (from a newer client), or
			// those of a request already known to be bad.
			err = r.d.Skip()
		}
		if err != nil {
			if !errors.Is(err, errWSField) {
				return fmt.Errorf("field %d: %w", i, err)
			}
			bad("field %d: %v", i, err)
		}
	}
	if req.bad == "" && n-2 < schema.required {
		bad("operation %d needs at least %d arguments, got %d (see docs/PROTOCOL.md)", req.op, schema.required, n-2)
	}
	return nil
}

// arg decodes one argument of kind a into req.
func (r *wsReader) arg(req *wsRequest, a wsArg) error {
	var err error
	switch a {
	case wsArgKey:
		req.key, err = r.str()
	case wsArgPrefix:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			req.key, err = r.str()
		}
	case wsArgValue:
		req.value, err = r.bin()
	case wsArgFields:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			req.value, err = r.bin()
		}
	case wsArgConsistency:
		req.consistency, err = r.consistency()
	case wsArgReqID:
		req.reqID, err = r.reqID()
	case wsArgCond:
		req.cond, err = r.cond()
	case wsArgOps:
		req.ops, err = r.txnOps()
	}
	return err
}

// reqID reads nil or [client, seq, ...].
func (r *wsReader) reqID() (kv.RequestID, error) {
	var id kv.RequestID
	if null, err := r.isNil(); err != nil || null {
		return id, err
	}
	n, err := r.arrayLen()
	if err != nil {
		return id, err
	}
	if n < 2 {
		if err := r.skipN(n); err != nil {
			return id, err
		}
		return id, fmt.Errorf("%w: request id needs [client, seq]", errWSField)
	}
	var e1, e2 error
	id.Client, e1 = r.str()
	id.Seq, e2 = r.uint()
	if err := r.skipN(n - 2); err != nil {
		return id, err
	}
	if err := errors.Join(e1, e2); err != nil {
		return id, err
	}
	if id.Client == "" {
		return id, fmt.Errorf("%w: empty client id", errWSField)
	}
	return id, nil
}

// cond reads nil, a revision (0: the key must be absent) or true (the key
// must exist, at any revision).
func (r *wsReader) cond() (kv.Cond, error) {
	if null, err := r.isNil(); err != nil || null {
		return kv.Cond{}, err
	}
	switch c, err := r.d.PeekCode(); {
	case err != nil:
		return kv.Cond{}, err
	case c == msgpcode.True:
		return kv.IfExists(), r.d.Skip()
	case c == msgpcode.False:
		if err := r.d.Skip(); err != nil {
			return kv.Cond{}, err
		}
		return kv.Cond{}, fmt.Errorf("%w: cond false, want nil, a revision or true", errWSField)
	}
	rev, err := r.uint()
	if err != nil {
		return kv.Cond{}, err
	}
	if rev > 1<<62 {
		return kv.Cond{}, fmt.Errorf("%w: revision %d out of range", errWSField, rev)
	}
	return kv.IfRevision(int64(rev)), nil
}

// txnOps reads [[1, key, value, cond?] | [2, key, cond?], ...]. A
// malformed operation is an errWSField after the whole array is consumed.
func (r *wsReader) txnOps() ([]wsTxnOp, error) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	ops := make([]wsTxnOp, 0, min(n, kv.DefaultMaxBatchOps))
	var bad error
	for i := range n {
		o, err := r.txnOp()
		if err != nil {
			if !errors.Is(err, errWSField) {
				return nil, err
			}
			if bad == nil {
				bad = fmt.Errorf("%w: operation %d: %w", errWSField, i, err)
			}
			continue
		}
		if len(ops) < kv.DefaultMaxBatchOps+1 {
			ops = append(ops, o)
		}
	}
	return ops, bad
}

func (r *wsReader) txnOp() (wsTxnOp, error) {
	var o wsTxnOp
	n, err := r.arrayLen()
	if err != nil {
		return o, err
	}
	read := 0
	next := func(f func() error) error {
		if read >= n {
			return fmt.Errorf("%w: too few fields", errWSField)
		}
		read++
		return f()
	}
	err = next(func() (err error) { o.typ, err = r.uint(); return })
	if err == nil && o.typ != uint64(kv.OpPut) && o.typ != uint64(kv.OpDelete) {
		err = fmt.Errorf("%w: type %d, want 1 (put) or 2 (delete)", errWSField, o.typ)
	}
	if err == nil {
		err = next(func() (err error) { o.key, err = r.str(); return })
	}
	if err == nil && o.typ == uint64(kv.OpPut) {
		err = next(func() (err error) { o.value, err = r.bin(); return })
	}
	if err == nil && read < n {
		err = next(func() (err error) { o.cond, err = r.cond(); return })
	}
	if skipErr := r.skipN(n - read); skipErr != nil {
		return o, skipErr
	}
	return o, err
}

// skipN skips n values.
func (r *wsReader) skipN(n int) error {
	for range n {
		if err := r.d.Skip(); err != nil {
			return err
		}
	}
	return nil
}
