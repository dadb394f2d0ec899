package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// ElectionBackend is implemented by a Backend that serves elections
// (kv.Store). A Backend without it answers the election routes 404.
type ElectionBackend interface {
	Campaign(ctx context.Context, name string, lease kv.LeaseID, value []byte, wait time.Duration) (kv.LockInfo, error)
	Proclaim(ctx context.Context, name string, token int64, value []byte) error
	Resign(ctx context.Context, name string, token int64) error
	ElectionLeader(ctx context.Context, name string, c kv.Consistency) (kv.LockInfo, error)
	ObserveElection(ctx context.Context, name string) (<-chan *kv.LockInfo, error)
}

const electionsPath = "/v1/elections"

// campaignRequest is the body of POST /v1/elections/{name}.
type campaignRequest struct {
	Lease  kv.LeaseID      `json:"lease"`
	Value  json.RawMessage `json:"value"`
	WaitMs int64           `json:"waitMs"`
}

// serveElections serves /v1/elections/{name} and its /observe stream.
func (h *apiHandler) serveElections(w http.ResponseWriter, r *http.Request, rest string) {
	eb, ok := h.backend.(ElectionBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve elections"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	escaped, observe := strings.CutSuffix(strings.TrimPrefix(rest, "/"), "/observe")
	name, err := url.PathUnescape(escaped)
	if err != nil || name == "" || strings.Contains(escaped, "/") || len(kv.ElectionPrefix+name) > kv.MaxLockNameBytes ||
		kv.ValidateKey(name, kv.MaxLockNameBytes) != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: "an election's name is one path segment of UTF-8 without control characters, up to 503 bytes"})
		return
	}
	if observe {
		if !methodIn(r.Method, http.MethodGet) {
			methodNotAllowed(w, "GET")
			return
		}
		h.serveObserve(w, r, eb, name)
		return
	}
	switch r.Method {
	case http.MethodPost:
		var req campaignRequest
		if !h.decodeBody(w, r, &req, false) {
			return
		}
		ctx, cancel, wait, ok := h.leaseWait(w, r, req.Lease, req.WaitMs, "leadership")
		if !ok {
			return
		}
		defer cancel()
		info, err := eb.Campaign(ctx, name, req.Lease, compactJSON(req.Value), wait)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		info.Waiters = 0
		h.writeJSON(w, http.StatusOK, info)
	case http.MethodPut:
		t, ok := tokenParam(w, query, "leader")
		if !ok {
			return
		}
		value, ok := h.readValue(w, r)
		if !ok {
			return
		}
		ctx, cancel, ok := h.writeContext(w, r)
		if !ok {
			return
		}
		defer cancel()
		if err := eb.Proclaim(ctx, name, t, value); err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, struct{}{})
	case http.MethodDelete:
		t, ok := tokenParam(w, query, "leader")
		if !ok {
			return
		}
		ctx, cancel, ok := h.writeContext(w, r)
		if !ok {
			return
		}
		defer cancel()
		if err := eb.Resign(ctx, name, t); err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, struct{}{})
	case http.MethodGet, http.MethodHead:
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			return eb.ElectionLeader(ctx, name, c)
		})
	default:
		methodNotAllowed(w, "GET, HEAD, POST, PUT, DELETE")
	}
}

// compactJSON returns v compacted, or nil if it is empty.
func compactJSON(v json.RawMessage) []byte {
	if len(v) == 0 {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return v
	}
	return b.Bytes()
}

// serveObserve streams an election's leadership as Server-Sent Events:
// one "leader" event now and one at each change, whose data is the leader
// ({"name","token","lease","value"}) or null; a comment every heartbeat.
func (h *apiHandler) serveObserve(w http.ResponseWriter, r *http.Request, eb ElectionBackend, name string) {
	// An observation is a long stream, like a watch: it counts toward the
	// watch limits and ends when the server shuts down.
	ctx, done, ok := h.openStream(w, r)
	if !ok {
		return
	}
	defer done()
	leaders, err := eb.ObserveElection(ctx, name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.opts.Watch.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	heartbeat := time.NewTicker(h.opts.Watch.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case l, ok := <-leaders:
			if !ok {
				return
			}
			data, _ := json.Marshal(l)
			if !write(append(append([]byte("event: leader\ndata: "), data...), "\n\n"...)) {
				return
			}
		case <-heartbeat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
