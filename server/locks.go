package server

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// LockBackend is implemented by a Backend that serves locks (kv.Store). A
// Backend without it answers the lock routes 404.
type LockBackend interface {
	// Acquire takes a lock for a lease, waiting up to wait (0: try once).
	Acquire(ctx context.Context, name string, lease kv.LeaseID, wait time.Duration) (kv.LockInfo, error)
	// Release releases a lock held with token (by lease, if not 0).
	Release(ctx context.Context, name string, lease kv.LeaseID, token int64) error
	// LockState describes a lock.
	LockState(ctx context.Context, name string, c kv.Consistency) (kv.LockInfo, error)
}

const locksPath = "/v1/locks"

// MaxLockWait bounds an acquire's waitMs.
const MaxLockWait = 10 * time.Minute

// acquireRequest is the body of POST /v1/locks/{name}.
type acquireRequest struct {
	Lease  kv.LeaseID `json:"lease"`
	WaitMs int64      `json:"waitMs"`
}

// serveLocks serves /v1/locks/{name}; rest is the path after /v1/locks.
func (h *apiHandler) serveLocks(w http.ResponseWriter, r *http.Request, rest string) {
	lb, ok := h.backend.(LockBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve locks"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" || rest == "/" {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "name the lock: /v1/locks/{name}"})
		return
	}
	name, err := url.PathUnescape(rest[1:])
	if err != nil || name == "" || len(name) > kv.MaxLockNameBytes || kv.ValidateKey(name, kv.MaxLockNameBytes) != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: "a lock's name is 1 to 512 bytes of UTF-8 without control characters, percent-encoded in the path"})
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.serveAcquire(w, r, lb, name)
	case http.MethodDelete:
		token, ok := tokenParam(w, query, "holder")
		if !ok {
			return
		}
		ctx, cancel, ok := h.writeContext(w, r)
		if !ok {
			return
		}
		defer cancel()
		if err := lb.Release(ctx, name, 0, token); err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, struct{}{})
	case http.MethodGet, http.MethodHead:
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			return lb.LockState(ctx, name, c)
		})
	default:
		methodNotAllowed(w, "GET, HEAD, POST, DELETE")
	}
}

func (h *apiHandler) serveAcquire(w http.ResponseWriter, r *http.Request, lb LockBackend, name string) {
	var req acquireRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	ctx, cancel, wait, ok := h.leaseWait(w, r, req.Lease, req.WaitMs, "the lock")
	if !ok {
		return
	}
	defer cancel()
	info, err := lb.Acquire(ctx, name, req.Lease, wait)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, lockAnswer{Name: info.Name, Token: info.Token, Lease: info.Lease})
}

// lockAnswer is the body of a successful acquire.
type lockAnswer struct {
	Name  string     `json:"name"`
	Token int64      `json:"token"`
	Lease kv.LeaseID `json:"lease"`
}

// waitContext is writeContext for a request that may wait (an acquire,
// a campaign): the wait, not the request timeout, bounds it, plus one
// request timeout for the proposals in it; the client going away ends it.
func (h *apiHandler) waitContext(w http.ResponseWriter, r *http.Request, wait time.Duration) (context.Context, context.CancelFunc, bool) {
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok || wait <= 0 {
		return ctx, cancel, ok
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), wait+h.opts.RequestTimeout)
	stop := context.AfterFunc(r.Context(), cancel) // the client went away: give up
	// The server shutting down ends the wait too: http.Server.Shutdown
	// would otherwise wait for it.
	stopOnClose := context.AfterFunc(h.watches.closingContext(), cancel)
	return ctx, func() { stop(); stopOnClose(); cancel() }, true
}

// leaseWait checks an acquire's or a campaign's lease (what names what the
// lease holds, for the error) and waitMs, and returns the wait and the
// context it runs in (waitContext). It answers 400 itself.
func (h *apiHandler) leaseWait(w http.ResponseWriter, r *http.Request, lease kv.LeaseID, waitMs int64, what string) (context.Context, context.CancelFunc, time.Duration, bool) {
	if lease == 0 {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease, message: "lease is required: " + what + " is held by it"})
		return nil, nil, 0, false
	}
	wait := time.Duration(waitMs) * time.Millisecond
	if waitMs < 0 || wait > MaxLockWait {
		badRequest(w, "waitMs must be 0 (try once) to 600000 (10 minutes)")
		return nil, nil, 0, false
	}
	ctx, cancel, ok := h.waitContext(w, r, wait)
	return ctx, cancel, wait, ok
}

// tokenParam reads ?token=N, the token of the lock's holder (whose names
// it, for the error). It answers 400 itself.
func tokenParam(w http.ResponseWriter, query url.Values, whose string) (int64, bool) {
	t, err := strconv.ParseInt(query.Get("token"), 10, 64)
	if err != nil || t < 1 {
		badRequest(w, "token must be the "+whose+"'s token, a decimal integer of at least 1")
		return 0, false
	}
	return t, true
}
