package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
)

// Codes of GET /v1/watch answers (api's).
const (
	// CodeCompacted: the revision asked for is older than the node's
	// watch history. Watch returns it as a *kv.CompactedError.
	CodeCompacted = api.CodeCompacted
	// CodeTooManyWatches: this client has as many watches open as the
	// server allows (errors.Is ErrRateLimited).
	CodeTooManyWatches = api.CodeTooManyWatches
)

// Watcher follows the changes under a prefix over GET /v1/watch
// (Server-Sent Events), or with Config.WatchOverWS over the client's
// /v1/ws connection, moving between endpoints without a gap or a repeat.
// See Client.Watch.
type Watcher struct {
	c      *Client
	prefix string
	start  int64
	out    chan api.WatchResponse
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	// progress is the revision the watch has delivered through: a
	// reconnect asks for progress+1. Owned by the watcher's goroutine
	// once it runs.
	progress int64
	// endpoint is the index of the endpoint the next stream opens on.
	endpoint int

	mu  sync.Mutex
	err error
}

// watchStream is one open GET /v1/watch response.
type watchStream struct {
	body     io.ReadCloser
	r        *bufio.Reader
	cancel   context.CancelFunc
	endpoint string
}

func (s *watchStream) close() {
	s.cancel()
	s.body.Close()
}

// Watch follows the changes to the keys starting with prefix ("" for all)
// from revision fromRevision on (0: from the next write after a
// linearizable read, that is, after every write acknowledged before the
// call). Responses arrive on the Watcher's C in revision order, each
// change once: when a stream breaks or its node shuts down, the watcher
// opens one on the next endpoint and resumes after the last revision it
// delivered.
//
// Each watch is one GET /v1/watch stream (its own HTTP connection) unless
// Config.WatchOverWS is set: then it is a watch on the client's /v1/ws
// connection to the endpoint (docs/PROTOCOL.md "Watches"), shared with
// its calls and its other watches, whose events arrive in shared frames:
// far cheaper for the server with many watches. A consumer of C that
// falls a frame's worth of events (MaxFrameBytes) behind has its watch
// restarted from its last revision, so that it never holds up the
// connection's other calls and watches.
//
// Watch returns once a stream is open; an error then is the reason none
// could be: a *kv.CompactedError (errors.Is kv.ErrCompacted) when
// fromRevision is older than the history the server keeps, ErrUnauthorized,
// ErrRateLimited (too many watches), ErrUnavailable. Later the watch ends
// when ctx is done, on Close (of the Watcher or the Client), or when it
// cannot go on without a gap or after MaxAttempts failed reconnects in a
// row; Err says why.
func (c *Client) Watch(ctx context.Context, prefix string, fromRevision int64) (*Watcher, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("client: watch: %w", ErrClosed)
	}
	if fromRevision < 0 {
		return nil, fmt.Errorf("client: watch from revision %d: %w", fromRevision, api.ErrInvalidRevision)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	w := &Watcher{
		c:        c,
		prefix:   prefix,
		out:      make(chan api.WatchResponse, 8),
		ctx:      wctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		progress: fromRevision - 1,
		endpoint: int(c.preferred.Load() % int64(len(c.endpoints))),
	}
	source, err := w.reconnect(fromRevision == 0)
	if err != nil {
		cancel(err)
		return nil, err
	}
	w.start = w.progress + 1
	stopOnClose := context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer stopOnClose()
		w.run(source)
	}()
	return w, nil
}

// C returns the channel responses arrive on: events in revision order
// (those of one revision never split), and, with no events, progress
// reports from the server's heartbeats. It is closed when the watch ends.
func (w *Watcher) C() <-chan api.WatchResponse { return w.out }

// StartRevision is the first revision the watch delivers.
func (w *Watcher) StartRevision() int64 { return w.start }

// Err returns why the watch ended, once C is closed; nil before.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch and waits for its goroutine. Err is then
// kv.ErrWatchClosed. Safe to call more than once.
func (w *Watcher) Close() {
	w.cancel(api.ErrWatchClosed)
	<-w.done
}

func (w *Watcher) run(source watchSource) {
	defer close(w.done)
	var err error
	for {
		err = source.follow(w)
		delay := resumeDelay(&w.c.cfg, source)
		source.close()
		if err != nil {
			break
		}
		// The stream ended (its server went, or the connection broke):
		// pause, then resume on the next endpoint; a watch the client
		// ended for its slow consumer resumes at once, where it was.
		if delay > 0 {
			w.endpoint++
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-w.ctx.Done():
				t.Stop()
			}
		}
		if source, err = w.reconnect(false); err != nil {
			break
		}
	}
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.cancel(err)
	close(w.out)
}

// reconnect opens a stream (a GET /v1/watch, or with WatchOverWS a
// watch on a /v1/ws connection) from w.progress+1 (from now, the first
// time, when fromNow), trying the endpoints in turn with backoff, at most
// MaxAttempts times in a row.
func (w *Watcher) reconnect(fromNow bool) (watchSource, error) {
	if w.c.cfg.WatchOverWS {
		return reconnectWith(w.c, w.ctx, &w.endpoint, func() (watchSource, bool, error) {
			s, retry, err := w.openWS(fromNow)
			if err != nil {
				return nil, retry, err
			}
			return s, false, nil
		})
	}
	return reconnectWith(w.c, w.ctx, &w.endpoint, func() (watchSource, bool, error) {
		s, retry, err := w.open(fromNow)
		if err != nil {
			return nil, retry, err
		}
		return s, false, nil
	})
}

// reconnectSSE is reconnectWith for an SSE stream.
func (c *Client) reconnectSSE(ctx context.Context, endpoint *int, open func() (*watchStream, bool, error)) (*watchStream, error) {
	return reconnectWith(c, ctx, endpoint, open)
}

// reconnectWith calls open, moving *endpoint on to the next endpoint and
// backing off after each attempt that may do better, at most MaxAttempts
// times in a row, until it opens a stream or ctx ends.
func reconnectWith[S any](c *Client, ctx context.Context, endpoint *int, open func() (S, bool, error)) (S, error) {
	var none S
	backoff := c.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		if err := context.Cause(ctx); err != nil {
			return none, err
		}
		stream, retry, err := open()
		if err == nil {
			return stream, nil
		}
		if !retry || attempt >= c.cfg.MaxAttempts {
			return none, err
		}
		*endpoint++
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return none, fmt.Errorf("%w (last attempt: %w)", context.Cause(ctx), err)
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// open sends one GET /v1/watch. retry says whether another attempt may do
// better.
func (w *Watcher) open(fromNow bool) (stream *watchStream, retry bool, err error) {
	ep := w.c.endpoints[w.endpoint%len(w.c.endpoints)]
	target, err := watchURL(ep.url, w.prefix)
	if err != nil {
		return nil, false, err
	}
	header := http.Header{}
	if !fromNow {
		header.Set("Last-Event-ID", strconv.FormatInt(w.progress, 10))
	}
	resp, cancel, retry, err := w.c.openSSE(w.ctx, target, "watch", header)
	if err != nil {
		var ce *api.CompactedError
		if errors.As(err, &ce) {
			ce.Requested = w.progress + 1
		}
		return nil, retry, err
	}
	if w.progress < 0 || fromNow {
		start, perr := strconv.ParseInt(resp.Header.Get("X-Consensus-Start-Revision"), 10, 64)
		if perr != nil || start < 1 {
			resp.Body.Close()
			cancel()
			return nil, true, fmt.Errorf("client: watch on %s: %w: no start revision in the answer", target, ErrUnavailable)
		}
		w.progress = start - 1
	}
	return &watchStream{body: resp.Body, r: bufio.NewReader(resp.Body), cancel: cancel, endpoint: target}, false, nil
}

// openSSE sends one GET of a Server-Sent Events stream (what names it in
// errors) with header and the client's token, giving the answer's
// headers RequestTimeout; the stream then lives as long as parent. It
// returns the 200 answer and the cancel that ends it, or the error and
// whether another attempt may do better. A compacted answer is an
// *api.CompactedError whose Requested the caller fills in.
func (c *Client) openSSE(parent context.Context, target, what string, header http.Header) (*http.Response, context.CancelFunc, bool, error) {
	ctx, cancel := context.WithCancel(parent)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		cancel()
		return nil, nil, false, fmt.Errorf("client: %s: %w", what, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	timer := time.AfterFunc(c.cfg.RequestTimeout, cancel)
	resp, err := c.httpClient.Do(req)
	if !timer.Stop() && err == nil {
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		if cause := context.Cause(parent); cause != nil {
			return nil, nil, false, cause
		}
		return nil, nil, true, fmt.Errorf("client: %s on %s: %w: %w", what, target, ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, cancel, false, nil
	}
	defer cancel()
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if IsHTTPSAnswer(resp.StatusCode, body) {
		return nil, nil, false, fmt.Errorf("client: %s on %s: %w", what, target, ErrHTTPSEndpoint)
	}
	var eb watchErrorBody
	if json.Unmarshal(body, &eb) != nil || eb.Error.Code == "" {
		return nil, nil, true, fmt.Errorf("client: %s on %s: %w: HTTP %d", what, target, ErrUnavailable, resp.StatusCode)
	}
	if eb.Error.Code == CodeCompacted {
		return nil, nil, false, fmt.Errorf("client: %s on %s: %w", what, target, &api.CompactedError{Oldest: eb.Error.OldestRevision})
	}
	se := &ServerError{Code: eb.Error.Code, Message: eb.Error.Message, Endpoint: target}
	switch se.Code {
	case CodeBadRequest, CodeInvalidKey, CodeNotFound, CodeMethodNotAllowed, CodeUnauthorized, CodeForbidden:
		return nil, nil, false, fmt.Errorf("client: %s: %w", what, se)
	}
	return nil, nil, true, fmt.Errorf("client: %s: %w", what, se)
}

// watchURL turns an endpoint's /v1/ws URL into its GET /v1/watch URL.
func watchURL(wsURL, prefix string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("client: endpoint %q: %w", wsURL, err)
	}
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	if base, ok := strings.CutSuffix(u.Path, "/v1/ws"); ok {
		u.Path = base + "/v1/watch"
	} else {
		u.Path = "/v1/watch"
	}
	u.RawPath = ""
	u.RawQuery = url.Values{"prefix": {prefix}}.Encode()
	return u.String(), nil
}

// follow delivers the stream's changes until it ends. It returns nil when
// the stream ended and a reconnect should resume it, or the error that
// ends the watch.
func (w *Watcher) follow(s *watchStream) error {
	var (
		pending []api.Event // changes not yet closed by an id
		id      string
		hasID   bool
		event   string
		data    []byte
	)
	for {
		line, err := readLine(s.r, int(w.c.cfg.MaxFrameBytes))
		if err != nil {
			if cause := context.Cause(w.ctx); cause != nil {
				return cause
			}
			if errors.Is(err, errLineTooLong) {
				return fmt.Errorf("client: watch on %s: %w", s.endpoint, err)
			}
			// Changes without their id are dropped: the resume repeats
			// them.
			return nil
		}
		if len(line) == 0 { // dispatch
			if event == "error" {
				return w.streamError(s.endpoint, data)
			}
			if len(data) > 0 {
				ev, err := decodeWatchEvent(data)
				if err != nil {
					return fmt.Errorf("client: watch on %s: %w", s.endpoint, err)
				}
				if n := len(pending); n > 0 && ev.Item.Revision < pending[n-1].Item.Revision {
					return fmt.Errorf("client: watch on %s: %w: revision %d after %d", s.endpoint, errBadStream, ev.Item.Revision, pending[n-1].Item.Revision)
				}
				if ev.Item.Revision > w.progress {
					pending = append(pending, ev)
				}
			}
			if hasID {
				rev, err := strconv.ParseInt(id, 10, 64)
				if err != nil {
					return fmt.Errorf("client: watch on %s: bad id %q", s.endpoint, id)
				}
				if n := len(pending); n > 0 && pending[n-1].Item.Revision > rev {
					return fmt.Errorf("client: watch on %s: %w: revision %d under id %d", s.endpoint, errBadStream, pending[n-1].Item.Revision, rev)
				}
				if rev > w.progress {
					w.progress = rev
					if err := w.send(api.WatchResponse{Events: pending, Revision: rev}); err != nil {
						return err
					}
				}
				pending = nil
			}
			id, hasID, event, data = "", false, "", data[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id, hasID = string(value), true
		case "event":
			event = string(value)
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
}

func (w *Watcher) send(resp api.WatchResponse) error {
	select {
	case w.out <- resp:
		return nil
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
}

// watchErrorBody is the JSON of a refused GET /v1/watch and of a stream's
// error event.
type watchErrorBody struct {
	Error struct {
		Code           string `json:"code"`
		Message        string `json:"message"`
		OldestRevision int64  `json:"oldestRevision"`
	} `json:"error"`
}

// streamError turns a stream's error event into the error that ends the
// watch.
func (w *Watcher) streamError(endpoint string, data []byte) error {
	var eb watchErrorBody
	if err := json.Unmarshal(data, &eb); err != nil {
		return fmt.Errorf("client: watch on %s: error event %q: %w", endpoint, data, err)
	}
	if eb.Error.Code == CodeCompacted {
		return fmt.Errorf("client: watch on %s: %w", endpoint,
			&api.CompactedError{Requested: w.progress + 1, Oldest: eb.Error.OldestRevision})
	}
	return fmt.Errorf("client: watch: %w", &ServerError{Code: eb.Error.Code, Message: eb.Error.Message, Endpoint: endpoint})
}

func decodeWatchEvent(data []byte) (api.Event, error) {
	var d api.WatchEventData
	if err := json.Unmarshal(data, &d); err != nil {
		return api.Event{}, fmt.Errorf("event data: %w", err)
	}
	ev := api.Event{Item: api.Item{Key: d.Key, Revision: d.Revision, CreateRevision: d.CreateRevision, Version: d.Version}}
	switch d.Type {
	case "put":
		ev.Type = api.EventPut
		ev.Item.Value = d.Value
	case "delete":
		ev.Type = api.EventDelete
	default:
		return api.Event{}, fmt.Errorf("event type %q", d.Type)
	}
	return ev, nil
}

var (
	errLineTooLong = errors.New("SSE line longer than MaxFrameBytes")
	// errBadStream means a stream that breaks the protocol's order.
	errBadStream = errors.New("watch stream out of order")
)

// readLine returns the next line without its end (LF, CRLF or CR before
// LF), at most limit bytes.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}
