package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/stages"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server/dashboard"
)

// ConsistencyHeader is the response header of a successful read that says
// how it was served: "linearizable" or "local".
const ConsistencyHeader = "X-Consensus-Consistency"

// NewHandler returns the HTTP JSON API serving b, as described in the
// program contract:
//
//	GET    /v1/status          node status
//	PUT    /v1/kv/{key}        store a JSON value; {"revision":n}
//	GET    /v1/kv/{key}        read an item; ?consistency=linearizable|local
//	DELETE /v1/kv/{key}        delete; {"revision":n}
//	GET    /v1/kv?prefix=p     list items under a prefix, streamed (JSON or
//	                           NDJSON), or a page of them: ?limit=&next=&revision=,
//	                           ?keysOnly=, ?countOnly= (list.go)
//	POST   /v1/txn             all-or-nothing batch of puts and deletes
//	/v1/workflows, /v1/workflows/{id}, /v1/workflows/{id}/stop, /v1/nodes,
//	/v1/nodes/{id}, /v1/stats  workflows, application nodes, stats (workflows.go)
//	/v1/leases, /v1/leases/{id}, /v1/leases/{id}/keepalive
//	                           leases (b must be a LeaseBackend; leases.go)
//	/v1/locks/{name}           locks with fencing tokens (b must be a
//	                           LockBackend; locks.go); X-Fence on any write
//	/v1/elections/{name}, /v1/elections/{name}/observe
//	                           elections on locks (ElectionBackend; elections.go)
//	GET    /healthz            200 whenever the process serves HTTP
//	GET    /readyz             200 when b.Ready() is nil, else 503
//	GET    /v1/ws              WebSocket upgrade to the multiplexed MessagePack
//	                           protocol of docs/PROTOCOL.md (same operations)
//	GET    /v1/watch           changes under ?prefix= from ?from_revision= as
//	                           Server-Sent Events (b must be a WatchBackend)
//	GET    /v1/snapshot        a backup file of the state at a linearizable
//	                           point (b must be a SnapshotBackend; backup.go)
//
// PUT and DELETE of a key take If-Match: <revision> and If-None-Match: *;
// every write takes X-Client-Id and X-Request-Seq (exactly once). GET
// routes also answer HEAD. The {key} is everything after "/v1/kv/" in
// the path as sent, percent-decoded once; it is never cleaned, so "a//b" and
// "a/../b" are keys like any other. Every response body is JSON; errors are
// {"error":{"code":"...","message":"..."}} with the codes declared in this
// package, and every 5xx is a 503 with Retry-After. (Requests net/http
// refuses before calling a handler get its plain-text answers unless the
// server is set up as Start does; see conn.go.) The handler is safe for
// concurrent use and calls b concurrently.
func NewHandler(b Backend, opts HTTPOptions) http.Handler {
	return newAPIHandler(b, opts)
}

func newAPIHandler(b Backend, opts HTTPOptions) *apiHandler {
	if b == nil {
		panic("server: NewHandler called with a nil Backend")
	}
	opts = opts.withDefaults()
	h := &apiHandler{backend: b, opts: opts, log: opts.Logger,
		inflight:     make(chan struct{}, opts.MaxInFlight),
		limiter:      newClientLimiter(opts.RateLimit, opts.RateBurst),
		dashboard:    dashboard.New(),
		requests:     newRequestStats(time.Now),
		memberClient: opts.members.client(0)}
	h.keepalives.timeout, h.keepalives.ask = opts.RequestTimeout, h.askLeader
	return h
}

// apiHandler is the http.Handler NewHandler returns.
type apiHandler struct {
	backend Backend
	opts    HTTPOptions
	// memberClient calls other members' APIs (forwarded transfers).
	memberClient *http.Client
	log          *slog.Logger
	// panics counts panics recovered while serving; any is a bug.
	panics atomic.Int64
	// ws tracks /v1/ws connections, so that shutdown can drain them.
	ws wsHub
	// inflight is a semaphore of MaxInFlight slots.
	inflight chan struct{}
	// limiter is nil when there is no rate limit.
	limiter *clientLimiter
	// watches counts open /v1/watch streams and ends them at shutdown.
	watches watchRegistry
	// dashboard serves the web page at "/" and its assets.
	dashboard *dashboard.Handler
	// requests counts data requests for GET /v1/overview
	// (dashboard_overview.go).
	requests *requestStats
	// alarms, if set, lists the alarms for /v1/status (hashcheck.go).
	alarms func() []api.Alarm
	// keepalives batches the keepalives a follower forwards to the
	// leader (lease_batch.go).
	keepalives keepAliveBatcher
	// backups counts GET /v1/snapshot streams (backup.go).
	backups backupSlots
	// tel records requests and serves /metrics (telemetry.go); set by
	// Start before serving, zero (off) for NewHandler.
	tel apiTelemetry
}

// Methods each route allows, as sent in the Allow header of a 405.
const (
	allowRead = "GET, HEAD"
	allowKey  = "GET, HEAD, PUT, DELETE"
)

const kvPrefix = "/v1/kv/"

// ServeHTTP serves one request. A panic while serving is a bug: it is
// logged with its stack, counted, and answered 503 internal, never 500.
func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	if h.tel.metrics != nil {
		route := routeOf(r.URL.EscapedPath())
		var span trace.Span
		r, span = h.traceRequest(r, route)
		// Deferred first, so it runs last: after a recovered panic's 503.
		defer h.endRequest(r, route, span, rw, start)
	}
	defer func() {
		v := recover()
		if v == nil {
			if h.log.Enabled(r.Context(), slog.LevelDebug) {
				h.log.Debug("http request", "method", r.Method, "path", r.URL.EscapedPath(),
					"status", rw.status, "duration", time.Since(start))
			}
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		h.panics.Add(1)
		h.log.Error("http handler panic", "method", r.Method, "path", r.URL.EscapedPath(),
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		if rw.status != 0 {
			// Part of a response is out; abort the connection rather than
			// let the client take a truncated answer for a complete one.
			panic(http.ErrAbortHandler)
		}
		writeError(rw, apiError{status: http.StatusServiceUnavailable, code: api.CodeInternal,
			message: "internal error while handling the request"})
	}()
	admitted, release, ok := h.admit(rw, r)
	if !ok {
		return
	}
	defer release()
	h.route(rw, admitted)
}

// route dispatches on the path as sent (r.URL.EscapedPath), without the
// cleaning and redirects of http.ServeMux, which would change keys.
func (h *apiHandler) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if dashboard.Serves(path) {
		h.serveDashboard(w, r, path)
		return
	}
	if escapedKey, ok := strings.CutPrefix(path, kvPrefix); ok {
		if !methodIn(r.Method, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete) {
			methodNotAllowed(w, allowKey)
			return
		}
		h.serveKey(w, r, escapedKey)
		return
	}
	if path == wsPath {
		h.serveWS(w, r)
		return
	}
	if path == watchPath {
		h.serveWatch(w, r)
		return
	}
	if path == metricsPath && h.tel.prometheus != nil {
		if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
			methodNotAllowed(w, allowRead)
			return
		}
		h.tel.prometheus.ServeHTTP(w, r)
		return
	}
	if rest, ok := strings.CutPrefix(path, workflowsPath); ok && (rest == "" || rest[0] == '/') {
		h.serveRegistry(w, r, rest, &workflowRegistry)
		return
	}
	if rest, ok := strings.CutPrefix(path, nodesPath); ok && (rest == "" || rest[0] == '/') {
		h.serveRegistry(w, r, rest, &nodeRegistry)
		return
	}
	if path == txnPath {
		h.serveTxn(w, r)
		return
	}
	if rest, ok := strings.CutPrefix(path, leasesPath); ok && (rest == "" || rest[0] == '/') {
		h.serveLeases(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(path, locksPath); ok && (rest == "" || rest[0] == '/') {
		h.serveLocks(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(path, electionsPath); ok && (rest == "" || rest[0] == '/') {
		h.serveElections(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(path, queuesPath); ok && (rest == "" || rest[0] == '/') {
		h.serveQueues(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(path, schedulesPath); ok && (rest == "" || rest[0] == '/') {
		h.serveSchedules(w, r, rest)
		return
	}
	if h.routeMembers(w, r, path) {
		return
	}
	var serve func(http.ResponseWriter, *http.Request)
	switch path {
	case "/v1/status":
		serve = h.serveStatus
	case "/v1/kv":
		serve = h.serveList
	case "/healthz":
		serve = h.serveHealth
	case "/readyz":
		serve = h.serveReady
	case statsPath:
		serve = h.serveStats
	case eventsPath:
		serve = h.serveEvents
	case overviewPath:
		serve = h.serveOverview
	case snapshotPath:
		serve = h.serveSnapshot
	default:
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
		return
	}
	if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
		methodNotAllowed(w, allowRead)
		return
	}
	serve(w, r)
}

// serveDashboard serves the web dashboard's page and assets (package
// dashboard), answering a wrong method or an unknown asset in the API's
// JSON error form.
func (h *apiHandler) serveDashboard(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case !methodIn(r.Method, http.MethodGet, http.MethodHead):
		methodNotAllowed(w, allowRead)
	case !h.dashboard.Has(path):
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such dashboard asset"})
	default:
		h.dashboard.ServeHTTP(w, r)
	}
}

func methodIn(method string, allowed ...string) bool {
	for _, m := range allowed {
		if method == m {
			return true
		}
	}
	return false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, apiError{status: http.StatusMethodNotAllowed, code: api.CodeMethodNotAllowed,
		message: "method not allowed; allowed: " + allow})
}

// serveKey serves PUT, GET, HEAD and DELETE of /v1/kv/{key}.
func (h *apiHandler) serveKey(w http.ResponseWriter, r *http.Request, escapedKey string) {
	if stages.Enabled && r.Method == http.MethodPut {
		// What net/http does once the handler returns (flushing the
		// answer) falls in the answer's hop to the client.
		stages.Mark("http_handle", 0)
		defer stages.Mark("http_handled", 0)
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	key, err := url.PathUnescape(escapedKey)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: "key does not percent-decode: " + err.Error()})
		return
	}
	// A put names a key by our rule (kv.ValidateKey); a get or a delete
	// any key the state may hold, binary ones written through etcd's API
	// included (kv.ValidateStoredKey).
	check := h.checkStoredKey
	if r.Method == http.MethodPut {
		check = h.checkKey
	}
	if msg := check(key); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: msg})
		return
	}
	switch r.Method {
	case http.MethodPut:
		h.servePut(w, r, key, query)
	case http.MethodDelete:
		h.serveDelete(w, r, key)
	default:
		h.serveGet(w, r, key, query)
	}
}

// revisionResponse is the body of a successful PUT or DELETE.
type revisionResponse struct {
	Revision int64 `json:"revision"`
}

func (h *apiHandler) servePut(w http.ResponseWriter, r *http.Request, key string, query url.Values) {
	cond, ok := condition(w, r)
	if !ok {
		return
	}
	lo, ok := leaseOptions(w, query)
	if !ok {
		return
	}
	lb, leases := h.backend.(LeaseBackend)
	if (lo.Lease != 0 || lo.TTL != 0) && !leases {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "this server does not serve leases"})
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
	var rev int64
	var err error
	if lo.Lease != 0 || lo.TTL != 0 {
		lo.Cond = cond
		rev, err = lb.PutWith(ctx, key, value, lo)
	} else if _, conditional := cond.Revision(); conditional {
		rev, err = h.backend.PutIf(ctx, key, value, cond)
	} else {
		rev, err = h.backend.Put(ctx, key, value)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, revisionResponse{Revision: rev})
}

func (h *apiHandler) serveDelete(w http.ResponseWriter, r *http.Request, key string) {
	cond, ok := condition(w, r)
	if !ok {
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	var rev int64
	var err error
	if _, conditional := cond.Revision(); conditional {
		rev, err = h.backend.DeleteIf(ctx, key, cond)
	} else {
		rev, err = h.backend.Delete(ctx, key)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, revisionResponse{Revision: rev})
}

func (h *apiHandler) serveGet(w http.ResponseWriter, r *http.Request, key string, query url.Values) {
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	item, err := h.backend.Get(ctx, key, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set(ConsistencyHeader, c.String())
	w.Header().Set("ETag", etag(item.Revision))
	h.writeJSON(w, http.StatusOK, item)
}

func (h *apiHandler) serveStatus(w http.ResponseWriter, r *http.Request) {
	if _, ok := parseQuery(w, r); !ok {
		return
	}
	h.writeJSON(w, http.StatusOK, h.status())
}

// status returns the backend's status as the API shows it.
func (h *apiHandler) status() consensus.Status {
	st := h.backend.Status()
	// The contract promises arrays, never null.
	if st.Members == nil {
		st.Members = []consensus.Member{}
	}
	if st.ConnectedPeers == nil {
		st.ConnectedPeers = []string{}
	}
	if hb, ok := h.backend.(interface{ StateHashes() []kv.StateHash }); ok {
		st.StateHashes = hb.StateHashes()
	}
	if h.alarms != nil {
		st.Alarms = h.alarms()
	}
	return st
}

// probeResponse is the body of a successful /healthz or /readyz.
type probeResponse struct {
	Status string `json:"status"`
}

// serveHealth answers /healthz: the process is up and serving HTTP. It
// ignores the query string, so that no probe configuration can fail it.
func (h *apiHandler) serveHealth(w http.ResponseWriter, _ *http.Request) {
	h.writeJSON(w, http.StatusOK, probeResponse{Status: "ok"})
}

// serveReady answers /readyz: 200 when the backend can serve requests,
// otherwise 503 with the reason.
func (h *apiHandler) serveReady(w http.ResponseWriter, _ *http.Request) {
	if err := h.backend.Ready(); err != nil {
		e := backendError(err)
		if e.status != http.StatusServiceUnavailable {
			// Not being ready is always "try again later", whatever the
			// backend's reason looks like.
			e = apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: err.Error()}
		}
		writeError(w, e)
		return
	}
	h.writeJSON(w, http.StatusOK, probeResponse{Status: "ready"})
}

func (h *apiHandler) serveStats(w http.ResponseWriter, r *http.Request) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	st, err := h.backend.Stats(ctx, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set(ConsistencyHeader, c.String())
	h.writeJSON(w, http.StatusOK, st)
}

// serveRead answers a read that takes ?consistency=: read's value as JSON
// with the consistency it was read at, bounded by the request timeout.
func (h *apiHandler) serveRead(w http.ResponseWriter, r *http.Request, query url.Values, read func(context.Context, kv.Consistency) (any, error)) {
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	v, err := read(ctx, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set(ConsistencyHeader, c.String())
	h.writeJSON(w, http.StatusOK, v)
}
