package server

// GET /v1/kv?prefix=: lists, streamed from a frozen view or read in pages.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// ListBackend is the optional part of a Backend that reads lists without
// building them in memory: in pages at one revision, and streamed from a
// frozen view. kv.Store implements it. A Backend without it has its lists
// read whole with List, and paged from that.
type ListBackend interface {
	// ListPage returns one page of the items under prefix (kv.Store's
	// contract: a *kv.CompactedError when its revision cannot be read any
	// more).
	ListPage(ctx context.Context, prefix string, c kv.Consistency, o kv.ListOptions) (kv.ListPage, error)
	// ReadView returns a frozen view of the state to stream a list from.
	ReadView(ctx context.Context, c kv.Consistency) (*kv.ReadView, error)
}

// RevisionHeader carries the revision a streamed list is read at, so that
// an NDJSON stream, whose lines are items, says it too.
const RevisionHeader = "X-Consensus-Revision"

// ndjsonType is the media type of a list streamed one item per line.
const ndjsonType = "application/x-ndjson"

// listStreamBuffer is how much of a streamed list is written at once: the
// memory one stream holds besides its view.
const listStreamBuffer = 32 << 10

// listQuery is what a GET /v1/kv asks for.
type listQuery struct {
	prefix string
	c      kv.Consistency
	opts   kv.ListOptions
	// paged is set by limit, next or revision: the answer is one page.
	paged  bool
	ndjson bool
}

func (h *apiHandler) parseListQuery(w http.ResponseWriter, r *http.Request) (listQuery, bool) {
	var q listQuery
	query, ok := parseQuery(w, r)
	if !ok {
		return q, false
	}
	if q.c, ok = parseConsistency(w, query); !ok {
		return q, false
	}
	if q.prefix, ok = h.prefixParam(w, query); !ok {
		return q, false
	}
	bad := func(msg string) (listQuery, bool) {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: msg})
		return q, false
	}
	vals := map[string]string{}
	for _, name := range []string{"limit", "next", "revision", "keysOnly", "countOnly"} {
		v, ok := singleParam(w, query, name)
		if !ok {
			return q, false
		}
		if _, given := query[name]; given {
			vals[name] = v
			q.paged = q.paged || name == "limit" || name == "next" || name == "revision"
		}
	}
	if v, given := vals["limit"]; given {
		n, msg := parseLimit(v)
		if msg != "" {
			return bad(msg)
		}
		q.opts.Limit = n
	}
	if v, given := vals["next"]; given {
		if msg := h.checkStoredKey(v); msg != "" {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "next: " + msg})
			return q, false
		}
		if !strings.HasPrefix(v, q.prefix) {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
				message: fmt.Sprintf("next %q is not under the prefix %q", v, q.prefix)})
			return q, false
		}
		q.opts.Start = v
	}
	if v, given := vals["revision"]; given {
		n, msg := parsePageRevision(v)
		if msg != "" {
			return bad(msg)
		}
		q.opts.Revision = n
	}
	flag := func(name string) (bool, bool) {
		v, given := vals[name]
		if !given {
			return false, true
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(fmt.Sprintf("%s must be true or false, not %q", name, v))
			return false, false
		}
		return b, true
	}
	keysOnly, ok := flag("keysOnly")
	if !ok {
		return q, false
	}
	countOnly, ok := flag("countOnly")
	if !ok {
		return q, false
	}
	switch {
	case keysOnly && countOnly:
		return bad("give keysOnly or countOnly, not both")
	case keysOnly:
		q.opts.Mode = kv.ListKeysOnly
	case countOnly:
		q.opts.Mode = kv.ListCountOnly
	}
	for _, accept := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(accept, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == ndjsonType {
				q.ndjson = true
			}
		}
	}
	return q, true
}

// parseLimit reads a page's ?limit=, or says why it is not one.
func parseLimit(v string) (int, string) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Sprintf("limit must be a whole number from 1 (at most %d are returned), not %q", kv.MaxListLimit, v)
	}
	return n, ""
}

// parsePageRevision reads a later page's ?revision=, or says why it is
// not one.
func parsePageRevision(v string) (int64, string) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Sprintf("revision must be a revision a first page answered (at least 1), not %q", v)
	}
	return n, ""
}

func (h *apiHandler) serveList(w http.ResponseWriter, r *http.Request) {
	q, ok := h.parseListQuery(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	if q.paged || q.opts.Mode == kv.ListCountOnly {
		p, err := h.listPage(ctx, q.prefix, q.c, q.opts)
		if err != nil {
			h.failList(w, r, err)
			return
		}
		w.Header().Set(ConsistencyHeader, q.c.String())
		lw := newListWriter(w, h.opts.Watch.WriteTimeout, q.opts.Mode == kv.ListKeysOnly)
		lw.writePage(&p, q.opts.Mode == kv.ListCountOnly)
		return
	}
	view, err := h.readView(ctx, q.prefix, q.c)
	if err != nil {
		h.failList(w, r, err)
		return
	}
	cancel() // the view needs nothing more from the backend
	hdr := w.Header()
	hdr.Set(ConsistencyHeader, q.c.String())
	hdr.Set(RevisionHeader, strconv.FormatInt(view.Revision, 10))
	lw := newListWriter(w, h.opts.Watch.WriteTimeout, q.opts.Mode == kv.ListKeysOnly)
	lw.stream(view, q.prefix, q.ndjson)
}

// failList answers a list's error: a page whose revision can no longer be
// read is 410 compacted, as a watch's.
func (h *apiHandler) failList(w http.ResponseWriter, r *http.Request, err error) {
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		w.Header().Set(OldestRevisionHeader, strconv.FormatInt(ce.Oldest, 10))
		h.writeJSON(w, http.StatusGone, compactedBody{Error: compactedDetail{
			Code: api.CodeCompacted, Message: err.Error(), OldestRevision: ce.Oldest}})
		return
	}
	h.fail(w, r, err)
}

// listPage reads one page through the backend's ListBackend, or from a
// whole List for a backend without one.
func (h *apiHandler) listPage(ctx context.Context, prefix string, c kv.Consistency, o kv.ListOptions) (kv.ListPage, error) {
	if lb, ok := h.backend.(ListBackend); ok {
		return lb.ListPage(ctx, prefix, c, o)
	}
	items, rev, err := h.backend.List(ctx, prefix, c)
	if err != nil {
		return kv.ListPage{}, err
	}
	if o.Revision != 0 && o.Revision != rev {
		return kv.ListPage{}, &kv.CompactedError{Requested: o.Revision, Oldest: rev, List: true}
	}
	view := kv.NewReadView(rev, items)
	return view.Page(prefix, o), nil
}

// readView returns a frozen view to stream a list from.
func (h *apiHandler) readView(ctx context.Context, prefix string, c kv.Consistency) (*kv.ReadView, error) {
	if lb, ok := h.backend.(ListBackend); ok {
		return lb.ReadView(ctx, c)
	}
	items, rev, err := h.backend.List(ctx, prefix, c)
	if err != nil {
		return nil, err
	}
	return kv.NewReadView(rev, items), nil
}

// listWriter writes a list's JSON through a fixed buffer, item by item,
// so that an answer of any size takes the same memory.
type listWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	bw       *bufio.Writer
	timeout  time.Duration
	keysOnly bool
	scratch  []byte
	err      error
}

func newListWriter(w http.ResponseWriter, timeout time.Duration, keysOnly bool) *listWriter {
	lw := &listWriter{w: w, rc: http.NewResponseController(w), timeout: timeout, keysOnly: keysOnly}
	lw.bw = bufio.NewWriterSize(writerFunc(lw.write), listStreamBuffer)
	return lw
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// write hands a full buffer to the connection within the write timeout,
// so that a client that stops reading cannot hold the view for long.
func (lw *listWriter) write(p []byte) (int, error) {
	if lw.timeout > 0 {
		_ = lw.rc.SetWriteDeadline(time.Now().Add(lw.timeout))
	}
	return lw.w.Write(p)
}

func (lw *listWriter) start(contentType string) {
	hdr := lw.w.Header()
	hdr.Set("Content-Type", contentType)
	hdr.Set("X-Content-Type-Options", "nosniff")
	lw.w.WriteHeader(http.StatusOK)
}

// item writes one item's JSON, as encoding/json writes a kv.Item (values
// are stored compact and valid; keys by api.AppendKeyJSON), without its
// value when keys only.
func (lw *listWriter) item(it *kv.Item) {
	b := append(lw.scratch[:0], `{"key":`...)
	b = api.AppendKeyJSON(b, it.Key)
	if !lw.keysOnly {
		b = append(b, `,"value":`...)
		if it.Value == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, it.Value...)
		}
	}
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, it.Revision, 10)
	b = append(b, `,"createRevision":`...)
	b = strconv.AppendInt(b, it.CreateRevision, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, it.Version, 10)
	if it.Lease != 0 {
		// A hexadecimal string, as api.LeaseID writes it.
		b = append(b, `,"lease":"`...)
		b = strconv.AppendInt(b, int64(it.Lease), 16)
		b = append(b, '"')
	}
	b = append(b, '}')
	lw.scratch = b
	lw.raw(b)
}

func (lw *listWriter) raw(b []byte) {
	if lw.err == nil {
		_, lw.err = lw.bw.Write(b)
	}
}

// stream writes every item under prefix in view: {"items":[...],
// "revision":n} (the shape of an unpaged list), or one item per line for
// NDJSON. It stops early only when the client is gone.
func (lw *listWriter) stream(view *kv.ReadView, prefix string, ndjson bool) {
	if ndjson {
		lw.start(ndjsonType)
		view.Range(prefix, "", func(it kv.Item) bool {
			lw.item(&it)
			lw.raw([]byte{'\n'})
			return lw.err == nil
		})
		lw.flush()
		return
	}
	lw.start("application/json")
	lw.raw([]byte(`{"items":[`))
	first := true
	view.Range(prefix, "", func(it kv.Item) bool {
		if !first {
			lw.raw([]byte{','})
		}
		first = false
		lw.item(&it)
		return lw.err == nil
	})
	lw.raw([]byte(`],"revision":` + strconv.FormatInt(view.Revision, 10) + "}\n"))
	lw.flush()
}

// writePage writes a page: {"items":[...],"revision":n,"more":b,"next":k}
// (next only when more), or {"count":n,"revision":n}.
func (lw *listWriter) writePage(p *kv.ListPage, countOnly bool) {
	lw.start("application/json")
	rev := strconv.FormatInt(p.Revision, 10)
	if countOnly {
		lw.raw([]byte(`{"count":` + strconv.FormatInt(p.Count, 10) + `,"revision":` + rev + "}\n"))
		lw.flush()
		return
	}
	lw.raw([]byte(`{"items":[`))
	for i := range p.Items {
		if i > 0 {
			lw.raw([]byte{','})
		}
		lw.item(&p.Items[i])
	}
	lw.raw([]byte(`],"revision":` + rev + `,"more":` + strconv.FormatBool(p.More)))
	if p.More {
		lw.raw(api.AppendKeyJSON([]byte(`,"next":`), p.Next))
	}
	lw.raw([]byte("}\n"))
	lw.flush()
}

func (lw *listWriter) flush() {
	if lw.err == nil {
		lw.err = lw.bw.Flush()
	}
}

// wsPageBytes bounds the keys and values of a /v1/ws list page so that
// its response fits a frame: the frame limit less the envelope, the next
// key, and room for the items' encoding overhead (which the page's own
// per-item bound covers).
func (h *apiHandler) wsPageBytes() int {
	room := h.opts.WSMaxFrameBytes - api.FrameOverhead - 64 - int64(h.opts.MaxKeyBytes)
	return int(max(1, min(room, kv.DefaultListPageBytes)))
}

// errListTooLarge is answered to a /v1/ws list (op 4) whose answer does
// not fit one frame.
func listTooLarge(maxFrame int64) error {
	return fmt.Errorf("list exceeds the frame limit of %d bytes: read it in pages (operation %d, list page): %w",
		maxFrame, api.OpListPage, kv.ErrValueTooLarge)
}

// wsList answers a /v1/ws list (op 4), one frame holding every item: it
// reads from a view and gives up, with too_large, as soon as the items
// pass what a frame holds, so that a huge prefix costs at most a frame
// of memory.
func (h *apiHandler) wsList(ctx context.Context, prefix string, c kv.Consistency) ([]kv.Item, int64, error) {
	lb, ok := h.backend.(ListBackend)
	if !ok {
		return h.backend.List(ctx, prefix, c)
	}
	view, err := lb.ReadView(ctx, c)
	if err != nil {
		return nil, 0, err
	}
	budget := h.opts.WSMaxFrameBytes - api.FrameOverhead - 32
	size := int64(0)
	items := []kv.Item{}
	view.Range(prefix, "", func(it kv.Item) bool {
		size += int64(len(it.Key) + len(it.Value) + api.ItemSize)
		if size > budget {
			return false
		}
		items = append(items, it)
		return true
	})
	if size > budget {
		return nil, 0, listTooLarge(h.opts.WSMaxFrameBytes)
	}
	return items, view.Revision, nil
}
