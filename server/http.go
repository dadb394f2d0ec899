package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server/dashboard"
)

// Defaults applied by NewHandler to zero HTTPOptions fields.
const (
	// DefaultMaxBodyBytes is the default limit on a request body: the
	// default value limit, kv.DefaultMaxValueBytes (1 MiB).
	DefaultMaxBodyBytes int64 = kv.DefaultMaxValueBytes
	// DefaultRequestTimeout is the default bound on how long one request
	// waits on the backend.
	DefaultRequestTimeout = 5 * time.Second
)

// ConsistencyHeader is the response header of a successful read that says
// how it was served: "linearizable" or "local".
const ConsistencyHeader = "X-Consensus-Consistency"

// HTTPOptions configures the handler NewHandler returns. The zero value is
// ready to use: a zero (or negative) field means its default.
type HTTPOptions struct {
	// MaxBodyBytes is the largest request body accepted, in bytes; a larger
	// one is answered 413 too_large, before it is read when its
	// Content-Length says so. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxKeyBytes is the longest key accepted, in bytes after
	// percent-decoding; a longer one is answered 400 invalid_key. Default
	// kv.DefaultMaxKeyBytes.
	MaxKeyBytes int
	// RequestTimeout bounds how long one request waits on the backend; when
	// it passes the answer is 503 timeout (for a write, outcome unknown).
	// It never bounds whether a proposed write is applied. Default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives unexpected backend errors and recovered panics (at
	// Error) and one line per request (at Debug). Nil discards.
	Logger *slog.Logger
	// WSMaxFrameBytes bounds one /v1/ws frame in either direction; a
	// larger incoming frame closes the connection (1009), a response that
	// would not fit is answered too_large. Default DefaultWSMaxFrameBytes,
	// or MaxBodyBytes plus 64 KiB when that is larger.
	WSMaxFrameBytes int64
	// WSMaxInFlight bounds the requests one /v1/ws connection may have in
	// progress, and the requests one frame may carry. Beyond it the server
	// stops reading the connection until an answer is written. Default
	// DefaultWSMaxInFlight.
	WSMaxInFlight int

	// Tokens, if set, turns on bearer-token authentication: every route
	// but /healthz and /readyz needs "Authorization: Bearer <token>" (401
	// unauthorized without a valid one) and writes need a read-write token
	// (403 forbidden for a read-only one). Nil serves everyone.
	Tokens *Tokens
	// MaxInFlight bounds the requests being served at once (a /v1/ws
	// connection counts its requests itself); beyond it the answer is 503
	// overloaded with Retry-After. Default DefaultMaxInFlight.
	MaxInFlight int
	// RateLimit is the sustained requests per second allowed to one client
	// (its token when auth is on, else its IP), with bursts of RateBurst;
	// beyond it the answer is 429 rate_limited with Retry-After. Zero
	// turns the limit off (the default).
	RateLimit float64
	// RateBurst is the burst allowed above RateLimit. Default: RateLimit
	// rounded up.
	RateBurst int
	// ReadHeaderTimeout bounds reading a request's headers, and
	// BodyReadTimeout its body, so a slow client cannot hold a connection.
	// Defaults DefaultReadHeaderTimeout and DefaultBodyReadTimeout. Applied
	// by Start (ReadHeaderTimeout is a server setting).
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading one request body.
	BodyReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Watch configures GET /v1/watch: watches per client, heartbeats.
	Watch WatchOptions

	// Membership, if set, serves the membership routes (/v1/members,
	// /v1/leader/transfer; see members.go). Start sets it to the node.
	Membership Membership
	// Cluster, if set, serves /v1/cluster/... (health; see members.go).
	// Start sets it to the node's cluster.Manager.
	Cluster ClusterHealth
	// Events, if set, serves GET /v1/events (see events.go). Start sets
	// it to a log of the node's cluster events.
	Events *EventLog
	// members is how a forwarded transfer reaches the leader; Start sets
	// it from Config.Members.
	members MemberAPI
}

// Defaults of the HTTP limits.
const (
	// DefaultMaxInFlight is the default HTTPOptions.MaxInFlight.
	DefaultMaxInFlight = 4096
	// DefaultReadHeaderTimeout is the default HTTPOptions.ReadHeaderTimeout.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultBodyReadTimeout is the default HTTPOptions.BodyReadTimeout.
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultIdleTimeout is the default HTTPOptions.IdleTimeout.
	DefaultIdleTimeout = 2 * time.Minute
)

// withDefaults returns o with every zero field set to its default.
func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxKeyBytes <= 0 {
		o.MaxKeyBytes = kv.DefaultMaxKeyBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WSMaxFrameBytes <= 0 {
		o.WSMaxFrameBytes = max(DefaultWSMaxFrameBytes, o.MaxBodyBytes+wsFrameHeadroom)
	}
	if o.WSMaxInFlight <= 0 {
		o.WSMaxInFlight = DefaultWSMaxInFlight
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	o.Watch = o.Watch.withDefaults()
	return o
}

// NewHandler returns the HTTP JSON API serving b, as described in the
// program contract:
//
//	GET    /v1/status          node status
//	PUT    /v1/kv/{key}        store a JSON value; {"revision":n}
//	GET    /v1/kv/{key}        read an item; ?consistency=linearizable|local
//	DELETE /v1/kv/{key}        delete; {"revision":n}
//	GET    /v1/kv?prefix=p     list items under a prefix; ?consistency=...
//	POST   /v1/txn             all-or-nothing batch of puts and deletes
//	/v1/workflows, /v1/workflows/{id}, /v1/workflows/{id}/stop, /v1/nodes,
//	/v1/nodes/{id}, /v1/stats  workflows, application nodes, stats (state.go)
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
	return &apiHandler{backend: b, opts: opts, log: opts.Logger,
		inflight:     make(chan struct{}, opts.MaxInFlight),
		limiter:      newClientLimiter(opts.RateLimit, opts.RateBurst),
		dashboard:    dashboard.New(),
		requests:     newRequestStats(time.Now),
		memberClient: opts.members.client(0)}
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
		writeError(rw, apiError{status: http.StatusServiceUnavailable, code: CodeInternal,
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
		h.serveWorkflows(w, r, rest)
		return
	}
	if rest, ok := strings.CutPrefix(path, nodesPath); ok && (rest == "" || rest[0] == '/') {
		h.serveNodes(w, r, rest)
		return
	}
	if path == txnPath {
		h.serveTxn(w, r)
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
		writeError(w, apiError{status: http.StatusNotFound, code: CodeNotFound, message: "no such route"})
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
		writeError(w, apiError{status: http.StatusNotFound, code: CodeNotFound, message: "no such dashboard asset"})
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
	writeError(w, apiError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
		message: "method not allowed; allowed: " + allow})
}

// serveKey serves PUT, GET, HEAD and DELETE of /v1/kv/{key}.
func (h *apiHandler) serveKey(w http.ResponseWriter, r *http.Request, escapedKey string) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	key, err := url.PathUnescape(escapedKey)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey,
			message: "key does not percent-decode: " + err.Error()})
		return
	}
	if msg := h.checkKey(key); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: msg})
		return
	}
	switch r.Method {
	case http.MethodPut:
		h.servePut(w, r, key)
	case http.MethodDelete:
		h.serveDelete(w, r, key)
	default:
		h.serveGet(w, r, key, query)
	}
}

// checkKey returns why key is not acceptable, or "" if it is.
func (h *apiHandler) checkKey(key string) string { return keyProblem(key, h.opts.MaxKeyBytes) }

// keyProblem returns why key is not acceptable with keys of at most max
// bytes, or "" if it is. The rules are kv.ValidateKey's, the ones every
// API that takes a key shares: non-empty UTF-8 without control
// characters.
func keyProblem(key string, max int) string {
	if err := kv.ValidateKey(key, max); err != nil {
		return err.Error()
	}
	return ""
}

// prefixParam reads ?prefix= (absent: every key); it answers 400 itself
// when the prefix is repeated or not acceptable.
func (h *apiHandler) prefixParam(w http.ResponseWriter, query url.Values) (string, bool) {
	prefix, ok := singleParam(w, query, "prefix")
	if !ok {
		return "", false
	}
	if msg := h.checkPrefix(prefix); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: msg})
		return "", false
	}
	return prefix, true
}

// checkPrefix returns why a list or watch prefix is not acceptable, or ""
// if it is (kv.ValidatePrefix: a prefix with a control character matches
// no key a request may write). The empty prefix lists everything.
func (h *apiHandler) checkPrefix(prefix string) string {
	if err := kv.ValidatePrefix(prefix, h.opts.MaxKeyBytes); err != nil {
		return err.Error()
	}
	return ""
}

// revisionResponse is the body of a successful PUT or DELETE.
type revisionResponse struct {
	Revision int64 `json:"revision"`
}

func (h *apiHandler) servePut(w http.ResponseWriter, r *http.Request, key string) {
	cond, ok := condition(w, r)
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
	var rev int64
	var err error
	if _, conditional := cond.Revision(); conditional {
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

// readValue reads the request body, at most MaxBodyBytes, and returns it as
// compact JSON. It answers the request itself and returns false when the
// body is too large, unreadable or not one valid UTF-8 JSON value.
func (h *apiHandler) readValue(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.opts.MaxBodyBytes
	if r.ContentLength > limit {
		// Answer before reading: the client said how much it will send.
		w.Header().Set("Connection", "close")
		writeError(w, apiError{status: http.StatusRequestEntityTooLarge, code: CodeTooLarge,
			message: fmt.Sprintf("request body is %d bytes, larger than the limit of %d", r.ContentLength, limit)})
		return nil, false
	}
	// A client that sends its body slowly gets BodyReadTimeout, then the
	// read fails and the connection closes. (Unsupported on recorders in
	// tests; the error is then irrelevant.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyReadTimeout))
	var body []byte
	if r.Body != nil {
		var buf bytes.Buffer
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			writeError(w, h.bodyReadError(err))
			return nil, false
		}
		body = buf.Bytes()
	}
	compact, e := compactJSONValue(body, "request body")
	if e != nil {
		writeError(w, *e)
		return nil, false
	}
	return compact, true
}

// bodyReadError is the answer to a request whose body could not be read.
// The request's context says nothing here: net/http cancels it on any
// read error of the connection, a client's truncated body included. So
// the error itself decides: a body over the limit is 413, the server's own
// BodyReadTimeout passing is 503 timeout (the server gave up; nothing was
// done), and anything else (a body shorter than its Content-Length, bad
// chunked framing, a reset) is the client's: 400 bad_request.
func (h *apiHandler) bodyReadError(err error) apiError {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return apiError{status: http.StatusRequestEntityTooLarge, code: CodeTooLarge,
			message: fmt.Sprintf("request body is larger than the limit of %d bytes", tooLarge.Limit)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return apiError{status: http.StatusServiceUnavailable, code: CodeTimeout,
			message: fmt.Sprintf("the request body did not arrive within %v; nothing was done", h.opts.BodyReadTimeout)}
	}
	return apiError{status: http.StatusBadRequest, code: CodeBadRequest,
		message: "reading request body: " + err.Error()}
}

// compactJSONValue returns body, named what in messages, as compact JSON,
// or the invalid_json error that says why it is not one valid UTF-8 JSON
// value.
func compactJSONValue(body []byte, what string) ([]byte, *apiError) {
	// RFC 8259 requires UTF-8 between systems; encoding/json does not check
	// it inside strings, so check here rather than store what we could not
	// return as valid JSON.
	if !utf8.Valid(body) {
		return nil, &apiError{status: http.StatusBadRequest, code: CodeInvalidJSON,
			message: what + " is not valid UTF-8"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &apiError{status: http.StatusBadRequest, code: CodeInvalidJSON,
			message: what + " is empty; it must be one JSON value"}
	}
	// json.Compact validates with the same scanner as json.Valid (nesting
	// depth bounded, so hostile input cannot exhaust the stack) and says
	// where the syntax error is.
	var compact bytes.Buffer
	compact.Grow(len(body))
	if err := json.Compact(&compact, body); err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: CodeInvalidJSON,
			message: what + " is not one valid JSON value: " + err.Error()}
	}
	return compact.Bytes(), nil
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

// listResponse is the body of a successful GET /v1/kv.
type listResponse struct {
	// Items is never nil, so that it encodes as [] rather than null.
	Items    []kv.Item `json:"items"`
	Revision int64     `json:"revision"`
}

func (h *apiHandler) serveList(w http.ResponseWriter, r *http.Request) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	prefix, ok := h.prefixParam(w, query)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	items, rev, err := h.backend.List(ctx, prefix, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if items == nil {
		items = []kv.Item{}
	}
	w.Header().Set(ConsistencyHeader, c.String())
	h.writeJSON(w, http.StatusOK, listResponse{Items: items, Revision: rev})
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
			e = apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: err.Error()}
		}
		writeError(w, e)
		return
	}
	h.writeJSON(w, http.StatusOK, probeResponse{Status: "ready"})
}

// parseQuery parses the raw query strictly: a bad escape (or a semicolon)
// is answered 400, where url.URL.Query would silently drop the pair.
func parseQuery(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeBadRequest,
			message: "invalid query string: " + err.Error()})
		return nil, false
	}
	return q, true
}

// singleParam returns the query parameter name, "" when absent; it answers
// 400 and returns false when the parameter is repeated.
func singleParam(w http.ResponseWriter, q url.Values, name string) (string, bool) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	writeError(w, apiError{status: http.StatusBadRequest, code: CodeBadRequest,
		message: "query parameter " + strconv.Quote(name) + " is given more than once"})
	return "", false
}

// parseConsistency reads ?consistency=: absent or "linearizable" is a
// linearizable read, "local" a local one; anything else is answered 400.
func parseConsistency(w http.ResponseWriter, q url.Values) (kv.Consistency, bool) {
	v, ok := singleParam(w, q, "consistency")
	if !ok {
		return 0, false
	}
	if _, given := q["consistency"]; !given {
		return kv.Linearizable, true
	}
	switch v {
	case "linearizable":
		return kv.Linearizable, true
	case "local":
		return kv.Local, true
	}
	writeError(w, apiError{status: http.StatusBadRequest, code: CodeBadRequest,
		message: `consistency must be "linearizable" or "local", not ` + strconv.Quote(v)})
	return 0, false
}

// fail answers a backend error, logging it at Error when it is not one the
// API expects.
func (h *apiHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := requestError(r.Context(), err)
	if e.unexpected {
		h.log.Error("http backend error", "method", r.Method, "path", r.URL.EscapedPath(), "err", err)
	}
	writeError(w, e)
}

// writeJSON answers status with v as JSON. Values are written as stored:
// no HTML escaping, since the body is application/json and never HTML.
func (h *apiHandler) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a backend handing back an invalid stored value gets here.
		h.log.Error("http encoding response", "err", err)
		writeError(w, apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
			message: "encoding response: " + err.Error()})
		return
	}
	writeBody(w, status, buf.Bytes())
}

// writeError answers e as {"error":{"code","message"}}; every 503 carries
// Retry-After.
func writeError(w http.ResponseWriter, e apiError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	// Encoding two strings cannot fail; invalid UTF-8 in a message (a key
	// quoted in a backend error) becomes U+FFFD. No HTML escaping: the
	// body is JSON for programs and people, never embedded in a page.
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: errorDetail{Code: e.code, Message: e.message}})
	writeBody(w, e.status, body.Bytes())
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client is gone
}

// statusWriter records the status written, so that the panic handler knows
// whether a response has started.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
