package server

// Conditional writes, batches, workflows, application nodes and stats: the
// routes beyond plain keys.
//
//	PUT/DELETE /v1/kv/{key}         If-Match: <revision> | If-None-Match: *
//	POST   /v1/txn                  {"ops":[{"op":"put"|"delete","key","value","ifRevision"}]}
//	GET    /v1/workflows            {"workflows":[...],"revision":n}
//	POST   /v1/workflows            {"id":"...", ...fields}: START_WORKFLOW
//	GET    /v1/workflows/{id}       the workflow (getWorkflowState)
//	PATCH  /v1/workflows/{id}       {...fields}: UPDATE_STATE
//	POST   /v1/workflows/{id}/stop  {...fields} or no body: STOP_WORKFLOW
//	GET    /v1/nodes                {"nodes":[...],"revision":n}
//	POST   /v1/nodes                {"id":"...", ...metadata}: REGISTER_NODE
//	DELETE /v1/nodes/{id}           DEREGISTER_NODE
//	GET    /v1/stats                keys, bytes, revision, applied and snapshot index
//
// Every write route takes X-Client-Id and X-Request-Seq for exactly-once
// retries.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/unrdf/consensus/kv"
)

// Request headers of the exactly-once protocol: a write carrying both is
// applied at most once per (client id, sequence), and a retry gets the
// first attempt's answer.
const (
	ClientIDHeader   = "X-Client-Id"
	RequestSeqHeader = "X-Request-Seq"
)

const (
	workflowsPath = "/v1/workflows"
	nodesPath     = "/v1/nodes"
	txnPath       = "/v1/txn"
	statsPath     = "/v1/stats"
)

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, apiError{status: http.StatusBadRequest, code: CodeBadRequest, message: msg})
}

// writeContext returns the context a write runs in: the request timeout,
// and the request id of the X-Client-Id and X-Request-Seq headers. It
// answers 400 itself and returns ok false when they are malformed.
func (h *apiHandler) writeContext(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, bool) {
	clients, seqs := r.Header.Values(ClientIDHeader), r.Header.Values(RequestSeqHeader)
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	if len(clients) == 0 && len(seqs) == 0 {
		return ctx, cancel, true
	}
	fail := func(msg string) (context.Context, context.CancelFunc, bool) {
		cancel()
		badRequest(w, msg)
		return nil, nil, false
	}
	if len(clients) != 1 || len(seqs) != 1 {
		return fail(ClientIDHeader + " and " + RequestSeqHeader + " go together, once each")
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(seqs[0]), 10, 64)
	if err != nil || seq == 0 {
		return fail(RequestSeqHeader + " must be a decimal integer of at least 1")
	}
	id := kv.RequestID{Client: clients[0], Seq: seq}
	if err := id.Validate(); err != nil {
		return fail(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", ClientIDHeader, kv.MaxClientIDBytes))
	}
	return kv.WithRequestID(ctx, id), cancel, true
}

// condition reads If-Match and If-None-Match: If-Match: <revision> (also
// quoted, as the ETag of a GET) requires the key at that revision,
// If-Match: * requires it to exist; If-None-Match: * requires it absent.
// It answers 400 itself for anything else.
func condition(w http.ResponseWriter, r *http.Request) (kv.Cond, bool) {
	match, noneMatch := r.Header.Values("If-Match"), r.Header.Values("If-None-Match")
	switch {
	case len(match) == 0 && len(noneMatch) == 0:
		return kv.Cond{}, true
	case len(match) > 0 && len(noneMatch) > 0:
		badRequest(w, "give If-Match or If-None-Match, not both")
		return kv.Cond{}, false
	case len(noneMatch) > 0:
		if len(noneMatch) != 1 || strings.TrimSpace(noneMatch[0]) != "*" {
			badRequest(w, `If-None-Match must be "*" (create only)`)
			return kv.Cond{}, false
		}
		return kv.IfAbsent(), true
	}
	v := ""
	if len(match) == 1 {
		v = strings.TrimSpace(match[0])
		if v == "*" {
			return kv.IfExists(), true
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
	}
	rev, err := strconv.ParseInt(v, 10, 64)
	if err != nil || rev < 1 {
		badRequest(w, `If-Match must be "*" or one revision (a decimal integer of at least 1, optionally quoted as the ETag of a GET)`)
		return kv.Cond{}, false
	}
	return kv.IfRevision(rev), true
}

// etag is the ETag of an item: its revision, quoted.
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// readBody reads the request body as in readValue; when optional, an
// empty body is nil rather than an error.
func (h *apiHandler) readBody(w http.ResponseWriter, r *http.Request, optional bool) ([]byte, bool) {
	if optional && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		return nil, true
	}
	return h.readValue(w, r)
}

// readObject reads a body that must be a JSON object; optional allows an
// empty body (nil).
func (h *apiHandler) readObject(w http.ResponseWriter, r *http.Request, optional bool) (map[string]json.RawMessage, []byte, bool) {
	body, ok := h.readBody(w, r, optional)
	if !ok || body == nil {
		return nil, nil, ok
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidJSON, message: "request body must be a JSON object"})
		return nil, nil, false
	}
	return obj, body, true
}

func (h *apiHandler) serveTxn(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	if _, ok := parseQuery(w, r); !ok {
		return
	}
	body, ok := h.readValue(w, r)
	if !ok {
		return
	}
	ops, terr := parseTxn(body, h.checkKey)
	if terr != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: terr.Code, message: terr.Message})
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	rev, err := h.backend.Batch(ctx, ops)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, revisionResponse{Revision: rev})
}

// idResponse is the body of a successful workflow or node write.
type idResponse struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

type workflowsResponse struct {
	Workflows []kv.Workflow `json:"workflows"`
	Revision  int64         `json:"revision"`
}

type nodesResponse struct {
	Nodes    []kv.Node `json:"nodes"`
	Revision int64     `json:"revision"`
}

// pathID percent-decodes one path segment naming a workflow or node,
// answering 400 itself when it is not one.
func (h *apiHandler) pathID(w http.ResponseWriter, escaped string) (string, bool) {
	id, err := url.PathUnescape(escaped)
	if err != nil || id == "" || !utf8.ValidString(id) || len(id) > h.opts.MaxKeyBytes {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey,
			message: fmt.Sprintf("id must be a percent-encoded UTF-8 path segment of 1 to %d bytes", h.opts.MaxKeyBytes)})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: "id: " + msg})
		return "", false
	}
	return id, true
}

// bodyID reads the "id" string field of a registration body; the id is
// held to the rules of a key (no control characters).
func (h *apiHandler) bodyID(w http.ResponseWriter, obj map[string]json.RawMessage) (string, bool) {
	var id string
	if raw, ok := obj["id"]; !ok || json.Unmarshal(raw, &id) != nil || id == "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: `request body needs a non-empty string "id"`})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: CodeInvalidKey, message: "id: " + msg})
		return "", false
	}
	return id, true
}

// serveCollection serves a registry's collection route: GET (and HEAD)
// answers list's response, read with the request's consistency; POST
// creates the entry named by the body's "id" with create, answering
// createStatus.
func (h *apiHandler) serveCollection(w http.ResponseWriter, r *http.Request, query url.Values,
	list func(context.Context, kv.Consistency) (any, error),
	createStatus int, create func(ctx context.Context, id string, body []byte) (int64, error)) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c, ok := parseConsistency(w, query)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
		defer cancel()
		resp, err := list(ctx, c)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set(ConsistencyHeader, c.String())
		h.writeJSON(w, http.StatusOK, resp)
	case http.MethodPost:
		obj, body, ok := h.readObject(w, r, false)
		if !ok {
			return
		}
		id, ok := h.bodyID(w, obj)
		if !ok {
			return
		}
		h.workflowWrite(w, r, id, createStatus, func(ctx context.Context) (int64, error) {
			return create(ctx, id, body)
		})
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// serveWorkflows serves /v1/workflows and /v1/workflows/...; rest is the
// escaped path after "/v1/workflows".
func (h *apiHandler) serveWorkflows(w http.ResponseWriter, r *http.Request, rest string) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" {
		h.serveCollection(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			list, rev, err := h.backend.Workflows(ctx, c)
			if list == nil {
				list = []kv.Workflow{}
			}
			return workflowsResponse{Workflows: list, Revision: rev}, err
		}, http.StatusCreated, h.backend.StartWorkflow)
		return
	}
	seg, action, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if !strings.HasPrefix(rest, "/") || (action != "" && action != "stop") {
		writeError(w, apiError{status: http.StatusNotFound, code: CodeNotFound, message: "no such route"})
		return
	}
	id, ok := h.pathID(w, seg)
	if !ok {
		return
	}
	if action == "stop" {
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		_, body, ok := h.readObject(w, r, true)
		if !ok {
			return
		}
		h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
			return h.backend.StopWorkflow(ctx, id, body)
		})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c, ok := parseConsistency(w, query)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
		defer cancel()
		wf, err := h.backend.WorkflowState(ctx, id, c)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set(ConsistencyHeader, c.String())
		w.Header().Set("ETag", etag(wf.Revision))
		h.writeJSON(w, http.StatusOK, wf)
	case http.MethodPatch:
		_, body, ok := h.readObject(w, r, false)
		if !ok {
			return
		}
		h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
			return h.backend.UpdateWorkflowState(ctx, id, body)
		})
	default:
		methodNotAllowed(w, "GET, HEAD, PATCH")
	}
}

// workflowWrite runs a workflow or node write and answers {"id","revision"}.
func (h *apiHandler) workflowWrite(w http.ResponseWriter, r *http.Request, id string, status int, do func(context.Context) (int64, error)) {
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	rev, err := do(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, status, idResponse{ID: id, Revision: rev})
}

// serveNodes serves /v1/nodes and /v1/nodes/{id}.
func (h *apiHandler) serveNodes(w http.ResponseWriter, r *http.Request, rest string) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" {
		h.serveCollection(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			list, rev, err := h.backend.Nodes(ctx, c)
			if list == nil {
				list = []kv.Node{}
			}
			return nodesResponse{Nodes: list, Revision: rev}, err
		}, http.StatusOK, h.backend.RegisterNode)
		return
	}
	seg, ok := strings.CutPrefix(rest, "/")
	if !ok || strings.Contains(seg, "/") {
		writeError(w, apiError{status: http.StatusNotFound, code: CodeNotFound, message: "no such route"})
		return
	}
	id, ok := h.pathID(w, seg)
	if !ok {
		return
	}
	if r.Method != http.MethodDelete {
		methodNotAllowed(w, http.MethodDelete)
		return
	}
	h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
		return h.backend.DeregisterNode(ctx, id)
	})
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
