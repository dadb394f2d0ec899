package server

// The registries: workflows and application nodes, JSON objects under
// workflow:<id> and node:<id>.
//
//	GET    /v1/workflows            {"workflows":[...],"revision":n}
//	POST   /v1/workflows            {"id":"...", ...fields}: START_WORKFLOW
//	GET    /v1/workflows/{id}       the workflow (getWorkflowState)
//	PATCH  /v1/workflows/{id}       {...fields}: UPDATE_STATE
//	POST   /v1/workflows/{id}/stop  {...fields} or no body: STOP_WORKFLOW
//	GET    /v1/nodes                {"nodes":[...],"revision":n}
//	POST   /v1/nodes                {"id":"...", ...metadata}: REGISTER_NODE
//	DELETE /v1/nodes/{id}           DEREGISTER_NODE

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

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
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: fmt.Sprintf("id must be a percent-encoded UTF-8 path segment of 1 to %d bytes", h.opts.MaxKeyBytes)})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "id: " + msg})
		return "", false
	}
	return id, true
}

// bodyID reads the "id" string field of a registration body; the id is
// held to the rules of a key (no control characters).
func (h *apiHandler) bodyID(w http.ResponseWriter, obj map[string]json.RawMessage) (string, bool) {
	var id string
	if raw, ok := obj["id"]; !ok || json.Unmarshal(raw, &id) != nil || id == "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: `request body needs a non-empty string "id"`})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "id: " + msg})
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
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
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
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
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
