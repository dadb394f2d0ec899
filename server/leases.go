package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// LeaseBackend is implemented by a Backend that serves leases (kv.Store
// with its Lessor). A Backend without it answers the lease routes 404.
type LeaseBackend interface {
	// Grant grants a lease with time to live ttl, under id (0: a random
	// one).
	Grant(ctx context.Context, ttl time.Duration, id kv.LeaseID) (kv.Lease, error)
	// Revoke revokes a lease and deletes its keys; it returns the
	// revision of the deletes.
	Revoke(ctx context.Context, id kv.LeaseID) (int64, error)
	// KeepAlive and TimeToLive are the leader's (consensus.ErrNotLeader
	// elsewhere: the handler forwards them to the leader).
	KeepAlive(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	TimeToLive(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	// ListLeases returns every lease (id and time to live).
	ListLeases(ctx context.Context, c kv.Consistency) ([]kv.Lease, error)
	// PutWith is a put with a lease or a time to live.
	PutWith(ctx context.Context, key string, value []byte, o kv.PutOptions) (int64, error)
}

const leasesPath = "/v1/leases"

// grantRequest is the body of POST /v1/leases.
type grantRequest struct {
	TTLMs int64      `json:"ttlMs"`
	ID    kv.LeaseID `json:"id,omitempty"`
}

// leasesResponse is the body of GET /v1/leases.
type leasesResponse struct {
	Leases []kv.Lease `json:"leases"`
}

// serveLeases serves /v1/leases and /v1/leases/...; rest is the path
// after /v1/leases.
func (h *apiHandler) serveLeases(w http.ResponseWriter, r *http.Request, rest string) {
	lb, ok := h.backend.(LeaseBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve leases"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" || rest == "/" {
		switch r.Method {
		case http.MethodPost:
			h.serveGrant(w, r, lb)
		case http.MethodGet, http.MethodHead:
			h.serveLeaseList(w, r, lb, query)
		default:
			methodNotAllowed(w, "GET, HEAD, POST")
		}
		return
	}
	if rest == keepAliveBatchPath {
		h.serveKeepAliveBatch(w, r, lb)
		return
	}
	escaped, action, _ := strings.Cut(rest[1:], "/")
	raw, err := url.PathUnescape(escaped)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "lease id does not percent-decode"})
		return
	}
	id, err := api.ParseLeaseID(raw)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease, message: err.Error()})
		return
	}
	switch {
	case action == "keepalive":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		h.serveLeaderLease(w, r, lb.KeepAlive, id)
	case action != "":
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		h.serveLeaderLease(w, r, lb.TimeToLive, id)
	case r.Method == http.MethodDelete:
		ctx, cancel, ok := h.writeContext(w, r)
		if !ok {
			return
		}
		defer cancel()
		rev, err := lb.Revoke(ctx, id)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, revisionResponse{Revision: rev})
	default:
		methodNotAllowed(w, "GET, HEAD, DELETE")
	}
}

func (h *apiHandler) serveGrant(w http.ResponseWriter, r *http.Request, lb LeaseBackend) {
	var req grantRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	if req.TTLMs < api.MinLeaseTTLMs || req.TTLMs > api.MaxLeaseTTLMs {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease,
			message: "ttlMs must be 1 to 2592000000 (30 days)"})
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	l, err := lb.Grant(ctx, time.Duration(req.TTLMs)*time.Millisecond, req.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, l)
}

func (h *apiHandler) serveLeaseList(w http.ResponseWriter, r *http.Request, lb LeaseBackend, query url.Values) {
	h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
		ls, err := lb.ListLeases(ctx, c)
		if ls == nil {
			ls = []kv.Lease{} // the contract promises an array
		}
		return leasesResponse{Leases: ls}, err
	})
}

// serveLeaderLease answers a keepalive or a time-to-live query, which
// only the leader's lease clock can: on another node it is forwarded to
// the leader (once).
func (h *apiHandler) serveLeaderLease(w http.ResponseWriter, r *http.Request, call func(context.Context, kv.LeaseID) (kv.Lease, error), id kv.LeaseID) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	l, err := call(ctx, id)
	if errors.Is(err, consensus.ErrNotLeader) {
		if r.Header.Get(forwardedHeader) == "" && h.opts.Membership != nil {
			target := r.URL.EscapedPath()
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			h.forwardToLeader(ctx, w, r, r.Method, target, nil, "a lease's keepalive or time to live")
			return
		}
		err = errors.Join(consensus.ErrNoLeader, err)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, l)
}

// leaseOptions reads the lease and ttl query parameters of a PUT: a
// lease id to attach the key to, or a Go duration after which it expires.
func leaseOptions(w http.ResponseWriter, query url.Values) (kv.PutOptions, bool) {
	var o kv.PutOptions
	if s := query.Get("lease"); s != "" {
		id, err := api.ParseLeaseID(s)
		if err != nil {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease, message: "lease: " + err.Error()})
			return o, false
		}
		o.Lease = id
	}
	if s := query.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Millisecond || d > api.MaxLeaseTTLMs*time.Millisecond {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease,
				message: "ttl must be a Go duration from 1ms to 720h (30 days), such as 30s"})
			return o, false
		}
		if o.Lease != 0 {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "give lease or ttl, not both"})
			return o, false
		}
		o.TTL = d
	}
	return o, true
}

// forwardToLeader sends a request to the leader's HTTP address, at
// pathAndQuery with method and body (nil: none), marked as forwarded and
// with the caller's token, and relays the answer to w. what names the
// request in errors.
func (h *apiHandler) forwardToLeader(ctx context.Context, w http.ResponseWriter, r *http.Request, method, pathAndQuery string, body []byte, what string) {
	// The write's exactly-once id and fence go with it: without them
	// the leader would apply a retry twice, or a fenced write unfenced.
	var hdr http.Header
	for _, name := range []string{ClientIDHeader, RequestSeqHeader, FenceHeader} {
		if vs := r.Header.Values(name); len(vs) > 0 {
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr[name] = vs
		}
	}
	status, answer, e := h.askLeaderWith(ctx, method, pathAndQuery, body, r.Header.Get("Authorization"), what, hdr)
	if e != nil {
		if e.unexpected {
			h.log.Error("http backend error", "method", r.Method, "path", r.URL.EscapedPath(), "err", e.message)
		}
		writeError(w, *e)
		return
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeBody(w, status, answer)
}

// askLeader sends a request to the leader's HTTP address, at pathAndQuery
// with method and body (nil: none), marked as forwarded and with
// authorization (the caller's Authorization header, "" for none), and
// returns the leader's status and body: a JSON answer, or the JSON error
// of the API (a status of 503 or below 500). The error is set instead
// when the leader could not be asked or answered something else
// (unavailable, or no_leader when its address is not known). what names
// the request in errors.
func (h *apiHandler) askLeader(ctx context.Context, method, pathAndQuery string, body []byte, authorization, what string) (int, []byte, *apiError) {
	return h.askLeaderWith(ctx, method, pathAndQuery, body, authorization, what, nil)
}

// askLeaderWith is askLeader with further headers to send (hdr, nil for
// none).
func (h *apiHandler) askLeaderWith(ctx context.Context, method, pathAndQuery string, body []byte, authorization, what string, hdr http.Header) (int, []byte, *apiError) {
	leader := h.opts.Membership.Leader()
	var addr string
	for _, m := range h.opts.Membership.Members() {
		if m.ID == leader {
			addr = m.HTTPAddr
		}
	}
	if leader == "" || addr == "" {
		return 0, nil, &apiError{status: http.StatusServiceUnavailable, code: api.CodeNoLeader,
			message: what + " must be asked of the leader, whose HTTP address is not known yet"}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.opts.members.url(addr, pathAndQuery), rd)
	if err != nil {
		e := requestError(ctx, err)
		return 0, nil, &e
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, vs := range hdr {
		req.Header[name] = vs
	}
	req.Header.Set(forwardedHeader, "1")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := h.memberClient.Do(req)
	if err != nil {
		return 0, nil, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "forwarding " + what + " to the leader " + leader + ": " + err.Error()}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardedAnswer))
	if err != nil || (resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, nil, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "forwarding " + what + " to the leader " + leader + " failed: " + resp.Status}
	}
	return resp.StatusCode, answer, nil
}

// askLeaderLease asks the leader for a keepalive or a time to live of
// lease id (POST /v1/leases/{id}/keepalive or GET /v1/leases/{id}) for a
// /v1/ws request, with the connection's token, and decodes its answer: the
// lease, or the leader's error with its code.
func (h *apiHandler) askLeaderLease(ctx context.Context, keepalive bool, id kv.LeaseID) (kv.Lease, *apiError) {
	method, path, what := http.MethodGet, leasesPath+"/"+id.String(), "a lease's time to live"
	if keepalive {
		method, path, what = http.MethodPost, path+"/keepalive", "a lease's keepalive"
	}
	status, answer, e := h.askLeader(ctx, method, path, nil, accessFrom(ctx).authorization, what)
	return leaderLease(id, status, answer, e, what)
}

// leaderLease decodes the leader's answer about lease id (askLeader's
// results) for what.
func leaderLease(id kv.LeaseID, status int, answer []byte, e *apiError, what string) (kv.Lease, *apiError) {
	if e != nil {
		return kv.Lease{}, e
	}
	if status != http.StatusOK {
		var eb errorBody
		if err := json.Unmarshal(answer, &eb); err != nil || eb.Error.Code == "" {
			return kv.Lease{}, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
				message: fmt.Sprintf("forwarding %s to the leader: status %d without an error body", what, status)}
		}
		return kv.Lease{}, &apiError{status: status, code: eb.Error.Code, message: eb.Error.Message}
	}
	var l kv.Lease
	if err := json.Unmarshal(answer, &l); err != nil || l.ID != id {
		return kv.Lease{}, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: fmt.Sprintf("forwarding %s to the leader: its answer does not decode as lease %s", what, id)}
	}
	return l, nil
}

// maxForwardedAnswer bounds an answer relayed from the leader: a lease's
// keys at their limits (10,000 keys of up to 1 KiB) fit.
const maxForwardedAnswer = 32 << 20
