package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// ScheduleBackend is implemented by a Backend that serves schedules
// (kv.Store). A Backend without it answers the schedule routes 404.
type ScheduleBackend interface {
	// CheckSchedule checks a schedule before anything is proposed.
	CheckSchedule(id string, req kv.ScheduleRequest) error
	// PutSchedule creates or replaces a schedule and returns the put's
	// log index; DeleteSchedule removes one (kv.ErrScheduleNotFound).
	PutSchedule(ctx context.Context, id string, req kv.ScheduleRequest) (int64, error)
	DeleteSchedule(ctx context.Context, id string) (int64, error)
	// Schedule and Schedules read.
	Schedule(ctx context.Context, id string, c kv.Consistency) (kv.ScheduleInfo, error)
	Schedules(ctx context.Context, c kv.Consistency) ([]kv.ScheduleInfo, error)
}

const schedulesPath = "/v1/schedules"

// serveSchedules serves /v1/schedules and /v1/schedules/{id}; rest is the
// path after /v1/schedules.
func (h *apiHandler) serveSchedules(w http.ResponseWriter, r *http.Request, rest string) {
	sb, ok := h.backend.(ScheduleBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve schedules"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" || rest == "/" {
		if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
			methodNotAllowed(w, allowRead)
			return
		}
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			list, err := sb.Schedules(ctx, c)
			return api.ScheduleList{Schedules: list}, err
		})
		return
	}
	raw := strings.TrimPrefix(rest, "/")
	if strings.Contains(raw, "/") {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route: /v1/schedules, /v1/schedules/{id}"})
		return
	}
	id, err := url.PathUnescape(raw)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "the path does not percent-decode"})
		return
	}
	if err := kv.ValidateKey(id, api.MaxScheduleIDBytes); err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: fmt.Sprintf("a schedule's id is 1 to %d bytes of UTF-8 without control characters, percent-encoded in the path", api.MaxScheduleIDBytes)})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			return sb.Schedule(ctx, id, c)
		})
	case http.MethodPut:
		if h.forwardScheduleWrite(w, r) {
			return
		}
		h.servePutSchedule(w, r, sb, id)
	case http.MethodDelete:
		if h.forwardScheduleWrite(w, r) {
			return
		}
		ctx, cancel, ok := h.writeContext(w, r)
		if !ok {
			return
		}
		defer cancel()
		rev, err := sb.DeleteSchedule(ctx, id)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, api.SchedulePut{ID: id, Revision: rev})
	default:
		methodNotAllowed(w, "GET, HEAD, PUT, DELETE")
	}
}

// forwardScheduleWrite sends a schedule's put or delete to the leader
// when this node does not lead, as forwardQueueWrite does a queue write:
// the put's time, from which the schedule's ticks start, is the leader's
// clock. It reports whether it answered r.
func (h *apiHandler) forwardScheduleWrite(w http.ResponseWriter, r *http.Request) bool {
	if !h.mustForward(r) {
		return false
	}
	var body []byte
	if r.Method == http.MethodPut {
		var ok bool
		if body, ok = h.readValue(w, r); !ok {
			return true
		}
	}
	h.forwardAsIs(w, r, r.Method, body, 0, "a schedule write")
	return true
}

func (h *apiHandler) servePutSchedule(w http.ResponseWriter, r *http.Request, sb ScheduleBackend, id string) {
	var req api.ScheduleRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	if len(req.Data) == 0 {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON, message: "data is required: each task's payload, any JSON value"})
		return
	}
	if err := sb.CheckSchedule(id, req); err != nil {
		h.fail(w, r, err)
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	rev, err := sb.PutSchedule(ctx, id, req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, api.SchedulePut{ID: id, Revision: rev})
}

// scheduleRoute is routeOf for a path under /v1/schedules/.
func scheduleRoute(path string) string {
	if rest := strings.TrimPrefix(path, schedulesPath+"/"); rest != "" && !strings.Contains(rest, "/") {
		return schedulesPath + "/{id}"
	}
	return "other"
}

// isScheduleOp reports whether op is a /v1/ws schedule operation.
func isScheduleOp(op api.Op) bool { return op >= api.OpSchedulePut && op <= api.OpScheduleDelete }

// wsSchedule serves a /v1/ws schedule operation through the HTTP handler
// of its route (serveSchedules), as wsQueue does queue operations.
func (h *apiHandler) wsSchedule(ctx context.Context, req api.Request) (api.Response, *apiError) {
	path := schedulesPath + "/" + url.PathEscape(req.Key)
	method, body := http.MethodGet, []byte(nil)
	switch req.Op {
	case api.OpSchedulePut:
		method, body = http.MethodPut, req.Value
	case api.OpScheduleDelete:
		method = http.MethodDelete
	case api.OpScheduleList:
		path = schedulesPath
	}
	if req.Consistency == api.Local {
		path += "?consistency=local"
	}
	return h.wsThroughHTTP(ctx, req, method, path, body, func(w http.ResponseWriter, r *http.Request) {
		h.serveSchedules(w, r, strings.TrimPrefix(r.URL.EscapedPath(), schedulesPath))
	})
}

var _ ScheduleBackend = (*kv.Store)(nil)
