package server

// GET /v1/workflows/{id}/history: a workflow's history, as one JSON page
// or, with Accept: text/event-stream, as Server-Sent Events that replay
// the kept events from fromRevision (or Last-Event-ID + 1) and then follow
// new ones live.
//
//	GET /v1/workflows/{id}/history?fromRevision=N&limit=L
//	{"workflow":"w","events":[{"revision":5,"type":"claimed",...}],"revision":9,"more":false}
//
//	id: 5
//	data: {"revision":5,"type":"claimed","time":"...","queue":"q","task":"t","attempt":1,"epoch":4,"worker":"w1"}
//
// The replay reads the events from the state (they are kept items), page
// by page, then watches the history's prefix from the revision it read
// at + 1: no gap, no duplicate. A watch that falls out of the watch
// history reads the state again from where it was.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// WorkflowHistoryBackend is implemented by a Backend that serves GET
// /v1/workflows/{id}/history; kv.Store does. A Backend without it (or
// without WatchBackend, for the stream) answers the route 404.
type WorkflowHistoryBackend interface {
	// WorkflowHistory returns up to limit kept events of workflow id from
	// revision fromRevision on; see kv.Store.WorkflowHistory.
	WorkflowHistory(ctx context.Context, id string, fromRevision int64, limit int, c kv.Consistency) (api.WorkflowHistory, error)
}

// wantsEventStream reports whether the request accepts text/event-stream.
func wantsEventStream(r *http.Request) bool {
	for _, accept := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(accept, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// historyStart returns the first revision asked for: Last-Event-ID + 1 on
// a stream that has it, else fromRevision, else 0 (the oldest kept).
func historyStart(w http.ResponseWriter, r *http.Request, query url.Values, stream bool) (int64, bool) {
	bad := func(msg string) (int64, bool) {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: msg})
		return 0, false
	}
	if ids := r.Header.Values("Last-Event-ID"); stream && len(ids) > 0 {
		id, err := strconv.ParseInt(strings.TrimSpace(ids[0]), 10, 64)
		if len(ids) > 1 || err != nil || id < 0 || id == 1<<63-1 {
			return bad("Last-Event-ID must be one revision, a non-negative integer")
		}
		return id + 1, true
	}
	v, ok := singleParam(w, query, "fromRevision")
	if !ok {
		return 0, false
	}
	if _, given := query["fromRevision"]; !given {
		return 0, true
	}
	from, err := strconv.ParseInt(v, 10, 64)
	if err != nil || from < 0 {
		return bad("fromRevision must be a non-negative integer (0: the oldest kept event), not " + strconv.Quote(v))
	}
	return from, true
}

// getWorkflowHistory answers GET /v1/workflows/{id}/history.
func (h *apiHandler) getWorkflowHistory(w http.ResponseWriter, r *http.Request, query url.Values, id string) {
	hb, ok := h.backend.(WorkflowHistoryBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve workflow history"})
		return
	}
	stream := wantsEventStream(r)
	from, ok := historyStart(w, r, query, stream)
	if !ok {
		return
	}
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	limit := api.MaxWorkflowHistoryPage
	if v, ok := singleParam(w, query, "limit"); !ok {
		return
	} else if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxWorkflowHistoryPage {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
				message: fmt.Sprintf("limit must be an integer from 1 to %d, not %q", api.MaxWorkflowHistoryPage, v)})
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	page, err := hb.WorkflowHistory(ctx, id, from, limit, c)
	cancel()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !stream {
		w.Header().Set(ConsistencyHeader, c.String())
		h.writeJSON(w, http.StatusOK, page)
		return
	}
	wb, ok := h.backend.(WatchBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve watches"})
		return
	}
	sctx, done, ok := h.openStream(w, r)
	if !ok {
		return
	}
	defer done()
	h.streamHistory(sctx, w, hb, wb, id, from, page)
}

// historyStream writes a workflow's events as SSE, each with its revision
// as id.
type historyStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	opts WatchOptions
	buf  bytes.Buffer
	enc  *json.Encoder
	// next is the first revision not yet delivered.
	next int64
}

func (s *historyStream) event(ev api.WorkflowEvent) {
	if ev.Revision < s.next {
		return // delivered already
	}
	fmt.Fprintf(&s.buf, "id: %d\ndata: ", ev.Revision)
	_ = s.enc.Encode(ev) // ends the line
	s.buf.WriteString("\n")
	s.next = ev.Revision + 1
}

func (s *historyStream) flush() bool {
	if s.buf.Len() == 0 {
		return true
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	_, err := s.w.Write(s.buf.Bytes())
	if err == nil {
		err = s.rc.Flush()
	}
	s.buf.Reset()
	return err == nil
}

// streamHistory replays page and the pages after it, then follows the
// history live until ctx ends, the client goes or a write fails.
func (h *apiHandler) streamHistory(ctx context.Context, w http.ResponseWriter, hb WorkflowHistoryBackend, wb WatchBackend,
	id string, from int64, page api.WorkflowHistory) {
	s := &historyStream{w: w, rc: http.NewResponseController(w), opts: h.opts.Watch, next: from}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	defer func() { _ = s.rc.SetWriteDeadline(time.Time{}) }()
	// The id a client holds before any event: resuming from it + 1 is
	// resuming from the start.
	fmt.Fprintf(&s.buf, "id: %d\n\n", max(from-1, 0))
	if !s.flush() {
		return
	}
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	prefix := api.WorkflowHistoryKeyPrefix(id)
	for {
		// Replay what the state holds from s.next on.
		for {
			for _, ev := range page.Events {
				s.event(ev)
			}
			if !s.flush() {
				return
			}
			if !page.More {
				break
			}
			var err error
			if page, err = hb.WorkflowHistory(ctx, id, s.next, api.MaxWorkflowHistoryPage, kv.Local); err != nil {
				return
			}
		}
		// Then follow: every event after the state read.
		s.next = max(s.next, page.Revision+1)
		watcher, err := wb.Watch(ctx, prefix, s.next)
		if err == nil {
			err = h.followHistory(s, watcher, heartbeat)
			watcher.Close()
		}
		if !errors.Is(err, kv.ErrCompacted) {
			return
		}
		// The watch fell out of its history: read the state again.
		if page, err = hb.WorkflowHistory(ctx, id, s.next, api.MaxWorkflowHistoryPage, kv.Local); err != nil {
			return
		}
	}
}

// followHistory writes the watcher's history events until it ends (its
// error: ErrCompacted when it fell behind) or a write fails (nil).
func (h *apiHandler) followHistory(s *historyStream, watcher *kv.Watcher, heartbeat *time.Ticker) error {
	for {
		select {
		case resp, ok := <-watcher.C():
			if !ok {
				return watcher.Err()
			}
			for _, ev := range resp.Events {
				if ev.Type != kv.EventPut {
					continue // a retention drop
				}
				if hev, ok := api.WorkflowEventFromItem(ev.Item); ok {
					s.event(hev)
				}
			}
			if !s.flush() {
				return nil
			}
		case <-heartbeat.C:
			s.buf.WriteString(": heartbeat\n\n")
			if !s.flush() {
				return nil
			}
		}
	}
}

// wsWorkflowHistory answers /v1/ws op 55 as GET
// /v1/workflows/{id}/history?fromRevision=&limit= answers: one page of
// JSON (a stream is HTTP's alone).
func (h *apiHandler) wsWorkflowHistory(ctx context.Context, req api.Request) (api.Response, *apiError) {
	if msg := h.checkKey(req.Key); msg != "" || strings.Contains(req.Key, "/") {
		return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: "a workflow id is UTF-8 without control characters or \"/\", 1 byte or more: " + msg}
	}
	query := url.Values{}
	if req.Revision > 0 {
		query.Set("fromRevision", strconv.FormatInt(req.Revision, 10))
	}
	if req.Limit > 0 {
		query.Set("limit", strconv.FormatInt(int64(req.Limit), 10))
	}
	if req.Consistency == api.Local {
		query.Set("consistency", "local")
	}
	path := workflowsPath + "/" + url.PathEscape(req.Key) + "/history"
	return h.wsThroughHTTP(ctx, req, http.MethodGet, path+"?"+query.Encode(), nil, func(w http.ResponseWriter, r *http.Request) {
		h.getWorkflowHistory(w, r, query, req.Key)
	})
}
