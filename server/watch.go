package server

// GET /v1/watch: a watch as Server-Sent Events.
//
//	GET /v1/watch?prefix=p&from_revision=n     (Last-Event-ID: n-1 resumes)
//
//	: (comments are heartbeats)
//	id: 4
//	data: {"type":"put","key":"a","value":1,"revision":4,"createRevision":4,"version":1}
//
// Each change is one SSE event whose data is a JSON object and whose id is
// its revision (events of one command that share a revision carry the id
// on the last of them only), so an EventSource that reconnects resumes
// where it was with Last-Event-ID. docs/PROTOCOL.md has the details.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

const watchPath = "/v1/watch"

// Headers of a GET /v1/watch response.
const (
	// StartRevisionHeader is the first revision a watch delivers.
	StartRevisionHeader = "X-Consensus-Start-Revision"
	// OldestRevisionHeader, on a 410, is the oldest revision a watch can
	// start from.
	OldestRevisionHeader = "X-Consensus-Oldest-Revision"
)

// Defaults of WatchOptions.
const (
	// DefaultMaxWatchesPerClient is the default WatchOptions.MaxPerClient.
	DefaultMaxWatchesPerClient = 64
	// DefaultMaxWatches is the default WatchOptions.MaxTotal.
	DefaultMaxWatches = 8192
	// DefaultWatchHeartbeat is the default WatchOptions.Heartbeat.
	DefaultWatchHeartbeat = 15 * time.Second
	// DefaultWatchWriteTimeout is the default WatchOptions.WriteTimeout.
	DefaultWatchWriteTimeout = 10 * time.Second
)

// watchFlushBytes is how much encoded SSE a stream gathers before it
// writes: a response of the watcher (up to 256 events or 256 KiB) is
// written in pieces of about this size, so a stream's own buffer stays
// near it whatever the response (one event larger than it is written
// alone), and a stalled client pins at most that much per write.
const watchFlushBytes = 32 << 10

// WatchOptions configures GET /v1/watch. A zero field means its default.
type WatchOptions struct {
	// MaxPerClient bounds the watches one client (its token when auth is
	// on, else its IP) may have open; beyond it the answer is 429
	// too_many_watches with Retry-After. Default DefaultMaxWatchesPerClient.
	MaxPerClient int
	// MaxTotal bounds the watches open on the node; beyond it the answer
	// is 503 overloaded. Default DefaultMaxWatches.
	MaxTotal int
	// Heartbeat is how often an idle stream gets a comment line (and its
	// progress as an id), so proxies keep it open and a dead client is
	// noticed. Default DefaultWatchHeartbeat.
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a client; a client that does not
	// read for that long loses its stream. Default
	// DefaultWatchWriteTimeout.
	WriteTimeout time.Duration
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.MaxPerClient <= 0 {
		o.MaxPerClient = DefaultMaxWatchesPerClient
	}
	if o.MaxTotal <= 0 {
		o.MaxTotal = DefaultMaxWatches
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultWatchHeartbeat
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWatchWriteTimeout
	}
	return o
}

// WatchBackend is implemented by a Backend that serves GET /v1/watch;
// kv.Store does. A Backend without it answers the route 404.
type WatchBackend interface {
	// Watch starts a watcher of the keys under prefix from fromRevision
	// (0: from now, after a linearizable read); ctx bounds the watch. See
	// kv.Store.Watch.
	Watch(ctx context.Context, prefix string, fromRevision int64) (*kv.Watcher, error)
}

// watchRegistry counts the open watches, per client and in all, and ends
// them all when the server shuts down. The zero value is ready to use.
type watchRegistry struct {
	// stalled counts the streams cut off because one write to the client
	// was blocked for the write timeout; behind, those ended because the
	// watcher fell out of the history (the compacted error event).
	stalled, behind atomic.Int64

	mu        sync.Mutex
	perClient map[string]int
	total     int
	closing   bool
	// ctx is cancelled by closeAll; made on first use.
	ctx    context.Context
	cancel context.CancelFunc
}

// acquire opens a watch slot for client, or returns the refusal.
func (reg *watchRegistry) acquire(client string, opts WatchOptions) (context.Context, *apiError) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	switch {
	case reg.closing:
		return nil, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: "server is shutting down"}
	case reg.perClient[client] >= opts.MaxPerClient:
		return nil, &apiError{status: http.StatusTooManyRequests, code: api.CodeTooManyWatches,
			message: fmt.Sprintf("this client has %d watches open, the limit; close one or retry after Retry-After seconds", opts.MaxPerClient)}
	case reg.total >= opts.MaxTotal:
		return nil, &apiError{status: http.StatusServiceUnavailable, code: api.CodeOverloaded,
			message: "too many watches open on this node; retry shortly"}
	}
	if reg.perClient == nil {
		reg.perClient = make(map[string]int)
	}
	reg.perClient[client]++
	reg.total++
	return reg.contextLocked(), nil
}

func (reg *watchRegistry) release(client string) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.perClient[client]--; reg.perClient[client] <= 0 {
		delete(reg.perClient, client)
	}
	reg.total--
}

func (reg *watchRegistry) contextLocked() context.Context {
	if reg.ctx == nil {
		reg.ctx, reg.cancel = context.WithCancel(context.Background())
	}
	return reg.ctx
}

// closeAll ends every open watch stream and refuses new ones. The server
// calls it when it begins to shut down, since an open stream would
// otherwise keep http.Server.Shutdown waiting until its deadline.
func (reg *watchRegistry) closeAll() {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.closing = true
	reg.contextLocked()
	reg.cancel()
}

// openStream takes a slot for a long stream (a watch, an election
// observation) of the request's client, or answers the refusal itself.
// The context it returns ends with the request or when the server begins
// to shut down; done releases the slot.
func (h *apiHandler) openStream(w http.ResponseWriter, r *http.Request) (ctx context.Context, done func(), ok bool) {
	client := accessFrom(r.Context()).client
	closing, refused := h.watches.acquire(client, h.opts.Watch)
	if refused != nil {
		if refused.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, *refused)
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(closing, cancel)
	return ctx, func() {
		stop()
		cancel()
		h.watches.release(client)
	}, true
}

// setSSEHeaders sets the headers of a Server-Sent Events stream.
func setSSEHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// closingContext returns a context cancelled when the server begins to
// shut down, for other long requests (lock waits) to end on.
func (reg *watchRegistry) closingContext() context.Context {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.contextLocked()
}

// ended returns how many streams the server has ended itself, by reason.
func (reg *watchRegistry) ended() (stalled, behind int64) {
	return reg.stalled.Load(), reg.behind.Load()
}

// open returns the number of watches open.
func (reg *watchRegistry) open() int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.total
}

// closeWatches is registered with http.Server.RegisterOnShutdown.
func (h *apiHandler) closeWatches() { h.watches.closeAll() }

// compactedBody is the body of a 410, and the data of a stream's error
// event when a watch falls out of history.
type compactedBody struct {
	Error compactedDetail `json:"error"`
}

type compactedDetail struct {
	Code           string `json:"code"`
	Message        string `json:"message"`
	OldestRevision int64  `json:"oldestRevision"`
}

// parseWatchStart returns the first revision to watch from: Last-Event-ID
// + 1 when the header is there (an EventSource reconnecting sends it with
// the original URL, and it is the newer word), else from_revision, else 0
// (from now).
func parseWatchStart(r *http.Request, fromParam string, given bool) (int64, string) {
	if ids := r.Header.Values("Last-Event-ID"); len(ids) > 0 {
		id, err := strconv.ParseInt(strings.TrimSpace(ids[0]), 10, 64)
		if len(ids) > 1 || err != nil || id < 0 || id == 1<<63-1 {
			return 0, "Last-Event-ID must be one revision, a non-negative integer"
		}
		return id + 1, ""
	}
	if !given {
		return 0, ""
	}
	from, err := strconv.ParseInt(fromParam, 10, 64)
	if err != nil || from < 0 {
		return 0, "from_revision must be a non-negative integer (0: from now), not " + strconv.Quote(fromParam)
	}
	return from, ""
}

// serveWatch serves GET /v1/watch.
func (h *apiHandler) serveWatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	wb, ok := h.backend.(WatchBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve watches"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	prefix, ok := h.prefixParam(w, query)
	if !ok {
		return
	}
	fromParam, ok := singleParam(w, query, "from_revision")
	if !ok {
		return
	}
	_, given := query["from_revision"]
	from, msg := parseWatchStart(r, fromParam, given)
	if msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: msg})
		return
	}

	ctx, done, ok := h.openStream(w, r)
	if !ok {
		return
	}
	defer done()

	watcher, err := h.startWatch(ctx, wb, prefix, from)
	if err != nil {
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			w.Header().Set(OldestRevisionHeader, strconv.FormatInt(ce.Oldest, 10))
			h.writeJSON(w, http.StatusGone, compactedBody{Error: compactedDetail{
				Code: api.CodeCompacted, Message: err.Error(), OldestRevision: ce.Oldest}})
			return
		}
		h.fail(w, r, err)
		return
	}
	defer watcher.Close()
	h.streamWatch(w, watcher)
}

// startWatch starts the backend's watcher with ctx, giving its start (a
// linearizable read for a watch from now) RequestTimeout.
func (h *apiHandler) startWatch(ctx context.Context, wb WatchBackend, prefix string, from int64) (*kv.Watcher, error) {
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(h.opts.RequestTimeout, cancel)
	watcher, err := wb.Watch(wctx, prefix, from)
	if !timer.Stop() {
		// The start ran out of time (the watcher, if any, is cancelled).
		if watcher != nil {
			watcher.Close()
		}
		if err == nil || ctx.Err() == nil {
			err = fmt.Errorf("server: starting watch: %w", consensus.ErrTimeout)
		}
		return nil, err
	}
	if err != nil {
		cancel()
		return nil, err
	}
	// cancel is left to ctx's end: wctx lives as long as the watch.
	return watcher, nil
}

// streamWatch writes the watcher's events as SSE until it ends, the client
// goes away or a write fails.
func (h *apiHandler) streamWatch(w http.ResponseWriter, watcher *kv.Watcher) {
	opts := h.opts.Watch
	rc := http.NewResponseController(w)
	hdr := w.Header()
	setSSEHeaders(hdr)
	hdr.Set(StartRevisionHeader, strconv.FormatInt(watcher.StartRevision(), 10))
	w.WriteHeader(http.StatusOK)
	// Each write gets its own deadline; clear the last one so that it
	// cannot cut a later request on the same keep-alive connection.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()

	var buf bytes.Buffer
	// lastID is the id the client holds: resuming from lastID+1 misses
	// nothing. It starts just before the watch's first revision, so a
	// client that reconnects before any event resumes where it began.
	lastID := watcher.StartRevision() - 1
	writeID := func(rev int64) {
		buf.WriteString("id: ")
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), rev, 10))
		buf.WriteByte('\n')
		lastID = rev
	}
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(opts.WriteTimeout))
		_, err := w.Write(buf.Bytes())
		if err == nil {
			err = rc.Flush()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			h.watches.stalled.Add(1)
		}
		buf.Reset()
		if buf.Cap() > 2*watchFlushBytes {
			// One large event grew it: do not keep that for the stream's
			// life.
			buf = bytes.Buffer{}
		}
		return err == nil
	}
	writeID(lastID)
	buf.WriteString("\n")
	if !flush() {
		return
	}
	heartbeat := time.NewTicker(opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case resp, ok := <-watcher.C():
			if !ok {
				h.endWatch(&buf, watcher.Err())
				flush()
				return
			}
			for i := range resp.Events {
				ev := &resp.Events[i]
				// The id marks a revision as fully delivered: only the
				// last event of those sharing a revision carries it.
				closes := i == len(resp.Events)-1 || resp.Events[i+1].Item.Revision != ev.Item.Revision
				if closes {
					writeID(ev.Item.Revision)
				}
				// The data is api.WatchEventData's JSON, written without
				// reflection (the fan-out encodes each event once per
				// stream).
				buf.WriteString("data: ")
				buf.Write(api.AppendWatchEventJSON(buf.AvailableBuffer(), ev))
				buf.WriteString("\n\n")
				// Events of one revision stay in one write.
				if closes && buf.Len() >= watchFlushBytes && !flush() {
					return
				}
			}
			if len(resp.Events) == 0 && resp.Revision > lastID {
				// A progress report: advance the client's id with no event.
				writeID(resp.Revision)
				buf.WriteString("\n")
			}
			if buf.Len() > 0 && !flush() {
				return
			}
		case <-heartbeat.C:
			watcher.RequestProgress()
			buf.WriteString(": heartbeat\n\n")
			if !flush() {
				return
			}
		}
	}
}

// endWatch writes the event that says why a stream ends, when the client
// should know: it fell out of the history. A client or server going away
// just ends the stream.
func (h *apiHandler) endWatch(buf *bytes.Buffer, err error) {
	var ce *kv.CompactedError
	if !errors.As(err, &ce) {
		return
	}
	h.watches.behind.Add(1)
	b, _ := json.Marshal(compactedBody{Error: compactedDetail{Code: api.CodeCompacted,
		Message: err.Error(), OldestRevision: ce.Oldest}})
	buf.WriteString("event: error\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}
